"""Small builders of TrainingJob and Pod dicts for planner and builder tests."""

from __future__ import annotations

import json
from typing import Any

from forja_api import contract
from forja_operator.builders.attempt import OVERRIDES_ANNOTATION, attempt_name, worker_name
from forja_operator.builders.common import JOB_UID_LABEL

SHA = "a" * 64


def job(name: str = "train", **spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "model": "detector",
        "trainer": "image-classifier",
        "dataset": {"uri": "s3://data/set", "format": "image-folder"},
        "hyperparameters": {"epochs": 3, "batch_size": 32},
        "restartPolicy": {"backoffLimit": 3, "backoffSeconds": 10},
    }
    base.update(spec)
    return {
        "apiVersion": "forja.dev/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": name, "namespace": "ns", "uid": "uid-1", "generation": 1},
        "spec": base,
    }


def with_status(body: dict[str, Any], status: dict[str, Any]) -> dict[str, Any]:
    return {**body, "status": status}


def pod(
    index: int,
    phase: str = "Running",
    exit_code: int | None = None,
    reason: str | None = None,
    result: contract.Result | None = None,
    progress: contract.Progress | None = None,
    overrides: dict[str, Any] | None = None,
    pod_reason: str | None = None,
    unschedulable: str | None = None,
    deleting: bool = False,
    job_name: str = "train",
    owner_uid: str | None = "uid-1",
    rank: int | None = None,
    world: int = 1,
    node: str | None = None,
) -> dict[str, Any]:
    """An attempt pod as the operator makes it (controlled by ``owner_uid``; None: by no one);
    with ``rank``, worker ``rank`` of a gang of ``world``."""
    ann = {OVERRIDES_ANNOTATION: json.dumps(overrides or {})}
    if progress:
        ann[contract.PROGRESS_ANNOTATION] = progress.to_json()
    state: dict[str, Any] = {"running": {"startedAt": "2026-01-01T00:00:00Z"}}
    if exit_code is not None:
        term: dict[str, Any] = {"exitCode": exit_code, "finishedAt": "2026-01-01T00:10:00Z"}
        if reason:
            term["reason"] = reason
        if result:
            term["message"] = result.to_termination_message()
        state = {"terminated": term}
    status: dict[str, Any] = {
        "phase": phase,
        "startTime": "2026-01-01T00:00:00Z",
        "containerStatuses": [{"name": "trainer", "state": state}],
    }
    if pod_reason:
        status["reason"] = pod_reason
    if unschedulable:
        status = {
            "phase": "Pending",
            "conditions": [
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "message": unschedulable,
                }
            ],
        }
    meta: dict[str, Any] = {
        "name": attempt_name(job_name, index)
        if rank is None
        else worker_name(job_name, index, rank),
        "namespace": "ns",
        "labels": {
            contract.JOB_LABEL: job_name,
            contract.ATTEMPT_LABEL: str(index),
            JOB_UID_LABEL: "uid-1",
        },
        "annotations": ann,
    }
    if owner_uid is not None:
        meta["ownerReferences"] = [
            {
                "apiVersion": "forja.dev/v1alpha1",
                "kind": "TrainingJob",
                "name": job_name,
                "uid": owner_uid,
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
    if rank is not None:
        meta["labels"][contract.RANK_LABEL] = str(rank)
        meta["labels"][contract.WORLD_SIZE_LABEL] = str(world)
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:05:00Z"
    return {"metadata": meta, "status": status, "spec": {"nodeName": node} if node else {}}


def ok_result(
    uri: str = "s3://forja/ns/train/artifacts/attempt-1/forja-model.json",
) -> contract.Result:
    return contract.Result(
        ok=True,
        artifact=contract.ArtifactRef(
            uri=uri, sha256=SHA, size=10, format="torch-state-dict", task="classification"
        ),
        metrics={"accuracy": 0.9},
    )
