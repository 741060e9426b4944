#!/usr/bin/env python3
"""A webhook receiver for coda's end-to-end tests (tests/e2e/webhooks.rs).

Every delivery is verified with the Standard Webhooks reference library
(`standardwebhooks` from PyPI), an implementation independent of coda's, against each
secret the test gave it; a delivery no secret verifies is answered 400 and counted as
rejected. Chosen requests (numbered from 1 in the order they arrive) are answered 500,
left unanswered past coda's timeout, closed without an answer, or held until the test
lets them go (a kill lands while one is in flight).

    POST /control  {"secrets": [...], "faults": {"3": "500" | "timeout" | "close" | "hang"}}
    POST /release  ends every held request (answered 200, unverified: coda is gone by then)
    GET  /received {"received": [...], "rejected": n, "requests": n, "holding": n}
    POST anything else: a delivery

Prints "listening PORT" on stdout once it listens on 127.0.0.1.
"""

import json
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

# Longer than the response timeout the tests give coda.
TIMEOUT_FAULT_SECONDS = 3.0

lock = threading.Lock()
released = threading.Event()
state = {"secrets": [], "faults": {}, "requests": 0, "received": [], "rejected": 0, "holding": 0}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def answer(self, code, obj):
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path != "/received":
            return self.answer(404, {"error": "no such path"})
        with lock:
            return self.answer(200, {k: state[k] for k in ("received", "rejected", "requests", "holding")})

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.path == "/control":
            control = json.loads(body)
            with lock:
                if "secrets" in control:
                    state["secrets"] = control["secrets"]
                if "faults" in control:
                    state["faults"] = {int(n): fault for n, fault in control["faults"].items()}
            return self.answer(200, {})
        if self.path == "/release":
            released.set()
            return self.answer(200, {})
        with lock:
            state["requests"] += 1
            number = state["requests"]
            fault = state["faults"].get(number)
            secrets = list(state["secrets"])
        if fault == "500":
            return self.answer(500, {"error": f"request {number} is chosen to fail"})
        if fault == "timeout":
            time.sleep(TIMEOUT_FAULT_SECONDS)
            return self.quietly(lambda: self.answer(200, {}))
        if fault == "close":
            self.close_connection = True
            return self.quietly(lambda: self.connection.shutdown(socket.SHUT_RDWR))
        if fault == "hang":
            with lock:
                state["holding"] += 1
            released.wait()
            self.close_connection = True
            return self.quietly(lambda: self.connection.shutdown(socket.SHUT_RDWR))
        headers = dict(self.headers.items())
        verified = []
        for index, secret in enumerate(secrets):
            try:
                Webhook(secret).verify(body, headers)
                verified.append(index)
            except WebhookVerificationError:
                pass
        if not verified:
            with lock:
                state["rejected"] += 1
            return self.answer(400, {"error": "no secret verifies this signature"})
        receipt = {
            "request": number,
            "webhook_id": self.headers.get("webhook-id"),
            "content_type": self.headers.get("content-type"),
            "verified_by": verified,
            "event": json.loads(body),
        }
        with lock:
            state["received"].append(receipt)
        return self.answer(200, {"ok": True})

    def quietly(self, action):
        try:
            action()
        except OSError:
            pass  # coda hung up first: that was the point


def main():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print(f"listening {server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    sys.exit(0)


if __name__ == "__main__":
    main()
