"""Many jobs at once, and the operator SIGKILLed among them: no duplicate pod, no lost version.

The trainer is tests/support/contract_trainer.py, which follows the pod contract for
real (progress annotation, checkpoints and artifacts in MinIO, termination message,
exit codes, a real OOM kill by the kernel under the container's memory limit).
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from fixtures.cluster import wait_for
from fixtures.real_cluster import on_real_nodes

from .operator_harness import apply, get, trainingjob

pytestmark = pytest.mark.cluster
# Attempts from forja/trainer, verify and benchmark pods from forja/server.
cluster = on_real_nodes("trainer", "server")
TJ, MV = "trainingjobs.forja.dev", "modelversions.forja.dev"


def versions(cluster: Any, ns: str) -> list[dict[str, Any]]:
    return (get(cluster, ns, MV) or {"items": []})["items"]


def test_ten_jobs_of_one_model_get_ten_distinct_versions(cluster, operator, store_ns):
    ns = store_ns
    apply(
        cluster,
        ns,
        *[
            trainingjob(f"par-{i}", model="shared", hyperparameters={"epochs": 1})
            for i in range(10)
        ],
    )

    deadline = time.monotonic() + 300
    while True:
        jobs = (get(cluster, ns, TJ) or {"items": []})["items"]
        # Versioned = the job recorded its ModelVersion. status.version alone is also the
        # claim a job makes while it tries a version, which another job may then win.
        if len([j for j in jobs if j.get("status", {}).get("modelVersion")]) == 10:
            break
        if time.monotonic() > deadline:
            states = {j["metadata"]["name"]: j.get("status", {}) for j in jobs}
            pytest.fail(f"not all 10 jobs versioned: {states}")
        time.sleep(1)
    got = sorted(j["status"]["version"] for j in jobs)
    assert len(set(got)) == 10
    mvs = [m for m in versions(cluster, ns) if m["spec"]["model"] == "shared"]
    assert len(mvs) == 10
    assert sorted(m["spec"]["version"] for m in mvs) == got


@pytest.mark.slow
def test_sigkill_during_twenty_jobs_converges_without_duplicates(cluster, operator, store_ns):
    ns = store_ns
    apply(
        cluster,
        ns,
        *[
            trainingjob(
                f"kill-{i}", model="killed", hyperparameters={"epochs": 2, "epoch_seconds": 0.5}
            )
            for i in range(20)
        ],
    )
    time.sleep(3)
    operator.kill()
    time.sleep(2)
    operator.start()

    def all_done():
        items = (get(cluster, ns, TJ) or {"items": []})["items"]
        done = [
            j
            for j in items
            if j.get("status", {}).get("phase") in ("Succeeded", "Failed")
            and (j["status"]["phase"] == "Failed" or j["status"].get("version"))
        ]
        return items if len(done) == 20 else None

    jobs = wait_for(all_done, 300, message="20 jobs to converge")
    pods = get(cluster, ns, "pods", selector="forja.dev/trainingjob")["items"]
    for job in jobs:
        st = job["status"]
        assert st["phase"] == "Succeeded", (job["metadata"]["name"], st)
        mine = [
            p
            for p in pods
            if p["metadata"]["labels"]["forja.dev/trainingjob"] == job["metadata"]["name"]
        ]
        assert len(mine) == len(st["attempts"]), (
            job["metadata"]["name"],
            [p["metadata"]["name"] for p in mine],
        )
    mvs = [m for m in versions(cluster, ns) if m["spec"]["model"] == "killed"]
    assert len(mvs) == 20
    assert len({m["spec"]["version"] for m in mvs}) == 20
    assert len({m["spec"]["source"]["trainingJob"] for m in mvs}) == 20
