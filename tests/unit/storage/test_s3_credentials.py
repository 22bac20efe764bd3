"""Each s3:// call signs with the credentials in the environment at the time of the
call, even after another pair was used in the same process (a test process talks to
two clusters' MinIO; boto3's default session keeps the first pair it resolves)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import forja_storage as storage


class _Recorder(BaseHTTPRequestHandler):
    """An S3 endpoint that accepts every PUT and keeps each Authorization header."""

    seen: list[str] = []

    def do_PUT(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        _Recorder.seen.append(self.headers.get("Authorization", ""))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def endpoint() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Recorder.seen = []
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_second_credential_pair_signs_its_own_requests(endpoint, monkeypatch) -> None:
    monkeypatch.setenv(storage.S3_ENDPOINT_ENV, endpoint)
    for access in ("FIRSTKEY", "SECONDKEY", "FIRSTKEY"):
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", access)
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", f"secret-of-{access}")
        storage.upload_bytes(b"x", "s3://bucket/key")
    signed_by = [header.split("Credential=")[1].split("/")[0] for header in _Recorder.seen]
    assert signed_by == ["FIRSTKEY", "SECONDKEY", "FIRSTKEY"]
