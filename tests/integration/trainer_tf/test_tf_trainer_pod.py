"""The TF trainer as a pod on the local cluster: checkpoints and artifacts in MinIO,
progress on its own pod's annotation (RBAC: patch pods), Result in the termination
message, exit 0."""

from __future__ import annotations

import json
import uuid
from typing import Any

import boto3
import pytest

from fixtures.cluster import Cluster, wait_for
from forja_api.artifact import ModelManifest
from forja_api.contract import PROGRESS_ANNOTATION, Progress, Result
from forja_operator.config import OperatorConfig
from support.gang_jobs import TF_TINY
from support.restricted import restricted

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

# The tiny config, shared with the 2-worker tests (two shared cores, two trainers).
HYPERPARAMETERS = TF_TINY


def _trainer_pod(name: str, rendered: dict[str, Any], secret: str) -> dict[str, Any]:
    env = [
        {"name": "FORJA_SPEC", "value": json.dumps(rendered)},
        {"name": "FORJA_CHECKPOINT_URI", "value": rendered["checkpointUri"]},
        {"name": "FORJA_ARTIFACT_URI", "value": rendered["artifactUri"]},
        {"name": "FORJA_POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "FORJA_NAMESPACE",
         "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
    ]
    return restricted({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            "serviceAccountName": "trainer",
            "containers": [{
                "name": "trainer", "image": OperatorConfig().trainer_tf_image,
                "command": ["python", "-m", "forja_trainer_tf"],
                "env": env, "envFrom": [{"secretRef": {"name": secret}}],
            }],
        },
    })


@pytest.mark.timeout(1800)
def test_tf_trainer_pod_reports_progress_and_uploads_the_model(
    cluster: Cluster, namespace: str, s3_secret: Any
) -> None:
    secret = s3_secret(namespace)
    cluster.kubectl("create", "serviceaccount", "trainer", "-n", namespace)
    cluster.kubectl("create", "role", "progress", "--verb=get,patch", "--resource=pods",
                    "-n", namespace)
    cluster.kubectl("create", "rolebinding", "trainer-progress", "--role=progress",
                    f"--serviceaccount={namespace}:trainer", "-n", namespace)
    prefix = f"s3://{cluster.bucket}/tf-{uuid.uuid4().hex[:8]}"
    rendered = {
        "name": "tagger", "namespace": namespace,
        "spec": {"model": "tagger", "trainer": "distill-qat-tflite",
                 "dataset": {"uri": "generated://multilabel", "format": "generated"},
                 "hyperparameters": HYPERPARAMETERS},
        "checkpointUri": f"{prefix}/checkpoints", "artifactUri": f"{prefix}/model",
    }
    cluster.apply(_trainer_pod("tf-trainer", rendered, secret), namespace)

    seen_steps: set[str] = set()

    def done() -> dict[str, Any] | None:
        pod = cluster.get_json("pod", "tf-trainer", "-n", namespace)
        note = pod["metadata"].get("annotations", {}).get(PROGRESS_ANNOTATION)
        if note:
            seen_steps.add(Progress.model_validate_json(note).step or "")
        return pod if pod["status"].get("phase") in ("Succeeded", "Failed") else None

    # Generous: two shared cores, behind every other process of the suite.
    pod = wait_for(done, timeout=1500, interval=2, message="TF trainer pod finished")
    terminated = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    result = Result.from_termination_message(terminated.get("message"))
    assert result is not None, terminated
    assert terminated["exitCode"] == 0 and result.ok, result
    assert result.artifact is not None and result.artifact.uri == f"{prefix}/model/forja-model.json"
    # The annotation was written by the trainer itself (rate-limited, so not every step).
    assert seen_steps, "no progress annotation seen"
    final = Progress.model_validate_json(pod["metadata"]["annotations"][PROGRESS_ANNOTATION])
    assert final.step == "test-metrics"

    s3 = boto3.client("s3", endpoint_url=cluster.s3_endpoint,
                      aws_access_key_id=cluster.s3_access_key,
                      aws_secret_access_key=cluster.s3_secret_key)
    key = f"{prefix.split('/', 3)[3]}/model/forja-model.json"
    manifest = ModelManifest.model_validate_json(
        s3.get_object(Bucket=cluster.bucket, Key=key)["Body"].read())
    assert manifest.format == "tflite" and manifest.files["weights"].path == "model_qat_int8.tflite"
    state_key = f"{prefix.split('/', 3)[3]}/checkpoints/state.json"
    state = json.loads(s3.get_object(Bucket=cluster.bucket, Key=state_key)["Body"].read())
    assert len(state["steps_done"]) == 9
