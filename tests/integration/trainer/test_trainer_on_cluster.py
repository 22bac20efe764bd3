"""The trainer against the local cluster's real parts: MinIO for storage and a real
API server for the progress annotation, and a trainer pod run end to end."""

from __future__ import annotations

import hashlib
import json
import uuid
from pathlib import Path

import pytest
import torch

import forja_architectures as architectures
import forja_storage as storage
from fixtures.cluster import Cluster, wait_for
from forja_api.artifact import ModelManifest
from forja_api.contract import PROGRESS_ANNOTATION, Progress, Result
from forja_operator.config import OperatorConfig
from forja_trainer.progress import PodAnnotationSink, kubernetes_pod_patcher
from support.restricted import restricted

pytestmark = pytest.mark.cluster


@pytest.fixture
def s3_env(cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> str:
    """Credentials in the env as a pod gets them; returns a fresh prefix in the bucket."""
    monkeypatch.setenv("FORJA_S3_ENDPOINT", cluster.s3_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", cluster.s3_access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", cluster.s3_secret_key)
    return f"s3://{cluster.bucket}/trainer-tests/{uuid.uuid4().hex[:8]}"


def test_storage_over_minio(s3_env: str, tmp_path: Path) -> None:
    base = s3_env
    storage.upload_bytes(b"one", storage.join(base, "d", "a.txt"))
    src = tmp_path / "tree"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "b.bin").write_bytes(b"\x01" * 1000)
    storage.upload(src, storage.join(base, "d"))
    storage.upload_bytes(b"x", f"{base}/d-other/c.txt")
    assert storage.list_uris(storage.join(base, "d")) == [f"{base}/d/a.txt", f"{base}/d/sub/b.bin"]
    assert storage.exists(storage.join(base, "d"))  # a prefix
    assert storage.exists(storage.join(base, "d", "a.txt"))
    assert not storage.exists(storage.join(base, "nothing"))
    assert storage.read_bytes(storage.join(base, "d", "a.txt")) == b"one"
    out = storage.download(storage.join(base, "d"), tmp_path / "out")
    assert (out / "sub" / "b.bin").read_bytes() == b"\x01" * 1000
    with pytest.raises(storage.ObjectNotFound):
        storage.read_bytes(storage.join(base, "missing.txt"))
    storage.delete(storage.join(base, "d", "a.txt"))
    storage.delete(storage.join(base, "d", "a.txt"))
    assert not storage.exists(storage.join(base, "d", "a.txt"))

    data = b"pretrained" * 1000
    uri = storage.join(base, "pretrained_models", "nafnet", "w.pth")
    storage.upload_bytes(data, uri)
    digest = hashlib.sha256(data).hexdigest()
    cached = storage.fetch_verified(uri, digest, tmp_path / "cache")
    assert cached.read_bytes() == data
    storage.delete(uri)
    assert storage.fetch_verified(uri, digest, tmp_path / "cache") == cached  # from the cache
    storage.upload_bytes(b"tampered", uri)
    with pytest.raises(storage.ChecksumMismatch):
        storage.fetch_verified(uri, hashlib.sha256(b"other").hexdigest(), tmp_path / "cache")


TRAINER_IMAGE = OperatorConfig().trainer_image


def _sleeper_pod(name: str) -> dict[str, object]:
    return restricted({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "main", "image": TRAINER_IMAGE,
                            "command": ["python", "-c", "import time; time.sleep(120)"]}],
        },
    })


def test_progress_annotation_on_a_real_pod(
    cluster: Cluster, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Outside a pod the patcher falls back to $KUBECONFIG: name it here rather than
    # rely on what earlier tests left in the environment.
    monkeypatch.setenv("KUBECONFIG", str(cluster.kubeconfig))
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(_sleeper_pod("p")))
    sink = PodAnnotationSink(kubernetes_pod_patcher("p", namespace), min_interval=0.2)
    for epoch in range(1, 6):
        sink.send(Progress(epoch=epoch, total_epochs=5, metrics={"val_loss": 1.0 / epoch}))
    sink.close()
    assert sink.failures == 0 and 1 <= sink.sent <= 2
    pod = json.loads(cluster.kubectl("get", "pod", "p", "-n", namespace, "-o", "json").stdout)
    progress = Progress.model_validate_json(pod["metadata"]["annotations"][PROGRESS_ANNOTATION])
    assert progress.epoch == 5 and progress.metrics["val_loss"] == pytest.approx(0.2)
    cluster.kubectl("delete", "pod", "p", "-n", namespace, "--wait=false")


@pytest.mark.slow
def test_trainer_pod_with_pretrained_weights_from_minio(
    cluster: Cluster, namespace: str, s3_secret, s3_env: str
) -> None:
    """A pod runs python -m forja_trainer: pretrained weights fetched from MinIO and
    verified, progress on its own annotation, checkpoints and the model in MinIO, the
    Result in its termination message."""
    donor = architectures.build("simple-nafnet", {"width": 8})
    blob = Path(cluster.state_dir) / f"donor-{uuid.uuid4().hex[:6]}.pth"
    torch.save({"params": donor.state_dict()}, blob)
    pretrained_uri = storage.join(s3_env, "pretrained_models", "nafnet", "donor.pth")
    storage.upload(blob, pretrained_uri)
    secret = s3_secret(namespace)
    spec = {
        "name": "restore",
        "namespace": namespace,
        "attempt": 0,
        "spec": {
            "model": "restore",
            "trainer": "restoration-finetune",
            "dataset": {"uri": "generated://restoration-pairs?n=12&size=16", "format": "generated"},
            "hyperparameters": {"epochs": 2, "image_size": 16, "width": 8},
            "pretrained": {"uri": pretrained_uri, "sha256": storage.sha256_file(blob)},
            "resources": {"cpu": "1"},
        },
        "checkpointUri": storage.join(s3_env, "ckpt"),
        "artifactUri": storage.join(s3_env, "model"),
    }
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": "trainer"},
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "patch"]}],
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": "trainer"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "trainer"},
        "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": namespace}],
    }
    field = {"valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}
    pod = restricted({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "restore-0"},
        "spec": {
            "restartPolicy": "Never",
            "containers": [
                {
                    "name": "trainer",
                    "image": TRAINER_IMAGE,
                    "command": ["python", "-m", "forja_trainer"],
                    "env": [
                        {"name": "FORJA_SPEC", "value": json.dumps(spec)},
                        {"name": "FORJA_POD_NAME", **field},
                        {"name": "FORJA_NAMESPACE", "value": namespace},
                        {"name": "FORJA_TORCH_THREADS", "value": "1"},
                    ],
                    "envFrom": [{"secretRef": {"name": secret}}],
                }
            ],
        },
    })
    for doc in (role, binding, pod):
        cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(doc))

    def terminated() -> dict[str, object] | None:
        obj = json.loads(
            cluster.kubectl("get", "pod", "restore-0", "-n", namespace, "-o", "json").stdout
        )
        for status in obj.get("status", {}).get("containerStatuses", []):
            if "terminated" in status.get("state", {}):
                return {"pod": obj, "terminated": status["state"]["terminated"]}
        return None

    try:
        done = wait_for(terminated, timeout=600, interval=2, message="the trainer pod to finish")
    except BaseException:
        print(cluster.kubectl("get", "pod", "restore-0", "-n", namespace, "-o", "yaml").stdout)
        print(cluster.kubectl("logs", "restore-0", "-n", namespace, check=False).stdout[-4000:])
        raise
    state = done["terminated"]  # type: ignore[index]
    assert state["exitCode"] == 0, state  # type: ignore[index]
    result = Result.from_termination_message(state.get("message"))  # type: ignore[union-attr]
    assert result is not None and result.ok and result.artifact is not None
    manifest = ModelManifest.model_validate_json(storage.read_bytes(result.artifact.uri))
    assert (
        hashlib.sha256(storage.read_bytes(result.artifact.uri)).hexdigest()
        == result.artifact.sha256
    )
    assert manifest.architecture == "simple-nafnet" and "transfer" in manifest.files
    assert storage.exists(storage.join(s3_env, "ckpt", "last.pt"))
    annotations = done["pod"]["metadata"].get("annotations", {})  # type: ignore[index]
    progress = Progress.model_validate_json(annotations[PROGRESS_ANNOTATION])
    assert progress.epoch == 2 and progress.checkpoint is not None
