"""The Argo CD health checks, run by a real Lua runtime the way Argo CD runs them.

Argo CD sets the global ``obj`` to the live object and reads the table the script
returns (``status``, ``message``). The docs' argo-cd values snippet must carry
exactly these scripts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lupa
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
HEALTH = ROOT / "helm/forja/argocd/health"
KINDS = ("TrainingJob", "ModelVersion", "InferenceService")


def script(kind: str) -> str:
    return (HEALTH / f"forja.dev_{kind}.lua").read_text()


def health(kind: str, obj: dict[str, Any]) -> tuple[str, str]:
    lua = lupa.LuaRuntime(unpack_returned_tuples=True)
    lua.globals().obj = lua.table_from(obj, recursive=True)
    result = lua.execute(script(kind))
    return result["status"], result["message"]


def cond(ctype: str, status: str, reason: str = "", message: str = "") -> dict[str, Any]:
    return {"type": ctype, "status": status, "reason": reason, "message": message}


def tj(status: dict[str, Any] | None = None, generation: int = 1, **spec: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "forja.dev/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": "smoke-detector", "generation": generation},
        "spec": {"model": "smoke-detector", "trainer": "yolo-detector", **spec},
    }
    if status is not None:
        obj["status"] = {"observedGeneration": 1, **status}
    return obj


def mv(status: dict[str, Any] | None = None) -> dict[str, Any]:
    obj: dict[str, Any] = {"kind": "ModelVersion", "metadata": {"name": "m-v1.0.0",
                                                                "generation": 1},
                           "spec": {"model": "m", "version": "1.0.0"}}
    if status is not None:
        obj["status"] = status
    return obj


def isvc(status: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {"kind": "InferenceService", "metadata": {"name": "s", "generation": 2},
                           "spec": {"model": "m", "replicas": 2, **spec}}
    if status is not None:
        obj["status"] = {"observedGeneration": 2, **status}
    return obj


CASES = [
    # --- TrainingJob ----------------------------------------------------------------
    ("TrainingJob", tj(), "Progressing", "Waiting for the forja operator"),
    ("TrainingJob", tj(suspend=True), "Suspended", "Suspended before its first attempt"),
    ("TrainingJob", tj({"phase": "Pending"}), "Progressing", "Pending"),
    ("TrainingJob", tj({"phase": "Running", "progress": {"epoch": 3, "totalEpochs": 10,
                                                        "percent": 30}}),
     "Progressing", "Running: epoch 3/10 (30%)"),
    ("TrainingJob", tj({"phase": "Restarting", "message": "attempt 1 OOMKilled; resuming"}),
     "Progressing", "attempt 1 OOMKilled; resuming"),
    ("TrainingJob", tj({"phase": "Succeeded", "modelVersion": "smoke-detector-v1.1.0"}),
     "Healthy", "Produced ModelVersion smoke-detector-v1.1.0"),
    ("TrainingJob", tj({"phase": "Failed", "conditions": [
        cond("Failed", "True", "InvalidDataset", "expected 4 classes, found 3")]}),
     "Degraded", "expected 4 classes, found 3"),
    ("TrainingJob", tj({"phase": "Failed", "message": "BackoffLimitExceeded after 4 attempts"}),
     "Degraded", "BackoffLimitExceeded after 4 attempts"),
    ("TrainingJob", tj({"phase": "Suspended"}), "Suspended",
     "Suspended; the last checkpoint is kept"),
    ("TrainingJob", tj({"phase": "Succeeded", "modelVersion": "x"}, generation=2),
     "Progressing", "Waiting for the operator to observe generation 2"),
    # --- ModelVersion ---------------------------------------------------------------
    ("ModelVersion", mv(), "Progressing", "Waiting for the forja operator to verify the artifact"),
    ("ModelVersion", mv({"phase": "Verifying"}), "Progressing", "Verifying"),
    ("ModelVersion", mv({"phase": "Ready", "headlineMetric": "map50=0.612"}), "Healthy",
     "Artifact verified; map50=0.612"),
    ("ModelVersion", mv({"phase": "Ready"}), "Healthy", "Artifact verified"),
    ("ModelVersion", mv({"phase": "Failed", "conditions": [
        cond("ArtifactVerified", "False", "ChecksumMismatch", "sha256 mismatch: got 3a7b...")]}),
     "Degraded", "sha256 mismatch: got 3a7b..."),
    # --- InferenceService -----------------------------------------------------------
    ("InferenceService", isvc(), "Progressing", "Waiting for the forja operator"),
    ("InferenceService", isvc(replicas=0), "Suspended", "Scaled to zero replicas"),
    ("InferenceService", isvc({"phase": "Ready", "activeVersion": "1.2.0", "conditions": [
        cond("Ready", "True"), cond("RolloutProgressing", "False")]}),
     "Healthy", "Serving 1.2.0"),
    ("InferenceService", isvc({"phase": "Progressing", "activeVersion": "1.2.0",
                               "canaryVersion": "1.3.0", "canaryPercent": 10}),
     "Progressing", "Rolling out 1.3.0 at 10% over 1.2.0"),
    ("InferenceService", isvc({"phase": "Ready", "activeVersion": "1.2.0",
                               "canaryVersion": "1.3.0", "canaryPercent": 50, "conditions": [
                                   cond("RolloutProgressing", "True", "CanaryStep")]}),
     "Progressing", "Rolling out 1.3.0 at 50% over 1.2.0"),
    ("InferenceService", isvc({"phase": "Degraded", "activeVersion": "1.2.0", "conditions": [
        cond("RolledBack", "True", "ProgressDeadlineExceeded",
             "1.3.0 was not ready within 300 s; 1.2.0 keeps serving")]}),
     "Degraded", "1.3.0 was not ready within 300 s; 1.2.0 keeps serving"),
    ("InferenceService", isvc({"phase": "Pending", "message": "no Ready version matches ^2.0"}),
     "Progressing", "no Ready version matches ^2.0"),
    ("InferenceService", isvc({"phase": "Failed", "message": "image pull failed"}),
     "Degraded", "image pull failed"),
    ("InferenceService", isvc({"phase": "Ready", "observedGeneration": 1}), "Progressing",
     "Waiting for the operator to observe generation 2"),
]


@pytest.mark.parametrize(("kind", "obj", "status", "message"), CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_health(kind, obj, status, message):
    assert health(kind, obj) == (status, message)


def test_every_argo_status_is_covered():
    seen = {(c[0], c[2]) for c in CASES}
    for kind in KINDS:
        assert {(kind, "Healthy"), (kind, "Progressing"), (kind, "Degraded")} <= seen
    assert {("TrainingJob", "Suspended"), ("InferenceService", "Suspended")} <= seen


def test_docs_snippet_carries_the_shipped_scripts():
    text = (ROOT / "docs/argocd.md").read_text()
    block = text.split("```yaml\n", 1)[1].split("```", 1)[0]
    cm = yaml.safe_load(block)["configs"]["cm"]
    for kind in KINDS:
        assert cm[f"resource.customizations.health.forja.dev_{kind}"] == script(kind)


def test_no_helm_hooks_in_the_chart():
    for path in (ROOT / "helm/forja/templates").glob("*"):
        assert "helm.sh/hook" not in path.read_text(), path
