"""Each image built by hack/build-images.sh runs under runc (through podman) as its
own numeric non-root user, with a read-only root and only /tmp writable, and does its
job against the local cluster's real API server and MinIO:

- the operator image starts, answers /healthz and reconciles a TrainingJob;
- the trainer image trains one epoch of a built-in trainer on generated data and
  writes its artifact (with an ONNX graph) to MinIO;
- the server image verifies and serves that artifact: /v2/health/ready, a prediction;
- the trainer-tf image runs the tiny distill-QAT-TFLite pipeline.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

import forja_storage as storage
from fixtures.cluster import Cluster, wait_for
from forja_api.artifact import ModelManifest
from forja_api.contract import Result
from support.containers import IMAGE_NAMES, Container, image_ref, image_user, podman, run_args
from support.crds import crd_documents

pytestmark = [pytest.mark.cluster, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[3]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.fixture
def s3_env(cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    env = {
        "FORJA_S3_ENDPOINT": cluster.s3_endpoint,
        "AWS_ACCESS_KEY_ID": cluster.s3_access_key,
        "AWS_SECRET_ACCESS_KEY": cluster.s3_secret_key,
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


@pytest.mark.parametrize("name", IMAGE_NAMES)
def test_image_runs_as_its_numeric_user_on_a_read_only_root(name: str) -> None:
    ref = image_ref(name)
    user = image_user(ref)
    uid = user.partition(":")[0]
    assert uid.isdigit() and int(uid) != 0, f"{ref} runs as {user!r}"
    probe = ("id -u; grep -E '^(Seccomp|CapEff):' /proc/self/status; "
             "touch /probe 2>&1; touch /tmp/probe && echo tmp-writable")
    out = podman(*run_args(entrypoint="sh"), "--rm", ref, "-c", probe).stdout
    lines = out.splitlines()
    assert lines[0] == uid
    assert "Seccomp:\t2" in out and "CapEff:\t0000000000000000" in out
    assert "Read-only file system" in out and "tmp-writable" in out


@pytest.mark.parametrize("name", IMAGE_NAMES)
def test_image_runs_as_a_uid_it_has_no_passwd_entry_for(name: str) -> None:
    """Pods run as UIDs the image does not know (the chart's and operator's runAsUser);
    podman would add a passwd entry, a kubelet does not. getpass.getuser() (kopf, torch)
    must still answer."""
    code = "import getpass, os; print(os.getuid(), getpass.getuser())"
    out = podman(*run_args(entrypoint="python"), "--rm", "--user", "4242:4242",
                 "--passwd=false", image_ref(name), "-c", code).stdout
    assert out.split() == ["4242", "forja"]


def test_serving_image_has_no_framework_to_unpickle_with() -> None:
    code = ("import importlib.util as u; "
            "print([m for m in ('torch', 'ultralytics', 'tensorflow') if u.find_spec(m)]); "
            "import onnxruntime, ai_edge_litert, forja_server.app; print('ok')")
    out = podman(*run_args(entrypoint="python"), "--rm", image_ref("server"), "-c", code).stdout
    assert out.splitlines() == ["[]", "ok"]


def test_operator_image_answers_healthz_and_reconciles(
    cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    docs = yaml.safe_dump_all(crd_documents())
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", input=docs)
    # Self-contained credentials: the image's user cannot read the cluster's pki dir.
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(cluster.kubectl("config", "view", "--raw", "--flatten").stdout)
    kubeconfig.chmod(0o644)
    port = free_port()
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({
        "watchNamespaces": [namespace], "metricsPort": 0, "healthPort": port,
        "artifactStore": {"uri": f"s3://{cluster.bucket}/image-tests",
                          "endpoint": cluster.s3_endpoint},
    }))
    config.chmod(0o644)
    tmp_path.chmod(0o755)
    name = f"forja-operator-{uuid.uuid4().hex[:6]}"
    args = run_args(
        name=name,
        env={"KUBECONFIG": "/etc/forja/kubeconfig", "FORJA_CONFIG": "/etc/forja/config.yaml"},
        mounts=[(kubeconfig, "/etc/forja/kubeconfig", "ro"),
                (config, "/etc/forja/config.yaml", "ro")],
    )
    podman(*args, "--detach", image_ref("operator"))
    with Container(name) as container:
        try:
            wait_for(lambda: http_get(f"http://127.0.0.1:{port}/healthz")[0] == 200,
                     timeout=90, interval=1, message="the operator image's /healthz")
            job = yaml.safe_load((ROOT / "manifests/handwriting-classifier-trainingjob.yaml")
                                 .read_text())
            cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(job))

            def attempt_pod() -> dict[str, Any] | None:
                pods = json.loads(cluster.kubectl("get", "pods", "-n", namespace,
                                                  "-o", "json").stdout)["items"]
                return pods[0] if pods else None

            pod = wait_for(attempt_pod, timeout=90, interval=1,
                           message="the operator image to create an attempt pod")
        except BaseException:
            print(container.logs())
            raise
        assert pod["spec"]["containers"][0]["image"] == "forja/trainer:0.1.0"
        status = json.loads(cluster.kubectl("get", "trainingjob", job["metadata"]["name"],
                                            "-n", namespace, "-o", "json").stdout)["status"]
        assert status.get("phase") in {"Pending", "Running"}
        cluster.kubectl("delete", "trainingjob", job["metadata"]["name"], "-n", namespace,
                        "--wait=false")


def _train_in_image(image: str, spec: dict[str, Any], env: dict[str, str], tmp_path: Path,
                    timeout: float) -> Result:
    """Run one attempt the way the operator renders it: the spec in FORJA_SPEC, the
    store credentials in the env, the Result in /dev/termination-log."""
    message = tmp_path / "termination-log"
    message.write_text("")
    message.chmod(0o666)
    tmp_path.chmod(0o755)
    args = run_args(env={**env, "FORJA_SPEC": json.dumps(spec), "FORJA_TORCH_THREADS": "1"},
                    mounts=[(message, "/dev/termination-log", "rw")])
    ran = podman(*args, "--rm", image, timeout=timeout, check=False)
    result = Result.from_termination_message(message.read_text())
    assert ran.returncode == 0 and result is not None and result.ok, (
        f"exit {ran.returncode}; result {result}\n{ran.stdout[-3000:]}\n{ran.stderr[-3000:]}")
    return result


@pytest.fixture(scope="module")
def trained_classifier(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory
                       ) -> dict[str, str]:
    """The trainer image trains one epoch of image-classifier into MinIO."""
    prefix = f"s3://{cluster.bucket}/image-tests/{uuid.uuid4().hex[:8]}"
    env = {"FORJA_S3_ENDPOINT": cluster.s3_endpoint,
           "AWS_ACCESS_KEY_ID": cluster.s3_access_key,
           "AWS_SECRET_ACCESS_KEY": cluster.s3_secret_key}
    spec = {
        "name": "shapes", "namespace": "image-tests", "attempt": 0,
        "spec": {
            "model": "shapes", "trainer": "image-classifier",
            "dataset": {"uri": "generated://shapes?classes=3&per_class=12&size=16",
                        "format": "image-folder"},
            "hyperparameters": {"epochs": 1, "batch_size": 8, "image_size": 16},
            "resources": {"cpu": "1"},
        },
        "checkpointUri": f"{prefix}/ckpt", "artifactUri": f"{prefix}/model",
    }
    result = _train_in_image(image_ref("trainer"), spec, env,
                             tmp_path_factory.mktemp("trainer"), timeout=900)
    assert result.artifact is not None
    return {**env, "uri": result.artifact.uri, "sha256": result.artifact.sha256,
            "prefix": prefix, "format": result.artifact.format or "torch-state-dict"}


def test_trainer_image_writes_a_verified_artifact_with_a_graph(
    trained_classifier: dict[str, str], s3_env: dict[str, str]
) -> None:
    body = storage.read_bytes(trained_classifier["uri"])
    assert hashlib.sha256(body).hexdigest() == trained_classifier["sha256"]
    manifest = ModelManifest.model_validate_json(body)
    assert manifest.architecture and "onnx" in manifest.files
    assert storage.exists(storage.join(trained_classifier["prefix"], "ckpt", "last.pt"))


def test_server_image_serves_the_trained_model(trained_classifier: dict[str, str]) -> None:
    port = free_port()
    name = f"forja-server-{uuid.uuid4().hex[:6]}"
    env = {k: v for k, v in trained_classifier.items() if k.isupper()}
    args = run_args(name=name, env=env)
    podman(*args, "--detach", image_ref("server"), "--name", "shapes",
           "--model-uri", trained_classifier["uri"], "--sha256", trained_classifier["sha256"],
           "--format", trained_classifier["format"], "--host", "127.0.0.1", "--port", str(port))
    base = f"http://127.0.0.1:{port}"
    with Container(name) as container:
        try:
            def ready() -> bool:
                assert container.running(), "the server container exited"
                return http_get(f"{base}/v2/health/ready")[0] == 200

            wait_for(ready, timeout=120, interval=1,
                     message="the server image to load and verify the model")
            status, body = http_get(f"{base}/v2/models/shapes")
            assert status == 200, body
            meta = json.loads(body)
            shape = [abs(d) if d != -1 else 1 for d in meta["inputs"][0]["shape"]]
            data = np.random.default_rng(0).random(int(np.prod(shape)), dtype=np.float32)
            request = json.dumps({"inputs": [{
                "name": meta["inputs"][0]["name"], "shape": shape,
                "datatype": meta["inputs"][0]["datatype"], "data": data.tolist()}]}).encode()
            req = urllib.request.Request(f"{base}/v2/models/shapes/infer", data=request,
                                         headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=30) as r:
                answer = json.loads(r.read())
        except BaseException:
            print(container.logs())
            raise
    assert answer["model_name"] == "shapes" and answer["outputs"]
    assert all(np.isfinite(o["data"]).all() for o in answer["outputs"])


def test_trainer_tf_image_runs_the_tiny_pipeline(
    cluster: Cluster, s3_env: dict[str, str], tmp_path: Path
) -> None:
    prefix = f"s3://{cluster.bucket}/image-tests/{uuid.uuid4().hex[:8]}"
    hyperparameters = {
        "teacher": {"architecture": "tiny-cnn", "image_size": 32, "warmup_epochs": 0,
                    "finetune_epochs": 1, "finetune_lr": 5e-3},
        "student": {"architecture": "tiny-cnn", "image_size": 24, "epochs": 1, "lr": 5e-3},
        "qat": {"epochs": 1, "lr": 1e-4},
        "batch_size": 16,
        "export": {"representative_samples": 16},
        "generated": {"train": 48, "val": 16, "test": 16, "image_size": 32, "classes": 3},
    }
    spec = {
        "name": "multilabel", "namespace": "image-tests", "attempt": 0,
        "spec": {"model": "multilabel", "trainer": "distill-qat-tflite",
                 "dataset": {"uri": "generated://multilabel", "format": "generated"},
                 "hyperparameters": hyperparameters, "resources": {"cpu": "1"}},
        "checkpointUri": f"{prefix}/ckpt", "artifactUri": f"{prefix}/model",
    }
    env = dict(s3_env, FORJA_CHECKPOINT_URI=spec["checkpointUri"],
               FORJA_ARTIFACT_URI=spec["artifactUri"])
    start = time.monotonic()
    result = _train_in_image(image_ref("trainer-tf"), spec, env, tmp_path, timeout=1500)
    assert result.artifact is not None
    manifest = ModelManifest.model_validate_json(storage.read_bytes(result.artifact.uri))
    assert manifest.format == "tflite" or "tflite" in manifest.files, manifest
    print(f"trainer-tf pipeline in the image: {time.monotonic() - start:.0f} s")


def test_a_broken_step_fails_the_build_by_name_and_keeps_the_previous_tag(
    tmp_path: Path,
) -> None:
    """A user's broken Dockerfile: the build fails naming the step; their tag survives."""
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                           check=True).stdout.split()
    for rel in files:
        if (ROOT / rel).is_file():
            (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, tmp_path / rel)
    dockerfile = tmp_path / "operator/Dockerfile"
    dockerfile.write_text(dockerfile.read_text().replace(
        "RUN python -m compileall -q /app", "RUN python -m compileall -q /app && exit 3"))
    prefix = f"localhost/forja-broken-{uuid.uuid4().hex[:6]}"
    kept = f"{prefix}/operator:{image_ref('operator').rsplit(':', 1)[1]}"
    podman("tag", image_ref("operator"), kept)
    before = podman("image", "inspect", "--format", "{{.Id}}", kept).stdout
    try:
        build = subprocess.run(["bash", "hack/build-images.sh", "operator"], cwd=tmp_path,
                               capture_output=True, text=True, timeout=600, check=False,
                               env={**os.environ, "FORJA_IMAGE_PREFIX": prefix})
        assert build.returncode != 0
        assert "FAILED" in build.stderr and "exit 3" in build.stderr, build.stderr[-2000:]
        assert "STEP" in build.stderr
        assert podman("image", "inspect", "--format", "{{.Id}}", kept).stdout == before
    finally:
        podman("rmi", kept, check=False)
