"""A trainer's identity: one ServiceAccount, Role and RoleBinding per attempt pod.

A trainer runs code the job's author chose, so whatever its token may do, that
code may do. The only API call a trainer makes is a patch of its own pod's progress
annotation; the Role grants ``get``/``patch`` on exactly that pod (``resourceNames``)
and nothing else, so a trainer cannot touch a server pod or another job's attempt.
RBAC has no "the caller's own pod", hence one Role per attempt (the attempt's name is
known before its pod exists). All three are owned by the TrainingJob and go with it.
"""

from __future__ import annotations

from typing import Any

from forja_api import contract
from forja_operator.builders.attempt import attempt_pod_names, trainer_account_name
from forja_operator.builders.common import owner_reference

__all__ = ["LEGACY_TRAINER_ACCOUNT", "render_attempt_rbac", "trainer_account_name"]

LEGACY_TRAINER_ACCOUNT = "forja-trainer"
"""The namespace-wide trainer identity of earlier releases (patch on every pod)."""


def render_attempt_rbac(job: dict[str, Any], index: int, workers: int = 1) -> list[dict[str, Any]]:
    """ServiceAccount, Role and RoleBinding for attempt ``index`` of TrainingJob ``job``.

    Every worker of a gang runs as the attempt's account; only rank 0 reports
    progress, so only rank 0's pod may be patched.
    """
    meta = job["metadata"]
    namespace, name = meta["namespace"], trainer_account_name(meta["name"], index)
    child_meta = {
        "name": name,
        "namespace": namespace,
        "labels": {
            contract.JOB_LABEL: meta["name"],
            contract.MANAGED_BY_LABEL: contract.MANAGED_BY,
        },
        "ownerReferences": [owner_reference(job)],
    }
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": dict(child_meta)},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": dict(child_meta),
            "rules": [
                {
                    "apiGroups": [""],
                    "resources": ["pods"],
                    "resourceNames": [attempt_pod_names(meta["name"], index, workers)[0]],
                    "verbs": ["get", "patch"],
                }
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": dict(child_meta),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}],
        },
    ]
