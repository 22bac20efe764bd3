"""The ServiceAccount trainer pods run as, allowed only to patch pods (progress annotations)."""

from __future__ import annotations

from typing import Any

from forja_api import contract
from forja_operator.builders.attempt import TRAINER_SERVICE_ACCOUNT

__all__ = ["render_trainer_rbac"]


def render_trainer_rbac(namespace: str) -> list[dict[str, Any]]:
    """ServiceAccount, Role and RoleBinding for trainer pods in ``namespace``.

    The Role grants ``patch`` on pods and nothing else: a trainer writes its own
    progress annotation. RBAC cannot narrow that to the pod's own name, so the
    operator trusts only annotations on pods it created (matching uid labels).
    """
    labels = {contract.MANAGED_BY_LABEL: contract.MANAGED_BY}
    meta = {"name": TRAINER_SERVICE_ACCOUNT, "namespace": namespace, "labels": labels}
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": dict(meta)},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": dict(meta),
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["patch"]}],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": dict(meta),
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": TRAINER_SERVICE_ACCOUNT,
            },
            "subjects": [
                {"kind": "ServiceAccount", "name": TRAINER_SERVICE_ACCOUNT, "namespace": namespace}
            ],
        },
    ]
