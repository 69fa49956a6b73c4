"""A real gRPC client of `vigil serve`: Python grpcio with stubs generated from proto/ at test time.

Usage: grpc_client.py ADDRESS [--write-token T --read-token T]

Checks the Analyses service end to end (create, idempotent ids, watch from the start and resumed
from a sequence number, get, list), the stateless Judge, health (grpcio-health-checking) and
reflection (grpcio-reflection); with tokens, the scopes. Exits non-zero on the first failed check.
"""

import argparse
import os
import sys
import tempfile
import time

import grpc
from grpc_tools import protoc

HERE = os.path.dirname(os.path.abspath(__file__))
PROTO = os.path.join(HERE, "..", "..", "proto")


def generate(out):
    files = ["vigil/v1/judgement.proto", "vigil/v1/analyses.proto", "vigil/v1/judge.proto"]
    import grpc_tools

    include = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    rc = protoc.main(["protoc", f"-I{PROTO}", f"-I{include}", f"--python_out={out}",
                      f"--grpc_python_out={out}"] + files)
    if rc != 0:
        raise SystemExit(f"protoc failed: {rc}")
    sys.path.insert(0, out)


CHECKS = 0


def check(cond, what):
    global CHECKS
    if not cond:
        raise AssertionError(what)
    CHECKS += 1


def past_spec(app="checkout", lifetime="3m"):
    # An hour ago, minute-aligned: wholly in the past, so judged at once interval by interval.
    start = time.strftime("%Y-%m-%dT%H:%M:00Z", time.gmtime(time.time() - 3600))
    return f"""
app: {app}
prometheus: {{url: "http://127.0.0.1:9"}}
baseline: {{labels: {{app: {app}, track: stable}}}}
canary: {{labels: {{app: {app}, track: canary}}}}
metrics:
  - {{name: errors, query: "sum(rate(errors_total{{${{scope}}}}[1m]))", direction: increase}}
start: "{start}"
interval: 1m
lifetime: {lifetime}
"""


def status_of(call):
    try:
        call()
    except grpc.RpcError as e:
        return e.code(), e.details()
    return grpc.StatusCode.OK, ""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("address")
    ap.add_argument("--write-token")
    ap.add_argument("--read-token")
    args = ap.parse_args()
    out = tempfile.mkdtemp(prefix="vigil-stubs-")
    generate(out)
    from vigil.v1 import analyses_pb2 as apb, analyses_pb2_grpc as agrpc
    from vigil.v1 import judge_pb2 as jpb, judge_pb2_grpc as jgrpc
    from vigil.v1 import judgement_pb2 as vpb
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
        ProtoReflectionDescriptorDatabase,
    )
    from google.protobuf.descriptor_pool import DescriptorPool

    channel = grpc.insecure_channel(args.address)
    grpc.channel_ready_future(channel).result(timeout=10)
    analyses = agrpc.AnalysesStub(channel)
    judge = jgrpc.JudgeStub(channel)
    md_write = [("authorization", f"Bearer {args.write_token}")] if args.write_token else None
    md_read = [("authorization", f"Bearer {args.read_token}")] if args.read_token else None

    # Health needs no token.
    health = health_pb2_grpc.HealthStub(channel)
    for service in ["", "vigil.v1.Analyses", "vigil.v1.Judge"]:
        r = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        check(r.status == health_pb2.HealthCheckResponse.SERVING, f"health {service!r}: {r}")

    if args.write_token:
        code, details = status_of(lambda: analyses.ListAnalyses(apb.ListAnalysesRequest()))
        check(code == grpc.StatusCode.UNAUTHENTICATED, f"no token: {code} {details}")
        code, details = status_of(lambda: analyses.ListAnalyses(
            apb.ListAnalysesRequest(), metadata=[("authorization", "Bearer not-a-token")]))
        check(code == grpc.StatusCode.UNAUTHENTICATED, f"unknown token: {code}")
        code, details = status_of(lambda: analyses.CreateAnalysis(
            apb.CreateAnalysisRequest(spec=past_spec()), metadata=md_read))
        check(code == grpc.StatusCode.PERMISSION_DENIED and "write" in details,
              f"read token creating: {code} {details}")
        check(args.write_token not in details and args.read_token not in details,
              "a token in an error message")
        print(f"scopes: {CHECKS} checks", flush=True)
        return

    # Reflection (v1alpha: what grpcio-reflection's client speaks).
    db = ProtoReflectionDescriptorDatabase(channel)
    services = db.get_services()
    for s in ["vigil.v1.Analyses", "vigil.v1.Judge", "grpc.health.v1.Health"]:
        check(s in services, f"reflection lists {s}: {services}")
    pool = DescriptorPool(db)
    svc = pool.FindServiceByName("vigil.v1.Analyses")
    methods = sorted(m.name for m in svc.methods)
    check(methods == ["CancelAnalysis", "CreateAnalysis", "EndInput", "GetAnalysis",
                      "ListAnalyses", "RecordFeedback", "WatchAnalysis"], f"methods {methods}")
    watch = svc.methods_by_name["WatchAnalysis"]
    check(watch.output_type.full_name == "vigil.v1.WatchUpdate", "watch output type")

    # Create: a client-chosen id is idempotent per spec.
    spec = past_spec()
    r = analyses.CreateAnalysis(apb.CreateAnalysisRequest(id="checkout-rev42", spec=spec),
                                metadata=md_write)
    check(r.created and r.analysis.id == "checkout-rev42", f"created {r}")
    check(r.analysis.intervals_total == 3, f"intervals_total {r.analysis.intervals_total}")
    r2 = analyses.CreateAnalysis(apb.CreateAnalysisRequest(id="checkout-rev42", spec=spec))
    check(not r2.created and r2.analysis.created_ms == r.analysis.created_ms, "existing")
    code, details = status_of(lambda: analyses.CreateAnalysis(apb.CreateAnalysisRequest(
        id="checkout-rev42", spec=spec.replace("lifetime: 3m", "lifetime: 4m"))))
    check(code == grpc.StatusCode.ALREADY_EXISTS, f"different spec: {code} {details}")
    code, details = status_of(lambda: analyses.CreateAnalysis(apb.CreateAnalysisRequest(
        spec=spec.replace("direction: increase", "direction: up"))))
    check(code == grpc.StatusCode.INVALID_ARGUMENT
          and details.startswith("spec: metrics[0].direction: unknown variant `up`"),
          f"bad spec: {code} {details}")
    code, details = status_of(lambda: analyses.CreateAnalysis(apb.CreateAnalysisRequest(
        id="no spaces allowed", spec=spec)))
    check(code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("id: "), details)
    # 5 MiB is over the request limit.
    code, details = status_of(lambda: analyses.CreateAnalysis(apb.CreateAnalysisRequest(
        spec="#" * (5 << 20))))
    check(code in (grpc.StatusCode.OUT_OF_RANGE, grpc.StatusCode.RESOURCE_EXHAUSTED),
          f"oversized: {code} {details[:100]}")
    # Not a CreateAnalysisRequest: field 2 (spec) holding bytes that are not UTF-8.
    raw = channel.unary_unary("/vigil.v1.Analyses/CreateAnalysis",
                              request_serializer=lambda b: b, response_deserializer=lambda b: b)
    code, details = status_of(lambda: raw(b"\x12\x02\xff\xfe"))
    check(code == grpc.StatusCode.INVALID_ARGUMENT and "CreateAnalysisRequest.spec" in details,
          f"malformed: {code} {details}")
    code, _ = status_of(lambda: analyses.GetAnalysis(apb.GetAnalysisRequest(id="nope")))
    check(code == grpc.StatusCode.NOT_FOUND, f"get unknown: {code}")

    # Watch from the start: the current state first, then every entry, until it finishes.
    updates = list(analyses.WatchAnalysis(apb.WatchAnalysisRequest(id="checkout-rev42"),
                                          timeout=30))
    check(updates[0].WhichOneof("update") == "analysis", "state first")
    rest = updates[1:]
    seqs = [u.seq for u in rest]
    check(seqs == list(range(1, len(rest) + 1)), f"seqs {seqs}")
    judgements = [u.judgement for u in rest if u.WhichOneof("update") == "judgement"]
    check([j.interval for j in judgements] == [1, 2, 3], f"intervals {judgements}")
    for j in judgements:
        # Prometheus at 127.0.0.1:9 cannot answer: an Error with the source in its note.
        check(j.judgement.verdict == vpb.VERDICT_ERROR, f"verdict {j.judgement.verdict}")
        check("127.0.0.1:9" in j.judgement.note, f"note {j.judgement.note}")
    last = rest[-1]
    check(last.WhichOneof("update") == "event" and last.event.kind == "finished"
          and last.event.state == apb.STATE_ERROR, f"last {last}")
    # Resumed after seq 2: exactly what came after it.
    resumed = list(analyses.WatchAnalysis(apb.WatchAnalysisRequest(id="checkout-rev42",
                                                                   after_seq=2), timeout=30))
    check([u.seq for u in resumed[1:]] == seqs[2:], f"resumed {[u.seq for u in resumed]}")
    code, _ = status_of(lambda: list(analyses.WatchAnalysis(
        apb.WatchAnalysisRequest(id="checkout-rev42", after_seq=999))))
    check(code == grpc.StatusCode.INVALID_ARGUMENT, f"after_seq beyond: {code}")

    a = analyses.GetAnalysis(apb.GetAnalysisRequest(id="checkout-rev42"))
    check(a.state == apb.STATE_ERROR and a.verdict == vpb.VERDICT_ERROR, f"get {a}")
    check(a.intervals_judged == 3 and a.last_seq == seqs[-1], f"get counts {a}")
    check(a.last_judgement.interval == 3 and a.HasField("finished_ms"), "get detail")

    # Another app, then list by app and state.
    other = analyses.CreateAnalysis(apb.CreateAnalysisRequest(spec=past_spec("payments")))
    check(len(other.analysis.id) == 26, f"assigned id {other.analysis.id}")
    page = analyses.ListAnalyses(apb.ListAnalysesRequest(app="checkout"))
    check([x.id for x in page.analyses] == ["checkout-rev42"], f"by app {page}")
    page = analyses.ListAnalyses(apb.ListAnalysesRequest(page_size=1))
    check(len(page.analyses) == 1 and page.next_page_token, "paging")
    page2 = analyses.ListAnalyses(apb.ListAnalysesRequest(page_size=1,
                                                          page_token=page.next_page_token))
    check({page.analyses[0].id, page2.analyses[0].id}
          == {"checkout-rev42", other.analysis.id}, "two pages, newest first")
    code, details = status_of(lambda: analyses.ListAnalyses(
        apb.ListAnalysesRequest(page_token="not-a-token")))
    check(code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("page_token"), details)
    code, details = status_of(lambda: analyses.ListAnalyses(apb.ListAnalysesRequest(states=[42])))
    check(code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("states[0]"), details)

    # A finished analysis cannot be cancelled.
    code, _ = status_of(lambda: analyses.CancelAnalysis(
        apb.CancelAnalysisRequest(id="checkout-rev42")))
    check(code == grpc.StatusCode.FAILED_PRECONDITION, f"cancel finished: {code}")

    # Feedback.
    far = int(time.time() * 1000) + 86_400_000
    fb = analyses.RecordFeedback(apb.RecordFeedbackRequest(
        app="checkout", key="metric:errors", kind=apb.FEEDBACK_KIND_FALSE_POSITIVE,
        note="known noisy", expires_ms=far))
    check(fb.id >= 1, "feedback id")
    code, details = status_of(lambda: analyses.RecordFeedback(apb.RecordFeedbackRequest(
        app="checkout", key="metric:errors", kind=apb.FEEDBACK_KIND_CRITICAL, expires_ms=1)))
    check(code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("expires_ms"), details)

    # The stateless judge: 30 baseline points around 100 ms; the canary 60 % slower fails on
    # a critical metric, the same canary passes.
    def series(name, base, factor, t0):
        pts = [jpb.Point(time=t0 + 10 * i, value=(base + (i * 7919 % 13) / 13.0) * factor)
               for i in range(30)]
        return jpb.MetricSeries(name=name, points=pts)

    rule = jpb.MetricRule(name="latency_ms", direction=jpb.DIRECTION_INCREASE, critical=True)
    slow = judge.Judge(jpb.JudgeRequest(
        baseline=jpb.SideData(metrics=[series("latency_ms", 100, 1.0, 0)]),
        canary=jpb.SideData(metrics=[series("latency_ms", 100, 1.6, 1000)]),
        metrics=[rule]))
    check(slow.judgement.verdict == vpb.VERDICT_FAIL, f"slow canary {slow}")
    ev = [f for f in slow.judgement.findings if f.key == "metric:latency_ms"][0]
    check(ev.key == "metric:latency_ms" and ev.severity == vpb.SEVERITY_FAIL
          and ev.signal == vpb.SIGNAL_METRICS and ev.HasField("p") and ev.p < 0.01
          and ev.effect.kind == "shift" and ev.effect.estimate > 50, f"evidence {ev}")
    same = judge.Judge(jpb.JudgeRequest(
        baseline=jpb.SideData(metrics=[series("latency_ms", 100, 1.0, 0)]),
        canary=jpb.SideData(metrics=[series("latency_ms", 100, 1.0, 1000)]),
        metrics=[rule]))
    check(same.judgement.verdict == vpb.VERDICT_PASS, f"same canary {same}")
    code, details = status_of(lambda: judge.Judge(jpb.JudgeRequest(
        canary=jpb.SideData(metrics=[jpb.MetricSeries(
            name="x", points=[jpb.Point(time=1, value=float("inf"))])]))))
    check(code == grpc.StatusCode.INVALID_ARGUMENT
          and details.startswith("canary.metrics[0].points[0].value"), details)
    empty = judge.Judge(jpb.JudgeRequest())
    check(empty.judgement.verdict == vpb.VERDICT_INCONCLUSIVE, f"no data {empty}")

    print(f"ok: {CHECKS} checks", flush=True)


if __name__ == "__main__":
    main()
