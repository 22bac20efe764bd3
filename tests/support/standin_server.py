"""A stand-in model server that keeps forja_server's contract with the operator.

Used by the InferenceService integration tests so a rollout can be driven with
models that load in milliseconds (or refuse to). It reads the same
``FORJA_SERVER_CONFIG`` (forja_api.serving.ServingConfig), fetches each stage's
artifact (``s3://`` with the store's credentials from the environment, as the real
server does; or ``file://``), checks its sha256, and only then answers ready on
``/v2/health/ready``; a digest mismatch or an artifact marked unloadable exits
non-zero, as the real server does. ``/v2/models/<name>/infer`` answers with
the stage versions that served it (a pipeline runs its stages in order),
``/metrics`` counts answers as ``forja_requests_total{model,endpoint,status}``.

Artifact format (JSON): ``{"standin": true, "loadable": true, "loadSeconds": 0.2,
"errorRate": 0.0}``.

Runs in the server image as ``python -c <this file's source>`` (the image holds no
tests), or as a file beside a checkout.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

if "__file__" in globals():  # run from a checkout, not from the image
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "operator"))

import forja_storage
from forja_api import contract, serving


class State:
    def __init__(self, config: serving.ServingConfig) -> None:
        self.config = config
        self.ready = False  # what the readiness probe reports
        self.loaded = False  # whether requests can be answered (also while draining)
        self.lock = threading.Lock()
        self.counts: dict[tuple[str, str, str], int] = {}
        self.error_rate = 0.0

    def count(self, endpoint: str, status: int) -> None:
        with self.lock:
            key = (self.config.name, endpoint, str(status))
            self.counts[key] = self.counts.get(key, 0) + 1

    def metrics(self) -> str:
        lines = ["# TYPE forja_requests_total counter"]
        with self.lock:
            for (model, endpoint, status), n in sorted(self.counts.items()):
                lines.append(f'forja_requests_total{{endpoint="{endpoint}",model="{model}",'
                             f'status="{status}"}} {float(n)}')
        return "\n".join(lines) + "\n"


def load(config: serving.ServingConfig, state: State) -> None:
    for stage in config.stages:
        data = forja_storage.read_bytes(stage.uri)
        digest = hashlib.sha256(data).hexdigest()
        if digest != stage.sha256:
            sys.exit(f"stage {stage.name}: sha256 mismatch: {digest} != {stage.sha256}")
        artifact = json.loads(data)
        time.sleep(float(artifact.get("loadSeconds", 0.1)))
        if not artifact.get("loadable", True):
            sys.exit(f"stage {stage.name}: cannot load {stage.uri}")
        state.error_rate = max(state.error_rate, float(artifact.get("errorRate", 0.0)))
    state.loaded = state.ready = True


def handler(state: State) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def reply(self, status: int, body: bytes, ctype: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            if self.path == serving.LIVE_PATH:
                self.reply(200, b'{"live":true}')
            elif self.path == serving.READY_PATH:
                self.reply(200 if state.ready else 503, json.dumps({"ready": state.ready}).encode())
            elif self.path == serving.METRICS_PATH:
                self.reply(200, state.metrics().encode(), "text/plain; version=0.0.4")
            else:
                self.reply(404, b'{"error":"not found"}')

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            if not self.path.endswith("/infer") and self.path != "/predict":
                self.reply(404, b'{"error":"not found"}')
                return
            if not state.loaded:
                state.count("infer", 503)
                self.reply(503, b'{"error":"not ready"}')
                return
            if random.random() < state.error_rate:
                state.count("infer", 500)
                self.reply(500, b'{"error":"injected failure"}')
                return
            try:
                inputs = json.loads(body or b"{}")
            except ValueError:
                state.count("infer", 400)
                self.reply(400, b'{"error":"body is not JSON"}')
                return
            outputs = []
            value = inputs
            for stage in state.config.stages:  # each stage feeds the next
                value = {"stage": stage.name, "version": stage.version, "input": value}
                outputs.append({"stage": stage.name, "model": stage.model,
                                "version": stage.version})
            state.count("infer", 200)
            self.reply(200, json.dumps({
                "model_name": state.config.name,
                "pod": os.environ.get(contract.POD_NAME_ENV, ""),
                "stages": outputs,
                "result": value,
            }).encode())

    return Handler


def main() -> None:
    config = serving.ServingConfig.model_validate_json(os.environ[serving.SERVER_CONFIG_ENV])
    state = State(config)
    host = config.host or os.environ.get(contract.POD_IP_ENV) or "0.0.0.0"
    server = ThreadingHTTPServer((host, config.port), handler(state))
    server.daemon_threads = True

    def stop(*_: object) -> None:
        # Not ready first, so endpoints drop the pod; keep answering while it drains.
        state.ready = False
        threading.Timer(min(config.graceful_shutdown_seconds, 2.0), server.shutdown).start()

    def loader() -> None:
        try:
            load(config, state)
        except (SystemExit, OSError, ValueError, forja_storage.StorageError) as exc:
            print(f"load failed: {exc}", file=sys.stderr, flush=True)
            os._exit(1)
        print(f"ready: {config.name} {[s.version for s in config.stages]}", flush=True)

    signal.signal(signal.SIGTERM, stop)
    threading.Thread(target=loader, daemon=True).start()
    server.serve_forever()
    server.server_close()


if __name__ == "__main__":
    main()
