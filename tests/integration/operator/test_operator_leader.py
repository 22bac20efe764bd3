"""Two operators at once: only the Lease holder acts; the standby takes over when it dies."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from fixtures.cluster import wait_for
from fixtures.real_cluster import on_real_nodes

from .operator_harness import Operator, apply, get, phase_is, trainingjob

pytestmark = pytest.mark.cluster
# Attempts from forja/trainer, verify and benchmark pods from forja/server.
cluster = on_real_nodes("trainer", "server")


def _electing_operator(base: Path, ns: str, cluster: Any, tmp_path: Path, name: str) -> Operator:
    config = yaml.safe_load(base.read_text())
    config["leaderElection"] = {
        "enabled": True,
        "leaseName": "forja-test-leader",
        "namespace": ns,
        "leaseDurationSeconds": 6,
        "renewDeadlineSeconds": 4,
        "retryPeriodSeconds": 1,
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return Operator(path, cluster.kubeconfig)


def test_only_the_lease_holder_acts_and_a_standby_takes_over(
    cluster, crds_installed, operator_config, store_ns, tmp_path
):
    ns = store_ns
    ops = [_electing_operator(operator_config, ns, cluster, tmp_path, n) for n in "ab"]
    try:
        for op in ops:
            op.start()

        def holder() -> Any:
            lease = get(cluster, ns, "leases.coordination.k8s.io", "forja-test-leader")
            return ((lease or {}).get("spec") or {}).get("holderIdentity")

        def leaders() -> list[Operator]:
            return [op for op in ops if op.logged("holds the lease")]

        first = wait_for(holder, 60, message="a lease holder")
        # The Lease is written before its holder logs that it holds it.
        wait_for(leaders, 30, message="the holder logged that it holds the lease")
        wait_for(
            lambda: all(op.logged("waiting for the lease") for op in ops),
            30,
            message="both asked",
        )
        assert len(leaders()) == 1, [op.tail() for op in ops]
        (leader,) = leaders()
        (standby,) = [op for op in ops if op is not leader]
        assert standby.logged("waiting for the lease")

        apply(cluster, ns, trainingjob("led"))
        job = wait_for(phase_is(cluster, ns, "led", "Succeeded", "Failed"), 120)
        assert job["status"]["phase"] == "Succeeded", job["status"]

        leader.kill()
        wait_for(lambda: standby.logged("holds the lease"), 60, message="standby took over")
        assert holder() != first
        apply(cluster, ns, trainingjob("after"))
        job = wait_for(phase_is(cluster, ns, "after", "Succeeded", "Failed"), 120)
        assert job["status"]["phase"] == "Succeeded", job["status"]
        versions = get(cluster, ns, "modelversions.forja.dev")["items"]
        assert sorted(v["spec"]["source"]["trainingJob"] for v in versions) == ["after", "led"]
        assert len({v["spec"]["version"] for v in versions}) == 2
    finally:
        for op in ops:
            op.stop()
