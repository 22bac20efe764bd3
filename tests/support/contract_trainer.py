"""A test trainer that follows forja's pod contract for real, with no ML framework.

It reads FORJA_SPEC, resumes from FORJA_RESUME_FROM, "trains" for a few short
epochs, writes a checkpoint after each epoch to FORJA_CHECKPOINT_URI (MinIO via
boto3, or file://), patches its pod's progress annotation, writes a weights file
and a ``forja-model.json`` manifest under FORJA_ARTIFACT_URI, writes a Result to
the termination message and exits with the code the test chose.

Behaviour comes from ``spec.hyperparameters`` (so one command serves every test):

- ``epochs`` (2), ``epoch_seconds`` (0.3), ``batch_size``
- ``exit_code``: exit with this code (after writing a Result) instead of succeeding
- ``oom_attempts``: attempts (1-based) on which it allocates memory past its limit
  until the kernel kills it under the container's limit (OOMKilled); ``oom_below_batch``: only
  while batch_size is at least this
- ``hang``: keep "training" until killed (suspend, deadline, operator-kill tests)
- ``bad_digest``: report a wrong sha256 for the artifact (verification must fail)

Run as a pod command: ``["python", "<checkout>/tests/support/contract_trainer.py"]``.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from forja_api import contract
from forja_api.artifact import MANIFEST_NAME, ArtifactFile, ModelManifest


def _s3():
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=os.environ.get(contract.S3_ENDPOINT_ENV),
        aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID"),
        aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY"),
        region_name="us-east-1",
    )


def put(uri: str, data: bytes) -> None:
    if uri.startswith("s3://"):
        bucket, key = uri[5:].split("/", 1)
        _s3().put_object(Bucket=bucket, Key=key, Body=data)
    elif uri.startswith("file://"):
        path = Path(uri[7:])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    else:
        raise SystemExit(f"unsupported uri {uri}")


def get(uri: str) -> bytes:
    if uri.startswith("s3://"):
        bucket, key = uri[5:].split("/", 1)
        return bytes(_s3().get_object(Bucket=bucket, Key=key)["Body"].read())
    return Path(uri[7:]).read_bytes()


class Reporter:
    """Patches this pod's progress annotation (best effort: training must not fail on it)."""

    def __init__(self) -> None:
        self.api: Any = None
        try:
            from kubernetes import client, config

            try:
                config.load_incluster_config()
            except config.ConfigException:
                config.load_kube_config()
            self.api = client.CoreV1Api()
        except Exception as exc:
            print(f"progress reporting disabled: {exc}", file=sys.stderr)

    def report(self, progress: contract.Progress) -> None:
        if self.api is None:
            return
        body = {"metadata": {"annotations": {contract.PROGRESS_ANNOTATION: progress.to_json()}}}
        try:
            self.api.patch_namespaced_pod(
                os.environ[contract.POD_NAME_ENV], os.environ[contract.NAMESPACE_ENV], body
            )
        except Exception as exc:
            print(f"progress not reported: {exc}", file=sys.stderr)


def finish(result: contract.Result, code: int) -> None:
    try:
        Path(contract.TERMINATION_MESSAGE_PATH).write_text(result.to_termination_message())
    except OSError as exc:
        print(f"no termination log: {exc}", file=sys.stderr)
    print(result.to_json())
    sys.stdout.flush()
    os._exit(code)


def main() -> None:
    rendered = contract.RenderedSpec.model_validate_json(os.environ[contract.SPEC_ENV])
    hp = {**rendered.spec.get("hyperparameters", {}), **rendered.overrides}
    epochs = int(hp.get("epochs", 2))
    batch = int(hp.get("batch_size", 32))
    attempt = rendered.attempt
    ckpt_uri = rendered.checkpoint_uri + contract.LAST_CHECKPOINT
    reporter = Reporter()
    state = {"epoch": 0}

    start = 0
    if rendered.resume_from:
        start = int(json.loads(get(rendered.resume_from))["epoch"])
        print(f"resumed from {rendered.resume_from} at epoch {start}", flush=True)
    state["epoch"] = start

    def checkpoint(epoch: int) -> contract.CheckpointRef:
        data = json.dumps({"epoch": epoch, "batch_size": batch, "attempt": attempt}).encode()
        put(ckpt_uri, data)
        return contract.CheckpointRef(
            uri=ckpt_uri, epoch=epoch, sha256=hashlib.sha256(data).hexdigest()
        )

    def on_term(signum: int, _frame: Any) -> None:
        ref = checkpoint(state["epoch"])
        finish(
            contract.Result(ok=False, reason="Terminated", checkpoint=ref, message="SIGTERM"), 143
        )

    signal.signal(signal.SIGTERM, on_term)

    if attempt in hp.get("oom_attempts", []) and batch >= int(hp.get("oom_below_batch", 0)):
        # Checkpoint one epoch first so the next attempt has something to resume.
        state["epoch"] = max(start, 1)
        ref = checkpoint(state["epoch"])
        reporter.report(
            contract.Progress(
                epoch=state["epoch"], total_epochs=epochs, checkpoint=ref, batch_size=batch
            )
        )
        hog = []
        for _ in range(4096):  # up to 4 GiB; the memory limit stops it long before
            hog.append(bytearray(1 << 20))
        finish(contract.Result(ok=False, message="memory limit not enforced"), 137)

    if "exit_code" in hp and int(hp["exit_code"]) != 0:
        code = int(hp["exit_code"])
        reason = contract.PERMANENT_REASONS.get(code)
        finish(
            contract.Result(ok=False, reason=reason, message=f"dataset.uri: test failure {code}"),
            code,
        )

    for epoch in range(start + 1, epochs + 1):
        time.sleep(float(hp.get("epoch_seconds", 0.3)))
        state["epoch"] = epoch
        ref = checkpoint(epoch)
        reporter.report(
            contract.Progress(
                epoch=epoch,
                total_epochs=epochs,
                metrics={"loss": 1.0 / epoch},
                checkpoint=ref,
                batch_size=batch,
            )
        )
    while hp.get("hang"):
        time.sleep(0.2)

    weights = json.dumps({"w": [1.0, 2.0], "batch_size": batch}).encode()
    base = rendered.artifact_uri.rstrip("/")
    put(f"{base}/weights.json", weights)
    manifest = ModelManifest(
        format="torch-state-dict",
        task="classification",
        files={
            "weights": ArtifactFile(
                path="weights.json", sha256=hashlib.sha256(weights).hexdigest(), size=len(weights)
            )
        },
        metrics={"accuracy": 0.9},
        trainer="contract-test",
    )
    data = manifest.to_json().encode()
    put(f"{base}/{MANIFEST_NAME}", data)
    digest = hashlib.sha256(data).hexdigest()
    if hp.get("bad_digest"):
        digest = "0" * 64
    result = contract.Result(
        ok=True,
        artifact=contract.ArtifactRef(
            uri=f"{base}/{MANIFEST_NAME}",
            sha256=digest,
            size=len(data),
            format="torch-state-dict",
            task="classification",
        ),
        metrics={"accuracy": 0.9, "batch_size": float(batch)},
        checkpoint=contract.CheckpointRef(uri=ckpt_uri, epoch=epochs),
    )
    finish(result, 0)


if __name__ == "__main__":
    main()
