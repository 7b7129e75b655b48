"""Powertools for AWS Lambda (Python) `idempotent_function` with its Redis persistence layer,
wrapped in a small HTTP server for the peer comparison: POST /work (Idempotency-Key header)
runs a function doing 1 ms of fixed work and counting its runs; GET /runs reads the count.

Installed by run.sh into a venv in an ignored directory. Its Redis keys start with
AWS_LAMBDA_FUNCTION_NAME, which run.sh sets to a prefix of its own and deletes after.
Usage: python powertools_server.py   (REDIS_URL, default redis://127.0.0.1:6379)
"""

import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from aws_lambda_powertools.utilities.idempotency import IdempotencyConfig, idempotent_function
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
)
from aws_lambda_powertools.utilities.idempotency.persistence.cache import CachePersistenceLayer

persistence = CachePersistenceLayer(url=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379"))
config = IdempotencyConfig(event_key_jmespath="idempotency_key", expires_after_seconds=3600)
runs = 0
runs_lock = threading.Lock()


@idempotent_function(data_keyword_argument="payload", config=config, persistence_store=persistence)
def work(payload: dict) -> dict:
    global runs
    time.sleep(0.001)
    with runs_lock:
        runs += 1
        run = runs
    return {"key": payload["idempotency_key"], "run": run}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def answer(self, status: int, body: bytes, content_type: str = "application/json"):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/runs":
            with runs_lock:
                self.answer(200, str(runs).encode(), "text/plain")
        else:
            self.answer(200, b"no session needed", "text/plain")

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        key = self.headers.get("Idempotency-Key")
        if self.path != "/work" or not key:
            self.answer(400, b'{"error":"need POST /work with an Idempotency-Key"}')
            return
        try:
            result = work(payload={"idempotency_key": key})
        except IdempotencyAlreadyInProgressError:
            self.answer(409, b'{"error":"in progress"}')
            return
        self.answer(200, json.dumps(result).encode())


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print(f"listening on 127.0.0.1:{server.server_address[1]}", flush=True)
    server.serve_forever()
