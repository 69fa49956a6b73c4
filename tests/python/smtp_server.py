"""A real SMTP server for tests/service_notify.rs: aiosmtpd with STARTTLS required and AUTH
(PLAIN/LOGIN, only after STARTTLS). Each accepted message is appended to OUT as one JSON line
(envelope, whether the session was under TLS, who authenticated, the raw message). Runs until its
stdin closes (the test holds the pipe; a killed test takes the server with it).

usage: smtp_server.py PORT CERT KEY USER PASSWORD OUT
"""

import json
import warnings
import os
import ssl
import sys

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


def main():
    # aiosmtpd 1.4 warns about its own deprecated Session.login_data on every session.
    warnings.simplefilter("ignore", DeprecationWarning)
    port, cert, key, user, password, out = sys.argv[1:7]
    port = int(port)

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login.decode() == user
            and auth_data.password.decode() == password
        )
        # auth_data is what the session keeps: the login checked here.
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            rec = {
                "mail_from": envelope.mail_from,
                "rcpt_tos": envelope.rcpt_tos,
                "tls": session.ssl is not None,
                "authenticated": bool(session.authenticated),
                "login": (session.auth_data.login.decode()
                          if isinstance(session.auth_data, LoginPassword) else None),
                "data": envelope.content.decode("utf-8", "replace"),
            }
            with open(out, "a", encoding="utf-8") as f:
                f.write(json.dumps(rec) + "\n")
                f.flush()
                os.fsync(f.fileno())
            return "250 OK"

    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    controller = Controller(
        Handler(),
        hostname="127.0.0.1",
        port=port,
        tls_context=ctx,
        require_starttls=True,
        authenticator=authenticator,
        auth_required=True,
        auth_require_tls=True,
    )
    controller.start()
    print("ready", flush=True)
    try:
        sys.stdin.read()
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
