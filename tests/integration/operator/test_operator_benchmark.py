"""A benchmark per ModelVersion on the local cluster: a real trainer trains a tiny
classifier, the operator verifies its version, then runs the server image's benchmark
program on it in a pod and records the figures; a version that opts out gets none."""

from __future__ import annotations

from typing import Any

import pytest

from fixtures.cluster import wait_for
from fixtures.real_cluster import on_real_nodes

from .operator_harness import apply, get, wait_phase

pytestmark = [pytest.mark.cluster, pytest.mark.slow]
# Attempts from forja/trainer, verify and benchmark pods from forja/server.
cluster = on_real_nodes("trainer", "server")
MV = "modelversions.forja.dev"


def _job() -> dict[str, Any]:
    return {
        "apiVersion": "forja.dev/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": "shapes"},
        "spec": {
            "model": "shapes",
            "trainer": "image-classifier",
            "dataset": {"uri": "generated://shapes?classes=3&per_class=12&size=16",
                        "format": "image-folder"},
            "hyperparameters": {"epochs": 1, "batch_size": 8, "image_size": 16},
            "resources": {"cpu": "1", "memory": "2Gi"},
        },
    }


def _benchmark_done(cluster: Any, ns: str, name: str):
    def check() -> dict[str, Any] | None:
        mv = get(cluster, ns, MV, name) or {}
        bench = (mv.get("status") or {}).get("benchmark") or {}
        return mv if bench.get("state") in ("Succeeded", "Failed") else None

    return check


def _cond(mv: dict[str, Any], ctype: str) -> dict[str, Any]:
    return next(c for c in mv["status"]["conditions"] if c["type"] == ctype)


def test_a_ready_version_is_benchmarked_once_and_shown_wide(cluster, operator, store_ns):
    ns = store_ns
    apply(cluster, ns, _job())
    job = wait_phase(cluster, ns, "shapes", "Succeeded", "Failed", timeout=600)
    assert job["status"]["phase"] == "Succeeded", job["status"]
    name = wait_for(lambda: get(cluster, ns, "trainingjobs.forja.dev", "shapes")["status"].get(
        "modelVersion"), 30)
    try:
        mv = wait_for(_benchmark_done(cluster, ns, name), 240, interval=2,
                      message="the benchmark recorded")
    except BaseException:
        print(cluster.kubectl("describe", "mv", name, "-n", ns, check=False).stdout)
        print(operator.tail())
        raise
    bench = mv["status"]["benchmark"]
    print("benchmark figures:", bench)
    assert bench["state"] == "Succeeded", bench
    assert bench["p50Ms"] > 0 and bench["p99Ms"] >= bench["p50Ms"]
    assert bench["throughput"] > 0 and bench["batchSize"] == 8 and bench["requests"] == 50
    assert bench["loadSeconds"] > 0 and bench["peakMemoryMib"] > 0
    assert bench["runtime"] == "onnxruntime" and bench["node"]
    assert bench["sha256"] == mv["spec"]["artifact"]["sha256"] and bench["failures"] == 0
    assert mv["status"]["phase"] == "Ready" and _cond(mv, "Ready")["status"] == "True"
    assert _cond(mv, "Benchmarked")["reason"] == "BenchmarkSucceeded"

    # The pod is cleaned up once read, and not run again.
    wait_for(lambda: not get(cluster, ns, "pods", selector="app.kubernetes.io/component="
                             "benchmark")["items"], 60, message="the benchmark pod deleted")
    wide = cluster.kubectl("get", "mv", name, "-n", ns, "-o", "wide").stdout
    print(wide)
    header, row = wide.splitlines()[:2]
    assert header.split()[-4:-1] == ["P50", "P99", "THROUGHPUT"], header
    assert f"{bench['p50Ms']:g}" in row.split() or str(bench["p50Ms"]) in row.split(), row
    assert "P50" not in cluster.kubectl("get", "mv", name, "-n", ns).stdout
    described = cluster.kubectl("describe", "mv", name, "-n", ns).stdout
    assert "P 50 Ms" in described or "p50Ms" in described, described

    # The same artifact registered by hand, opting out: Ready, and no benchmark.
    mine = {
        "apiVersion": "forja.dev/v1alpha1", "kind": "ModelVersion",
        "metadata": {"name": "shapes-copy-v1.0.0"},
        "spec": {"model": "shapes-copy", "version": "1.0.0", "format": mv["spec"]["format"],
                 "artifact": mv["spec"]["artifact"], "benchmark": {"enabled": False}},
    }
    apply(cluster, ns, mine)

    def copy_ready() -> dict[str, Any] | None:
        got = get(cluster, ns, MV, "shapes-copy-v1.0.0") or {}
        return got if (got.get("status") or {}).get("phase") == "Ready" else None

    copy = wait_for(copy_ready, 60, message="the opted-out copy Ready")
    pods = get(cluster, ns, "pods", selector="forja.dev/version=shapes-copy-v1.0.0")["items"]
    assert all(p["metadata"]["labels"]["app.kubernetes.io/component"] != "benchmark"
               for p in pods)
    assert "benchmark" not in copy["status"]
    again = get(cluster, ns, MV, name)
    assert again["status"]["benchmark"]["completedAt"] == bench["completedAt"]
