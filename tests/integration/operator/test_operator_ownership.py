"""The operator trusts only pods it controls, on a real API server.

Someone who may create pods in the namespace takes an attempt's or a verify pod's
deterministic name first and leaves a successful answer in it. The operator must not
read it: the job and the version fail with PodNotOwned instead of a forged version
becoming a ModelVersion or a forged verdict making a version Ready.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from fixtures.cluster import wait_for
from fixtures.real_cluster import on_real_nodes
from forja_api import contract
from forja_operator.builders.common import JOB_UID_LABEL
from forja_operator.builders.modelversion import verify_pod_name
from forja_operator.config import OperatorConfig

from .operator_harness import apply, get, phase_is, trainingjob

pytestmark = pytest.mark.cluster
# Attempts from forja/trainer, verify and benchmark pods from forja/server.
cluster = on_real_nodes("trainer", "server")
SERVER_IMAGE = OperatorConfig().server_image
TJ, MV = "trainingjobs.forja.dev", "modelversions.forja.dev"
SHA = "ab" * 32


def _answering_pod(name: str, labels: dict[str, str], message: str) -> dict[str, Any]:
    """A pod that writes ``message`` as its termination message and exits 0."""
    script = f"open('/dev/termination-log', 'w').write({message!r})"
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "restartPolicy": "Never",
            "containers": [
                {"name": "main", "image": SERVER_IMAGE, "command": ["python", "-c", script]}
            ],
        },
    }


def _pod_done(cluster: Any, ns: str, name: str) -> Any:
    def check() -> Any:
        pod = get(cluster, ns, "pods", name)
        return pod if (pod or {}).get("status", {}).get("phase") == "Succeeded" else None

    return check


def _cond(obj: dict[str, Any], ctype: str) -> dict[str, Any]:
    return next(c for c in obj["status"]["conditions"] if c["type"] == ctype)


def test_a_precreated_attempt_pod_with_a_forged_result_is_not_versioned(
    cluster, operator, store_ns
):
    ns = store_ns
    # Suspended, the job has a uid but no attempt yet: the forger copies every label.
    apply(cluster, ns, trainingjob("forged", model="forged", suspend=True))
    uid = wait_for(lambda: (get(cluster, ns, TJ, "forged") or {}).get("metadata", {}).get("uid"))
    result = contract.Result(
        ok=True,
        artifact=contract.ArtifactRef(
            uri=f"s3://{cluster.bucket}/elsewhere/model.onnx",
            sha256=SHA,
            size=1,
            format="onnx",
            task="classification",
        ),
        metrics={"accuracy": 1.0},
    )
    labels = {
        contract.JOB_LABEL: "forged",
        contract.ATTEMPT_LABEL: "1",
        JOB_UID_LABEL: uid,
        contract.MANAGED_BY_LABEL: contract.MANAGED_BY,
    }
    forged = _answering_pod("forged-a1", labels, result.to_termination_message())
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(forged))
    wait_for(_pod_done(cluster, ns, "forged-a1"), 60, message="forged pod exited 0")
    cluster.kubectl(
        "patch", TJ, "forged", "-n", ns, "--type=merge", "-p", '{"spec":{"suspend":false}}'
    )
    job = wait_for(phase_is(cluster, ns, "forged", "Failed", "Succeeded"), 60)
    assert job["status"]["phase"] == "Failed", job["status"]
    failed = _cond(job, "Failed")
    assert failed["reason"] == "PodNotOwned" and "forged-a1" in failed["message"]
    assert not (get(cluster, ns, MV) or {"items": []})["items"]
    assert get(cluster, ns, "pods", "forged-a1") is not None  # not the operator's to delete
    reasons = cluster.kubectl(
        "get", "events", "-n", ns, "-o", "jsonpath={.items[*].reason}"
    ).stdout.split()
    assert "PodNotOwned" in reasons


def test_a_precreated_verify_pod_that_exits_0_does_not_make_a_version_ready(
    cluster, operator, store_ns
):
    ns = store_ns
    uri = f"s3://{cluster.bucket}/nowhere/model.onnx"  # does not exist: a real check fails
    name = "planted-v1.0.0"
    labels = {contract.VERSION_LABEL: name, contract.MANAGED_BY_LABEL: contract.MANAGED_BY}
    planted = _answering_pod(verify_pod_name(name, uri, SHA), labels, '{"message": "ok"}')
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(planted))
    wait_for(_pod_done(cluster, ns, planted["metadata"]["name"]), 60, message="planted exit 0")
    mv = {
        "apiVersion": "forja.dev/v1alpha1",
        "kind": "ModelVersion",
        "metadata": {"name": name},
        "spec": {
            "model": "planted",
            "version": "1.0.0",
            "format": "onnx",
            "task": "classification",
            "artifact": {"uri": uri, "sha256": SHA},
        },
    }
    apply(cluster, ns, mv)

    def decided() -> Any:
        got = get(cluster, ns, MV, name)
        return got if (got or {}).get("status", {}).get("phase") in ("Ready", "Failed") else None

    got = wait_for(decided, 60, message="a verdict")
    assert got["status"]["phase"] == "Failed", got["status"]
    assert _cond(got, "Ready")["reason"] == "PodNotOwned"
