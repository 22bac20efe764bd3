"""A trainer's credentials reach only its own pod, checked by the real API server's RBAC."""

from __future__ import annotations

import json
from typing import Any

import pytest

from fixtures.cluster import wait_for
from fixtures.real_cluster import on_real_nodes
from forja_operator.config import OperatorConfig

from .operator_harness import apply, get, trainingjob

pytestmark = pytest.mark.cluster
# Attempts from forja/trainer, verify and benchmark pods from forja/server.
cluster = on_real_nodes("trainer", "server")
SERVER_IMAGE = OperatorConfig().server_image


def _as_trainer(cluster: Any, ns: str, account: str, *args: str) -> Any:
    who = f"--as=system:serviceaccount:{ns}:{account}"
    return cluster.kubectl(*args, "-n", ns, who, check=False)


def test_a_trainer_may_patch_its_own_pod_and_gets_403_on_any_other(cluster, operator, store_ns):
    ns = store_ns
    bystander = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "a-server", "labels": {"app": "server"}},
        "spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "main", "image": SERVER_IMAGE, "command": ["sleep", "300"]}],
        },
    }
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(bystander))
    apply(cluster, ns, trainingjob("rbac", hyperparameters={"hang": True}))
    apply(cluster, ns, trainingjob("other", hyperparameters={"hang": True}))
    for pod in ("rbac-a1", "other-a1"):
        wait_for(lambda pod=pod: get(cluster, ns, "pods", pod), 60, message=pod)
    account = "rbac-a1-trainer"
    pod = get(cluster, ns, "pods", "rbac-a1")
    assert pod["spec"]["serviceAccountName"] == account

    def can(verb: str, target: str) -> str:
        return _as_trainer(cluster, ns, account, "auth", "can-i", verb, target).stdout.strip()

    assert can("patch", "pods/rbac-a1") == "yes"
    for target in ("pods/a-server", "pods/other-a1", "pods"):
        assert can("patch", target) == "no", target
    assert can("list", "pods") == "no"
    assert can("get", "secrets") == "no"

    # Real requests, not only the review: the API server answers 403 to the others.
    body = '{"metadata":{"labels":{"app":"hijacked"}}}'
    for target in ("a-server", "other-a1"):
        out = _as_trainer(cluster, ns, account, "patch", "pod", target, "--type=merge", "-p", body)
        assert out.returncode != 0 and "forbidden" in out.stderr.lower(), out.stderr
        assert get(cluster, ns, "pods", target)["metadata"]["labels"].get("app") != "hijacked"
    own = '{"metadata":{"annotations":{"forja.dev/rbac-check":"ok"}}}'
    out = _as_trainer(cluster, ns, account, "patch", "pod", "rbac-a1", "--type=merge", "-p", own)
    assert out.returncode == 0, out.stderr
    # The identity goes with the job.
    for kind in ("serviceaccount", "role", "rolebinding"):
        obj = get(cluster, ns, kind, account)
        assert obj["metadata"]["ownerReferences"][0]["kind"] == "TrainingJob"
    for name in ("rbac", "other"):
        cluster.kubectl("delete", "trainingjobs.forja.dev", name, "-n", ns, "--wait=false")
