"""A 2-worker TrainingJob on the local cluster: the real operator, API server,
scheduler, kubelets (kube-proxy carries the rendezvous Service; there is no DNS) and
MinIO, and the real image-classifier trainer in both pods, joined by
torch.distributed over gloo. tests/integration/nodes places one worker per node.
"""

from __future__ import annotations

from typing import Any

import pytest

from fixtures.cluster import wait_for
from fixtures.real_cluster import on_real_nodes
from support.gang_jobs import classifier_gang_job, result_of

from .operator_harness import apply, get, wait_phase

pytestmark = pytest.mark.cluster
# Attempts from forja/trainer, verify and benchmark pods from forja/server.
cluster = on_real_nodes("trainer", "server")
TJ, MV = "trainingjobs.forja.dev", "modelversions.forja.dev"


def gang_job(name: str, epochs: int) -> dict[str, Any]:
    return classifier_gang_job(name, epochs,
                               restartPolicy={"backoffLimit": 2, "backoffSeconds": 0})


def logs(cluster: Any, ns: str, pod: str) -> str:
    return str(cluster.kubectl("logs", pod, "-n", ns, check=False).stdout)


def test_two_workers_train_one_version(cluster, operator, store_ns):
    ns = store_ns
    apply(cluster, ns, gang_job("gang", epochs=8))
    job = wait_phase(cluster, ns, "gang", "Succeeded", "Failed", timeout=420)
    st = job["status"]
    assert st["phase"] == "Succeeded", (st, logs(cluster, ns, "gang-a1-w1")[-3000:])
    assert st["attempts"][0]["reason"] == "Completed"
    assert st["attempts"][0]["pod"] == "gang-a1-w0"
    assert [(w["rank"], w["pod"]) for w in st["workers"]] == [(0, "gang-a1-w0"),
                                                               (1, "gang-a1-w1")]
    assert all(w["node"] for w in st["workers"])
    svc = get(cluster, ns, "services", "gang-a1-rdzv")
    pods = {p["metadata"]["name"]: p
            for p in get(cluster, ns, "pods", selector="forja.dev/trainingjob=gang")["items"]}
    assert set(pods) == {"gang-a1-w0", "gang-a1-w1"}
    env1 = {e["name"]: e.get("value")
            for e in pods["gang-a1-w1"]["spec"]["containers"][0]["env"]}
    assert env1["MASTER_ADDR"] == svc["spec"]["clusterIP"] and env1["WORLD_SIZE"] == "2"
    for rank in (0, 1):
        assert f"joining a world of 2 as rank {rank} (gloo" in logs(cluster, ns, f"gang-a1-w{rank}")
    rank0, rank1 = result_of(pods["gang-a1-w0"]), result_of(pods["gang-a1-w1"])
    assert rank0 is not None and rank0.artifact is not None
    assert rank1 is not None and rank1.ok and rank1.artifact is None  # rank 0 alone publishes
    assert rank0.metrics["val_accuracy"] >= rank0.metrics["baseline_accuracy"] + 0.25
    print(f"\n2-worker val_accuracy {rank0.metrics['val_accuracy']:.3f}")
    mv = wait_for(lambda: get(cluster, ns, MV, "gang-v0.1.0"), 60, message="the version")
    assert mv["spec"]["source"]["trainingJob"] == "gang"
    wide = cluster.kubectl("get", "tj", "gang", "-n", ns, "-o", "wide").stdout.splitlines()
    assert wide[0].split()[-2] == "WORKERS" and wide[1].split()[-2] == "2"


def test_a_lost_worker_restarts_the_whole_gang_from_the_checkpoint(cluster, operator, store_ns):
    ns = store_ns
    apply(cluster, ns, gang_job("lose", epochs=30))

    def checkpointed():
        job = get(cluster, ns, TJ, "lose")
        ckpt = ((job or {}).get("status") or {}).get("lastCheckpoint") or {}
        return job if ckpt.get("epoch", 0) >= 2 else None

    wait_for(checkpointed, 300, interval=1, message="a checkpoint at epoch 2")
    cluster.kubectl("delete", "pod", "lose-a1-w1", "-n", ns, "--grace-period=0", "--force")
    job = wait_phase(cluster, ns, "lose", "Succeeded", "Failed", timeout=600)
    st = job["status"]
    assert st["phase"] == "Succeeded", st
    first, second = st["attempts"][:2]
    # Preempted when the operator saw the pod gone first; Error when rank 0's gloo
    # noticed its peer closing before that. Either way the whole gang restarted.
    assert first["reason"] in ("Preempted", "Error"), first
    assert second["resumedFrom"].endswith("/checkpoints/last.pt")
    assert st["attempts"][-1]["reason"] == "Completed"
    print("\nattempts: " + "; ".join(
        f"{a['index']} {a['reason']} ({a.get('message') or ''})" for a in st["attempts"]))
    last = st["attempts"][-1]["index"]
    for rank in (0, 1):
        text = logs(cluster, ns, f"lose-a{last}-w{rank}")
        assert "resumed at epoch" in text, text[-2000:]
    # attempt 1's Service went with it; attempt 1's rank 0 did not outlive its attempt
    assert get(cluster, ns, "services", "lose-a1-rdzv") is None
    assert get(cluster, ns, "services", f"lose-a{last}-rdzv") is not None
    old = get(cluster, ns, "pods", "lose-a1-w0")
    assert old is None or old["status"]["phase"] != "Running"
