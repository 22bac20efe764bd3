"""Reliability drills against the Helm-installed forja on the real nodes: each asserts
nothing is lost.

Cheap jobs run tests/support/contract_trainer.py in forja/trainer (the real pod
contract: progress, checkpoints and artifacts in MinIO, termination message). The
OOM-kill, preemption, lost-node and killed-worker drills on real containers are in
tests/integration/nodes; the broken-canary drill lives in tests/integration/isvc
(test_a_canary_answering_errors_is_rolled_back). Neither is repeated here.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from fixtures.cluster import wait_for
from fixtures.real_cluster import ensure_real_nodes
from support.contract_command import CONTRACT_TRAINER

from ..conftest import RELEASE, ROOT, SYSTEM_NS, Forja
from ..workloads import s3_client

pytestmark = [pytest.mark.cluster, pytest.mark.slow]
TRAINER = CONTRACT_TRAINER
STORE_SECRET = "forja-artifact-store"


def contract_job(name: str, model: str, **hp: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "model": model, "trainer": "custom", "command": TRAINER,
        "dataset": {"uri": "generated://contract", "format": "generated"},
        "hyperparameters": {"epochs": 2, "epoch_seconds": 0.3, "batch_size": 32, **hp},
        "restartPolicy": {"backoffLimit": 3, "backoffSeconds": 0, "onOOM": "HalveBatch"},
        "resources": {"cpu": "50m", "memory": "256Mi"},
        "checkpoint": {"intervalEpochs": 1},
    }
    return {"apiVersion": "forja.dev/v1alpha1", "kind": "TrainingJob",
            "metadata": {"name": name}, "spec": spec}


def apply_all(forja: Forja, ns: str, docs: list[dict[str, Any]]) -> None:
    forja.kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump_all(docs))


def job_phase(forja: Forja, name: str, ns: str) -> str | None:
    return forja.get("trainingjob", name, ns).get("status", {}).get("phase")


def pods_of(forja: Forja, ns: str, job: str) -> list[dict[str, Any]]:
    return forja.items("pods", ns, f"forja.dev/trainingjob={job}")


# --- the operator SIGKILLed 20 times during 50 concurrent jobs ------------------------
class OperatorProcess:
    """``python -m forja_operator`` with the chart's settings, as a process we can SIGKILL
    (the Helm Deployment is scaled to 0 meanwhile, so exactly one operator runs)."""

    def __init__(self, forja: Forja, tmp: Path) -> None:
        self.config = tmp / "config.yaml"
        c = forja.cluster
        self.config.write_text(yaml.safe_dump({
            "artifactStore": {"uri": f"s3://{c.bucket}", "endpoint": c.s3_endpoint,
                              "credentialsSecret": STORE_SECRET},
            "metricsPort": 0, "healthPort": 0,
        }))
        self.log = tmp / "operator.log"
        self.env = {**os.environ, "KUBECONFIG": str(c.kubeconfig),
                    "FORJA_CONFIG": str(self.config), "PYTHONWARNINGS": "ignore",
                    "PYTHONPATH": os.pathsep.join(
                        str(ROOT / d) for d in ("operator", "trainer_image", "server_image"))}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "forja_operator"],
                                         env=self.env, stdout=out, stderr=out)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()  # SIGKILL
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def test_operator_sigkilled_20_times_during_50_jobs(forja: Forja, forja_ns: str,
                                                    tmp_path: Path) -> None:
    ns, n_jobs, n_kills = forja_ns, 50, 20
    forja.kubectl("scale", "deployment", "-n", SYSTEM_NS, "-l",
                  f"app.kubernetes.io/instance={RELEASE}", "--replicas=0")
    wait_for(lambda: not forja.items("pods", SYSTEM_NS), timeout=60, message="operator gone")
    op = OperatorProcess(forja, tmp_path)
    rng = random.Random(20)
    start = time.monotonic()
    try:
        op.start()
        apply_all(forja, ns, [contract_job(f"k-{i:02d}", "killed", epoch_seconds=0.5)
                              for i in range(n_jobs)])
        for _ in range(n_kills):
            time.sleep(rng.uniform(0.5, 4.0))  # kopf needs ~2 s to start; some kills land early
            op.kill()
            time.sleep(rng.uniform(0.0, 0.5))
            op.start()

        def converged() -> list[dict[str, Any]] | None:
            items = forja.items("trainingjob", ns)
            done = [j for j in items if j.get("status", {}).get("phase") in ("Succeeded", "Failed")
                    and j["status"].get("modelVersion")]
            return items if len(done) == n_jobs else None

        jobs = wait_for(converged, timeout=900, interval=3, message=f"{n_jobs} jobs to converge")
    finally:
        op.stop()
        forja.kubectl("scale", "deployment", "-n", SYSTEM_NS, "-l",
                      f"app.kubernetes.io/instance={RELEASE}", "--replicas=2")
    seconds = time.monotonic() - start
    pods = forja.items("pods", ns, "forja.dev/trainingjob")
    for job in jobs:
        st, name = job["status"], job["metadata"]["name"]
        assert st["phase"] == "Succeeded", (name, st)
        mine = [p for p in pods if p["metadata"]["labels"]["forja.dev/trainingjob"] == name]
        # One pod per recorded attempt: a restarted operator never makes a second pod.
        assert len(mine) == len(st["attempts"]), (name, [p["metadata"]["name"] for p in mine])
    mvs = [m for m in forja.items("modelversion", ns) if m["spec"]["model"] == "killed"]
    assert len(mvs) == n_jobs, "a version was lost or duplicated"
    assert len({m["spec"]["version"] for m in mvs}) == n_jobs
    assert len({m["spec"]["source"]["trainingJob"] for m in mvs}) == n_jobs
    assert {j["status"]["modelVersion"] for j in jobs} == {m["metadata"]["name"] for m in mvs}
    attempts = sum(len(j["status"]["attempts"]) for j in jobs)
    print(f"\noperator drill: {n_kills} SIGKILLs, {n_jobs} jobs converged in {seconds:.0f} s, "
          f"{len(pods)} pods for {attempts} attempts, {len(mvs)} distinct versions")


# --- MinIO restarted mid-run ----------------------------------------------------------
def test_minio_restarted_mid_run_job_completes(forja: Forja, forja_ns: str) -> None:
    from forja_localcluster import processes
    from forja_localcluster.config import ClusterConfig

    ns = forja_ns
    apply_all(forja, ns, [contract_job("s3", "s3", epochs=5, epoch_seconds=1.5)])
    wait_for(lambda: int((forja.get("trainingjob", "s3", ns).get("status", {})
                          .get("progress") or {}).get("epoch", 0)) >= 1,
             timeout=180, interval=0.5, message="the first checkpoint")
    config = ClusterConfig(state_dir=forja.cluster.state_dir)
    assert processes.stop(config, "minio", grace=5.0)
    time.sleep(4)  # checkpoints written meanwhile fail and are retried
    ensure_real_nodes()  # start: MinIO again, the rest already up
    job = wait_for(lambda: forja.get("trainingjob", "s3", ns)
                   if job_phase(forja, "s3", ns) in ("Succeeded", "Failed") else None,
                   timeout=300, interval=2, message="the job to finish after MinIO restarted")
    st = job["status"]
    print("\nMinIO drill attempts:", json.dumps(st["attempts"]))
    assert st["phase"] == "Succeeded", st
    assert forja.wait_version_ready(st["modelVersion"], ns)


# --- a corrupted artifact -------------------------------------------------------------
def test_corrupted_artifact_fails_its_version_and_serving_continues(
        forja: Forja, forja_ns: str) -> None:
    """A new version whose object in MinIO was overwritten after its digest was taken:
    the version is Failed (ChecksumMismatch) and the service keeps answering on the
    previous one."""
    import numpy as np

    from forja_trainer.data.synthetic import shapes

    from ..workloads import http, png, serve, train_and_version

    ns = forja_ns
    good = train_and_version(forja, ns, "handwriting-classifier-trainingjob.yaml")
    url = serve(forja, ns, "handwriting-classifier-inferenceservice.yaml", good.version)
    s3 = s3_client(forja)
    artifact = good.mv["spec"]["artifact"]
    bucket, _, key = artifact["uri"].removeprefix("s3://").partition("/")
    bad_key = key.rsplit("/", 1)[0] + "-corrupt/" + key.rsplit("/", 1)[1]
    s3.copy_object(Bucket=bucket, Key=bad_key, CopySource={"Bucket": bucket, "Key": key})
    s3.put_object(Bucket=bucket, Key=bad_key, Body=b'{"corrupted": true}')  # bit rot
    forja.apply({"apiVersion": "forja.dev/v1alpha1", "kind": "ModelVersion",
                 "metadata": {"name": "handwriting-classifier-9-0-0"},
                 "spec": {"model": good.mv["spec"]["model"], "version": "9.0.0",
                          "format": good.mv["spec"]["format"],
                          "artifact": {"uri": f"s3://{bucket}/{bad_key}",
                                       "sha256": artifact["sha256"]}}}, ns)
    images, _, _ = shapes([1, 1, 1, 1], 16, seed=7)
    body = png((images[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8))
    answered = failed_requests = 0

    def version_failed() -> dict[str, Any] | None:
        nonlocal answered, failed_requests
        status, out, _ = http(f"{url}/predict", body, "image/png")
        if status == 200 and json.loads(out)["version"] == good.version:
            answered += 1
        else:
            failed_requests += 1
        mv = forja.get("modelversion", "handwriting-classifier-9-0-0", ns)
        return mv if mv.get("status", {}).get("phase") == "Failed" else None

    mv = wait_for(version_failed, timeout=120, message="the corrupted version to be Failed")
    print("\ncorrupted artifact:", json.dumps(mv["status"])[:600])
    reasons = {c.get("reason") for c in mv["status"].get("conditions", [])}
    assert "ChecksumMismatch" in reasons, reasons
    for _ in range(10):  # still serving the previous version, with no error
        version_failed()
    isvc = forja.get("inferenceservice", "handwriting-classifier", ns)
    print(f"served {answered} requests on {good.version}, {failed_requests} failed")
    assert isvc["status"]["activeVersion"] == good.version
    assert failed_requests == 0 and answered >= 10


# --- the server under sustained load --------------------------------------------------
def _server_pids(pod_ip: str) -> list[int]:
    """The serving pod's processes, seen from the machine (a container's processes are
    the machine's too): each server is told its pod IP (FORJA_POD_IP) to bind."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            env = (proc / "environ").read_bytes().split(b"\0")
            cmd = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if f"FORJA_POD_IP={pod_ip}".encode() in env and b"forja_server" in cmd:
            pids.append(int(proc.name))
    return pids


def _rss(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += float(line.split()[1]) * 1024
    return total


def test_server_under_sustained_load(forja: Forja, forja_ns: str) -> None:
    """Bounded concurrency (4 clients) against the served classifier for
    FORJA_LOAD_SECONDS (default 150): no errors, resident memory bounded."""
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np

    from forja_trainer.data.synthetic import shapes

    from ..workloads import http, png, serve, train_and_version

    seconds = float(os.environ.get("FORJA_LOAD_SECONDS", "150"))
    ns = forja_ns
    good = train_and_version(forja, ns, "handwriting-classifier-trainingjob.yaml")
    url = serve(forja, ns, "handwriting-classifier-inferenceservice.yaml", good.version)
    images, _, _ = shapes([2, 2, 2, 2], 16, seed=11)
    bodies = [png((im.permute(1, 2, 0).numpy() * 255).astype(np.uint8)) for im in images]
    for b in bodies:  # warm
        assert http(f"{url}/predict", b, "image/png")[0] == 200
    pods = forja.items("pods", ns, "!forja.dev/trainingjob")
    pids = [pid for p in pods for pid in _server_pids(p["status"]["podIP"])]
    assert pids, [p["status"].get("podIP") for p in pods]
    rss = [_rss(pids)]
    deadline = time.monotonic() + seconds

    def client(i: int) -> tuple[int, int]:
        ok = bad = 0
        while time.monotonic() < deadline:
            status, _, _ = http(f"{url}/predict", bodies[(ok + i) % len(bodies)], "image/png")
            ok, bad = (ok + 1, bad) if status == 200 else (ok, bad + 1)
        return ok, bad

    start = time.monotonic()
    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(client, i) for i in range(4)]
        while not all(f.done() for f in futures):
            time.sleep(10)
            rss.append(_rss(pids))
        results = [f.result() for f in futures]
    elapsed = time.monotonic() - start
    ok, bad = sum(r[0] for r in results), sum(r[1] for r in results)
    rss.append(_rss(pids))
    mib = [r / 2**20 for r in rss]
    print(f"\nload drill: {ok} requests in {elapsed:.0f} s ({ok / elapsed:.0f}/s), {bad} errors; "
          f"RSS MiB start {mib[0]:.0f}, max {max(mib):.0f}, end {mib[-1]:.0f}")
    assert bad == 0
    assert ok > 0
    # Bounded: after warm-up the server's memory does not keep growing with requests.
    assert max(mib[1:]) < mib[0] * 1.5 + 64, mib
