"""A real TLS client of `vigil serve --tls-cert/--tls-key [--client-ca]`: Python grpcio over
grpc.ssl_channel_credentials (HTTP/2 negotiated by ALPN), and Python's ssl + http.client for
HTTPS.

Usage: tls_client.py ADDRESS CA_PEM [--cert PEM --key PEM] [--expect-refused]

With a usable identity: a health check (grpcio-health-checking), CreateAnalysis and GetAnalysis
with stubs generated from proto/, GET /healthz over HTTPS, and the ALPN choices (h2 for gRPC,
http/1.1 for a client that offers only that). With --expect-refused: the same gRPC and HTTPS calls
must fail at the handshake (a client without a certificate the server's --client-ca signed).
Prints `ok: N checks`; exits non-zero on the first failed check.
"""

import argparse
import http.client
import os
import socket
import ssl
import sys
import tempfile

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import grpc_client  # noqa: E402  (stub generation and the past spec)

CHECKS = 0


def check(cond, what):
    global CHECKS
    if not cond:
        raise AssertionError(what)
    CHECKS += 1


def read(path):
    with open(path, "rb") as f:
        return f.read()


def ssl_context(args, alpn):
    ctx = ssl.create_default_context(cafile=args.ca)
    if args.cert:
        ctx.load_cert_chain(args.cert, args.key)
    ctx.set_alpn_protocols(alpn)
    return ctx


def main():
    p = argparse.ArgumentParser()
    p.add_argument("address")
    p.add_argument("ca")
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--expect-refused", action="store_true")
    args = p.parse_args()
    host, port = args.address.rsplit(":", 1)

    creds = grpc.ssl_channel_credentials(
        root_certificates=read(args.ca),
        private_key=read(args.key) if args.key else None,
        certificate_chain=read(args.cert) if args.cert else None,
    )
    channel = grpc.secure_channel(args.address, creds)
    health = health_pb2_grpc.HealthStub(channel)

    if args.expect_refused:
        try:
            health.Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
            check(False, "the health check succeeded without a client certificate")
        except grpc.RpcError as e:
            check(e.code() == grpc.StatusCode.UNAVAILABLE, f"refused as UNAVAILABLE: {e}")
        try:
            with socket.create_connection((host, int(port)), timeout=10) as raw:
                with ssl_context(args, ["http/1.1"]).wrap_socket(raw, server_hostname=host) as s:
                    # TLS 1.3: the server's refusal of the client arrives with the first read.
                    s.sendall(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
                    data = s.recv(100)
                    check(data == b"", f"HTTPS answered without a client certificate: {data!r}")
        except (ssl.SSLError, ConnectionResetError, BrokenPipeError) as e:
            check(True, str(e))
        print(f"ok: {CHECKS} checks", flush=True)
        return

    r = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
    check(r.status == health_pb2.HealthCheckResponse.SERVING, f"health {r}")

    out = tempfile.mkdtemp()
    grpc_client.generate(out)
    from vigil.v1 import analyses_pb2 as apb, analyses_pb2_grpc as agrpc

    analyses = agrpc.AnalysesStub(channel)
    created = analyses.CreateAnalysis(
        apb.CreateAnalysisRequest(id="over-tls", spec=grpc_client.past_spec()), timeout=10)
    check(created.created and created.analysis.id == "over-tls", f"create {created}")
    got = analyses.GetAnalysis(apb.GetAnalysisRequest(id="over-tls"), timeout=10)
    check(got.id == "over-tls" and got.app == "checkout", f"get {got}")

    conn = http.client.HTTPSConnection(host, int(port), context=ssl_context(args, ["http/1.1"]),
                                       timeout=10)
    conn.request("GET", "/healthz")
    resp = conn.getresponse()
    body = resp.read()
    check(resp.status == 200 and body == b"ok\n", f"GET /healthz: {resp.status} {body!r}")
    check(conn.sock.selected_alpn_protocol() == "http/1.1", "ALPN http/1.1")
    conn.close()

    with socket.create_connection((host, int(port)), timeout=10) as raw:
        with ssl_context(args, ["h2", "http/1.1"]).wrap_socket(raw, server_hostname=host) as s:
            check(s.selected_alpn_protocol() == "h2", f"ALPN h2: {s.selected_alpn_protocol()}")

    print(f"ok: {CHECKS} checks", flush=True)


if __name__ == "__main__":
    main()
