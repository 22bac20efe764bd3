"""The operator on the local cluster: real API server, scheduler, kubelets and MinIO.

The trainer is tests/support/contract_trainer.py, which follows the pod contract for
real (progress annotation, checkpoints and artifacts in MinIO, termination message,
exit codes, a real OOM kill by the kernel under the container's memory limit).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from fixtures.cluster import wait_for
from fixtures.real_cluster import on_real_nodes

from .operator_harness import apply, get, phase_is, trainingjob, wait_phase

pytestmark = pytest.mark.cluster
# Attempts from forja/trainer, verify and benchmark pods from forja/server.
cluster = on_real_nodes("trainer", "server")
TJ, MV = "trainingjobs.forja.dev", "modelversions.forja.dev"


def versions(cluster: Any, ns: str) -> list[dict[str, Any]]:
    return (get(cluster, ns, MV) or {"items": []})["items"]


def mv_phase(cluster: Any, ns: str, name: str, phase: str):
    def check():
        mv = get(cluster, ns, MV, name)
        return mv if mv and mv.get("status", {}).get("phase") == phase else None

    return check


def cond(obj: dict[str, Any], ctype: str) -> dict[str, Any]:
    return next(c for c in obj["status"]["conditions"] if c["type"] == ctype)


def test_happy_path_to_a_ready_latest_version(cluster, operator, store_ns):
    ns = store_ns
    apply(cluster, ns, trainingjob("happy", model="happy"))
    job = wait_phase(cluster, ns, "happy", "Succeeded", "Failed", timeout=180)
    assert job["status"]["phase"] == "Succeeded", job["status"]
    assert job["status"]["progress"]["percent"] == 100
    assert job["status"]["lastCheckpoint"]["uri"].endswith("/checkpoints/last.pt")
    assert job["status"]["attempts"][0]["reason"] == "Completed"
    mv_name = wait_for(lambda: get(cluster, ns, TJ, "happy")["status"].get("modelVersion"), 30)
    assert mv_name == "happy-v0.1.0"
    mv = wait_for(mv_phase(cluster, ns, mv_name, "Ready"), 60, message="version Ready")
    assert mv["status"]["latest"] is True
    assert cond(mv, "ArtifactVerified")["reason"] == "ChecksumMatch"
    assert mv["spec"]["source"]["trainingJob"] == "happy"
    pods = get(cluster, ns, "pods", selector="forja.dev/trainingjob=happy")["items"]
    assert [p["metadata"]["name"] for p in pods] == ["happy-a1"]
    sc = pods[0]["spec"]["containers"][0]["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False
    reasons = cluster.kubectl(
        "get", "events", "-n", ns, "-o", "jsonpath={.items[*].reason}"
    ).stdout.split()
    assert {"Created", "Versioned"} <= set(reasons)


def test_oom_then_resume_from_checkpoint_with_half_batch(cluster, operator, store_ns):
    ns = store_ns
    job = trainingjob("oom", model="oom", hyperparameters={"oom_attempts": [1], "epochs": 3})
    job["spec"]["resources"]["memory"] = "200Mi"
    apply(cluster, ns, job)
    job = wait_phase(cluster, ns, "oom", "Succeeded", "Failed", timeout=180)
    st = job["status"]
    assert st["phase"] == "Succeeded", st
    first, second = st["attempts"]
    assert first["reason"] == "OOMKilled"
    assert second["overrides"] == {"batch_size": 16}
    assert second["resumedFrom"].endswith("/checkpoints/last.pt")
    # The digest recorded for that checkpoint travels with it; the trainer checks it.
    pod = get(cluster, ns, "pods", "oom-a2")
    env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
    assert len(env["FORJA_RESUME_SHA256"]) == 64
    assert json.loads(env["FORJA_SPEC"])["resumeSha256"] == env["FORJA_RESUME_SHA256"]
    mv = wait_for(lambda: get(cluster, ns, MV, "oom-v0.1.0"), 30)
    assert mv["spec"]["source"]["config"]["hyperparameters"]["batch_size"] == 16
    msgs = cluster.kubectl("get", "events", "-n", ns, "-o", "jsonpath={.items[*].message}").stdout
    assert '"batch_size": 16' in msgs


def test_permanent_error_fails_with_the_trainers_message(cluster, operator, store_ns):
    ns = store_ns
    apply(cluster, ns, trainingjob("perm", hyperparameters={"exit_code": 3}))
    job = wait_for(phase_is(cluster, ns, "perm", "Failed"), 60)
    assert len(job["status"]["attempts"]) == 1
    assert job["status"]["attempts"][0]["reason"] == "InvalidDataset"
    assert "test failure 3" in job["status"]["message"]
    assert cond(job, "Failed")["status"] == "True"


def test_unschedulable_gpu_request_is_visible(cluster, operator, store_ns):
    ns = store_ns
    apply(cluster, ns, trainingjob("gpu", resources={"gpus": 64}))

    def unschedulable():
        job = get(cluster, ns, TJ, "gpu")
        atts = (job or {}).get("status", {}).get("attempts") or []
        return job if atts and atts[0].get("reason") == "Unschedulable" else None

    job = wait_for(unschedulable, 60, message="Unschedulable in status")
    assert job["status"]["phase"] == "Pending"
    assert "nvidia.com/gpu" in job["status"]["message"]


def test_suspend_stops_and_resume_continues_from_checkpoint(cluster, operator, store_ns):
    ns = store_ns
    apply(cluster, ns, trainingjob("susp", hyperparameters={"epochs": 40, "epoch_seconds": 0.25}))

    def progressed():
        job = get(cluster, ns, TJ, "susp")
        return (
            job
            if ((job or {}).get("status", {}).get("progress") or {}).get("epoch", 0) >= 2
            else None
        )

    wait_for(progressed, 60, message="two epochs")
    cluster.kubectl(
        "patch", TJ, "susp", "-n", ns, "--type=merge", "-p", '{"spec":{"suspend":true}}'
    )
    job = wait_for(phase_is(cluster, ns, "susp", "Suspended"), 30)
    wait_for(lambda: not get(cluster, ns, "pods", "susp-a1"), 60, message="attempt pod gone")
    job = get(cluster, ns, TJ, "susp")
    assert job["status"]["attempts"][0]["reason"] == "Suspended"
    assert job["status"]["lastCheckpoint"]["epoch"] >= 2
    cluster.kubectl(
        "patch", TJ, "susp", "-n", ns, "--type=merge", "-p", '{"spec":{"suspend":false}}'
    )
    job = wait_for(phase_is(cluster, ns, "susp", "Succeeded", "Failed"), 90)
    assert job["status"]["phase"] == "Succeeded"
    assert job["status"]["attempts"][1]["resumedFrom"].endswith("last.pt")


def test_active_deadline_fails_the_job(cluster, operator, store_ns):
    ns = store_ns
    apply(cluster, ns, trainingjob("late", activeDeadlineSeconds=4, hyperparameters={"hang": True}))
    job = wait_for(phase_is(cluster, ns, "late", "Failed"), 60)
    assert cond(job, "Failed")["reason"] == "DeadlineExceeded"
    wait_for(
        lambda: (
            not get(cluster, ns, "pods", "late-a1")
            or get(cluster, ns, "pods", "late-a1")["status"]["phase"] in ("Failed", "Succeeded")
        ),
        60,
    )


def test_sha256_mismatch_makes_the_version_failed(cluster, operator, store_ns):
    ns = store_ns
    apply(cluster, ns, trainingjob("bad", model="bad", hyperparameters={"bad_digest": True}))
    wait_for(phase_is(cluster, ns, "bad", "Succeeded"), 90)
    mv = wait_for(mv_phase(cluster, ns, "bad-v0.1.0", "Failed"), 60, message="version Failed")
    assert cond(mv, "ArtifactVerified")["reason"] == "ChecksumMismatch"
    assert not mv["status"].get("latest")
