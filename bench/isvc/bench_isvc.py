"""InferenceService benchmark: CPU per reconcile pass, and reaction times on a cluster.

1. In-process (always): one reconcile pass (resolve, plan, render children, status,
   diff) against a recording API, steady state and mid-rollout: microseconds per pass.
2. With ``--cluster`` (needs $KUBECONFIG and the CRDs, run inside the cluster's
   network namespace): the operator as a subprocess with the stand-in server; an
   alias flipped N times between two versions (one-step rollouts, no pause):
   seconds from the alias move to the canary appearing in status (the watch ->
   index -> wake-up path, no polling) and to Ready on the new version.

    PYTHONPATH=operator:tests:tests/integration/isvc:tests/unit/operator/isvc \\
        python bench/isvc/bench_isvc.py [--passes 2000] [--cluster --flips 5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from isvc_helpers import isvc_body, record  # tests/unit/operator/isvc
from isvc_support import (  # tests/integration/isvc
    Controller,
    Models,
    Store,
    api,
    condition,
    get_isvc,
)
from kubernetes import client, config
from test_isvc_reconcile import Harness  # tests/unit/operator/isvc

from forja_operator.inferenceservice import builders as b
from forja_operator.inferenceservice.reconcile import reconcile_service

SPEC = {"model": "smoke", "selector": {"alias": "production"}, "replicas": 3,
        "rollout": {"canarySteps": [10, 50, 100], "pauseSeconds": 30}}


def bench_passes(passes: int) -> None:
    for label, records in (
        ("steady", [record("1.0.0", aliases=("production",))]),
        ("mid-rollout", [record("1.0.0"), record("2.0.0", aliases=("production",))]),
    ):
        h = Harness(SPEC, [record("1.0.0", aliases=("production",))])
        h.run()
        h.run(1)
        h.records = records
        h.run(1)

        async def loop(h: Harness) -> float:
            t0 = time.perf_counter()
            for i in range(passes):
                await reconcile_service(
                    body=isvc_body(SPEC, status=h.api.status), records=h.records,
                    deployments=h.api.deployments(), pods=h.pods(), api=h.api,
                    memory=h.memory, settings=b.ServerSettings(image="img"), gateway_api=False,
                    now=datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=3 + i * 1e-3),
                    scrape=h._scrape, emit=h.events.append)
            return time.perf_counter() - t0

        elapsed = asyncio.run(loop(h))
        print(f"reconcile pass ({label}): {1e6 * elapsed / passes:.0f} us/pass "
              f"({passes / elapsed:.0f} passes/s, {passes} passes)")


def bench_cluster(flips: int) -> None:
    config.load_kube_config()
    core = client.CoreV1Api()
    ns = f"bench-isvc-{uuid.uuid4().hex[:6]}"
    core.create_namespace({"metadata": {"name": ns}})
    tmp = Path(tempfile.mkdtemp())
    store = Store.from_env()  # `eval "$(python -m forja_localcluster env)"` exports it
    ctl = Controller(ns, tmp / "controller.log", store)
    ctl.start(Path(os.environ["KUBECONFIG"]), tmp)
    models = Models(ns, store, tmp / "artifacts")
    try:
        a = models.create("bench", "1.0.0", aliases=["production"])
        b = models.create("bench", "2.0.0")
        t0 = time.monotonic()
        api().create_namespaced_custom_object("forja.dev", "v1alpha1", ns, "inferenceservices", {
            "apiVersion": "forja.dev/v1alpha1", "kind": "InferenceService",
            "metadata": {"name": "bench"},
            "spec": {"model": "bench", "selector": {"alias": "production"},
                     "rollout": {"canarySteps": [100], "pauseSeconds": 0}}})

        def wait(pred: object, timeout: float = 120) -> float:
            end = time.monotonic() + timeout
            while time.monotonic() < end:
                obj = get_isvc(ns, "bench")
                if pred(obj):  # type: ignore[operator]
                    return time.monotonic()
                time.sleep(0.05)
            raise TimeoutError

        def ready_on(v: str) -> object:
            return lambda o: (condition(o, "Ready").get("status") == "True"
                              and (o.get("status") or {}).get("activeVersion") == v)

        first = wait(ready_on("1.0.0")) - t0
        react, done = [], []
        holder, other, versions = a, b, ("1.0.0", "2.0.0")
        for i in range(flips):
            target = versions[(i + 1) % 2]
            t = time.monotonic()
            models.set_aliases(holder, [])
            models.set_aliases(other, ["production"])
            react.append(wait(lambda o, v=target: (o.get("status") or {}).get("canaryVersion") == v
                              or (o.get("status") or {}).get("activeVersion") == v) - t)
            done.append(wait(ready_on(target)) - t)
            holder, other = other, holder
        print(f"create -> Ready (first version, stand-in server): {first:.2f} s")
        print(f"alias move -> canary in status: p50 {statistics.median(react):.2f} s, "
              f"max {max(react):.2f} s over {flips} flips")
        print(f"alias move -> Ready on the new version (one step, no pause): "
              f"p50 {statistics.median(done):.2f} s, max {max(done):.2f} s")
    finally:
        api().delete_namespaced_custom_object("forja.dev", "v1alpha1", ns, "inferenceservices",
                                              "bench")
        time.sleep(2)
        ctl.stop()
        models.cleanup()
        core.delete_namespace(ns)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passes", type=int, default=2000)
    parser.add_argument("--cluster", action="store_true")
    parser.add_argument("--flips", type=int, default=5)
    args = parser.parse_args()
    bench_passes(args.passes)
    if args.cluster:
        bench_cluster(args.flips)


if __name__ == "__main__":
    main()
