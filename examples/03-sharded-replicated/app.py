"""The example app: answers every request with its shard and pod name, as JSON.

Run it alone with ``PORT=8080 SHARD=0 POD_NAME=me python3 app.py``. It binds ``$POD_IP`` (the
pod's own loopback address on one machine) or all interfaces when that is unset.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        if self.path == "/healthz":
            body = b"ok\n"
            content_type = "text/plain"
        else:
            answer = {
                "shard": os.environ.get("SHARD", ""),
                "pod": os.environ.get("POD_NAME", ""),
                "path": self.path,
            }
            body = (json.dumps(answer) + "\n").encode()
            content_type = "application/json"
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        sys.stderr.write(f"{self.address_string()} {format % args}\n")


def main() -> None:
    host = os.environ.get("POD_IP", "0.0.0.0")
    port = int(os.environ.get("PORT", "8080"))
    server = ThreadingHTTPServer((host, port), Handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"serving shard {os.environ.get('SHARD', '?')} on {host}:{port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
