"""Shared steps of the end-to-end tests: train a manifest's job, check its version, ask.

Requests are built from the trainers' own generators, so the scene a model is asked
about looks like what it was trained on.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
import urllib.error
import urllib.request
from typing import Any

import boto3
from botocore.config import Config

from .conftest import Forja

__all__ = ["Trained", "http", "png", "s3_client", "train_and_version", "verify_sha256"]


class Trained:
    def __init__(self, job: str, version_name: str, version: str, seconds: float,
                 mv: dict[str, Any]) -> None:
        self.job, self.version_name, self.version = job, version_name, version
        self.seconds, self.mv = seconds, mv


def s3_client(forja: Forja) -> Any:
    c = forja.cluster
    return boto3.client(
        "s3", endpoint_url=c.s3_endpoint, aws_access_key_id=c.s3_access_key,
        aws_secret_access_key=c.s3_secret_key, region_name="us-east-1",
        config=Config(retries={"max_attempts": 3}),
    )


def verify_sha256(forja: Forja, mv: dict[str, Any]) -> int:
    """Download the artifact from MinIO ourselves: its digest must be spec.artifact.sha256,
    and every file its forja-model.json lists must match that file's digest.
    Returns how many objects were checked."""
    artifact = mv["spec"]["artifact"]
    s3 = s3_client(forja)

    def fetch(uri: str) -> bytes:
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        return bytes(s3.get_object(Bucket=bucket, Key=key)["Body"].read())

    body = fetch(artifact["uri"])
    assert hashlib.sha256(body).hexdigest() == artifact["sha256"], artifact["uri"]
    checked = 1
    if artifact["uri"].endswith(".json"):
        manifest = json.loads(body)
        base = artifact["uri"].rsplit("/", 1)[0]
        for entry in manifest["files"].values():
            data = fetch(f"{base}/{entry['path']}")
            assert hashlib.sha256(data).hexdigest() == entry["sha256"], entry["path"]
            checked += 1
    return checked


def train_and_version(forja: Forja, ns: str, filename: str, timeout: float = 900,
                      **overrides: Any) -> Trained:
    start = time.monotonic()
    doc = forja.apply_manifest(filename, ns, **overrides)
    name = doc["metadata"]["name"]
    job = forja.wait_job(name, ns, timeout=timeout)
    mv_name = job["status"]["modelVersion"]
    mv = forja.wait_version_ready(mv_name, ns)
    seconds = time.monotonic() - start
    assert mv["spec"]["model"] == doc["spec"]["model"]
    verify_sha256(forja, mv)
    print(f"\n{filename}: trained and versioned {mv['spec']['version']} in {seconds:.0f} s")
    return Trained(name, mv_name, mv["spec"]["version"], seconds, mv)


def http(url: str, body: bytes | None = None, content_type: str = "application/json",
         timeout: float = 60) -> tuple[int, bytes, dict[str, str]]:
    req = urllib.request.Request(url, data=body, method="POST" if body is not None else "GET",
                                 headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read(), dict(resp.headers)
    except urllib.error.HTTPError as err:
        return err.code, err.read(), dict(err.headers)


def post_json(url: str, payload: Any) -> dict[str, Any]:
    status, body, _ = http(url, json.dumps(payload).encode())
    assert status == 200, f"{url}: {status} {body[:500]!r}"
    return dict(json.loads(body))


def png(array: Any) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def serve(forja: Forja, ns: str, filename: str, version: str, **overrides: Any) -> str:
    start = time.monotonic()
    doc = forja.apply_manifest(filename, ns, **overrides)
    name = doc["metadata"]["name"]
    forja.wait_isvc(name, ns, version)
    print(f"{filename}: Ready on {version} in {time.monotonic() - start:.0f} s")
    return forja.service_url(name, ns)
