"""Operator benchmark: apply -> first pod latency, burst throughput, peak RSS.

Runs the real operator (``python -m forja_operator``) as a subprocess against the
cluster in $KUBECONFIG and prints figures:

* apply -> attempt pod created, p50 / p99 over N jobs applied one after another
  (time from the create request to the pod's ADDED event on a watch);
* M TrainingJobs created at once (8 client threads) -> seconds until every
  attempt pod exists, and the rate;
* the operator's peak RSS (VmHWM) over the run.

    PYTHONPATH=operator:. python bench/operator/bench_operator.py --jobs 200 --burst 1000

Needs the forja CRDs installed (tests/support/crds.py prints minimal ones). No
node is needed: pods are only created, never run.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from kubernetes import client, config, watch

ROOT = Path(__file__).resolve().parents[2]


def job_body(name: str) -> dict:
    return {
        "apiVersion": "forja.dev/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": name},
        "spec": {
            "model": "bench",
            "trainer": "custom",
            "command": ["python", "-c", "pass"],
            "dataset": {"uri": "generated://bench", "format": "generated"},
        },
    }


class PodWatcher:
    """Records when each attempt pod is first seen in a namespace."""

    def __init__(self, core: client.CoreV1Api, namespace: str) -> None:
        self.seen: dict[str, float] = {}
        self.cond = threading.Condition()
        self._w = watch.Watch()
        self._t = threading.Thread(target=self._run, args=(core, namespace), daemon=True)
        self._t.start()
        time.sleep(0.5)

    def _run(self, core: client.CoreV1Api, namespace: str) -> None:
        with contextlib.suppress(Exception):  # the stream ends with an error when stopped
            self._stream(core, namespace)

    def _stream(self, core: client.CoreV1Api, namespace: str) -> None:
        for ev in self._w.stream(
            core.list_namespaced_pod, namespace, label_selector="forja.dev/trainingjob"
        ):
            name = ev["object"].metadata.labels["forja.dev/trainingjob"]
            with self.cond:
                self.seen.setdefault(name, time.perf_counter())
                self.cond.notify_all()

    def wait_for(self, count: int, timeout: float) -> bool:
        end = time.perf_counter() + timeout
        with self.cond:
            while len(self.seen) < count:
                left = end - time.perf_counter()
                if left <= 0:
                    return False
                self.cond.wait(left)
        return True

    def stop(self) -> None:
        self._w.stop()


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--jobs", type=int, default=200)
    ap.add_argument("--burst", type=int, default=1000)
    ap.add_argument("--keep", action="store_true", help="keep the namespaces")
    args = ap.parse_args()

    config.load_kube_config()
    core, custom = client.CoreV1Api(), client.CustomObjectsApi()
    run = uuid.uuid4().hex[:6]
    ns_seq, ns_burst = f"bench-seq-{run}", f"bench-burst-{run}"
    for ns in (ns_seq, ns_burst):
        core.create_namespace({"metadata": {"name": ns}})
        # No controller-manager may be running to create it; the trainer pods name none.
        for sa in ("default",):
            with contextlib.suppress(client.ApiException):
                core.create_namespaced_service_account(ns, {"metadata": {"name": sa}})

    cfg = Path(tempfile.mkdtemp()) / "config.yaml"
    cfg.write_text(f"watchNamespaces: [{ns_seq}, {ns_burst}]\nmetricsPort: 0\nhealthPort: 0\n")
    env = {
        **os.environ,
        "FORJA_CONFIG": str(cfg),
        "PYTHONPATH": f"{ROOT / 'operator'}:{os.environ.get('PYTHONPATH', '')}",
        "PYTHONWARNINGS": "ignore",
    }
    log = open(Path(tempfile.mkdtemp()) / "operator.log", "w")  # noqa: SIM115
    op = subprocess.Popen([sys.executable, "-m", "forja_operator"], env=env, stdout=log, stderr=log)
    try:
        time.sleep(4)  # startup: CRD scan and initial LIST
        if op.poll() is not None:
            print(f"operator exited early, see {log.name}")
            return 1

        # 1. apply -> first pod, one job at a time
        w = PodWatcher(core, ns_seq)
        lat: list[float] = []
        for i in range(args.jobs):
            name = f"seq-{i}"
            t0 = time.perf_counter()
            custom.create_namespaced_custom_object(
                "forja.dev", "v1alpha1", ns_seq, "trainingjobs", job_body(name)
            )
            if not w.wait_for(i + 1, 30):
                print(f"timeout waiting for pod of {name}")
                return 1
            lat.append((w.seen[name] - t0) * 1000)
        w.stop()
        print(
            f"apply -> first pod over {args.jobs} jobs: p50 {pct(lat, 50):.1f} ms, "
            f"p99 {pct(lat, 99):.1f} ms, mean {statistics.mean(lat):.1f} ms, max {max(lat):.1f} ms"
        )

        # 2. a burst of jobs at once
        w = PodWatcher(core, ns_burst)
        cpu0 = cpu_seconds(op.pid)
        t0 = time.perf_counter()
        with ThreadPoolExecutor(8) as pool:
            list(
                pool.map(
                    lambda i: custom.create_namespaced_custom_object(
                        "forja.dev", "v1alpha1", ns_burst, "trainingjobs", job_body(f"burst-{i}")
                    ),
                    range(args.burst),
                )
            )
        applied = time.perf_counter() - t0
        ok = w.wait_for(args.burst, 600)
        total = max(w.seen.values()) - t0 if w.seen else float("nan")
        w.stop()
        print(
            f"{args.burst} jobs applied in {applied:.1f} s; all {len(w.seen)} attempt pods exist "
            f"{total:.1f} s after the first apply ({len(w.seen) / total:.0f} pods/s)"
            + ("" if ok else " (TIMEOUT)")
        )
        print(f"operator CPU during the burst: {cpu_seconds(op.pid) - cpu0:.1f} s")
        print(f"operator peak RSS: {peak_rss_mb(op.pid):.0f} MB")
    finally:
        op.terminate()
        op.wait(30)
        if not args.keep:
            for ns in (ns_seq, ns_burst):
                core.delete_namespace(ns)
    return 0


if __name__ == "__main__":
    sys.exit(main())
