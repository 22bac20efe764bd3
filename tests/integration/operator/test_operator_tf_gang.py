"""A 2-worker distill-qat-tflite TrainingJob on the suite's real-node cluster: the real
operator, API server, scheduler, kubelets, kube-proxy (it carries the workers' gRPC
through one Service per worker; there is no DNS) and MinIO, and the real TensorFlow
trainer from forja/trainer-tf in both pods, joined by MultiWorkerMirroredStrategy, in
namespaces that enforce the restricted profile. The scheduler places the workers as
it likes; tests/integration/nodes has the one-worker-per-node twin.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from fixtures.cluster import wait_for
from fixtures.real_cluster import on_real_nodes, restricted_namespaces
from forja_api.contract import TF_CONFIG_ENV
from support.gang_jobs import TF_TINY, result_of, tf_gang_job

from .operator_harness import apply, get, wait_phase

pytestmark = [pytest.mark.cluster, pytest.mark.slow]
# Attempts from forja/trainer-tf, the version's verify and benchmark pods from forja/server.
cluster = on_real_nodes("trainer-tf", "server")
namespace = restricted_namespaces()
TJ, MV = "trainingjobs.forja.dev", "modelversions.forja.dev"

def logs(cluster: Any, ns: str, pod: str) -> str:
    return str(cluster.kubectl("logs", pod, "-n", ns, check=False).stdout)


@pytest.mark.timeout(1500)
def test_two_tf_workers_train_one_version(cluster, operator, store_ns):
    ns = store_ns
    apply(cluster, ns, tf_gang_job("tfgang"))
    job = wait_phase(cluster, ns, "tfgang", "Succeeded", "Failed", timeout=1200)
    st = job["status"]
    assert st["phase"] == "Succeeded", (st, logs(cluster, ns, "tfgang-a1-w1")[-3000:],
                                        logs(cluster, ns, "tfgang-a1-w0")[-3000:])
    assert st["attempts"][0]["reason"] == "Completed"
    assert [(w["rank"], w["pod"]) for w in st["workers"]] == [(0, "tfgang-a1-w0"),
                                                               (1, "tfgang-a1-w1")]
    # One Service per worker, and no torch rendezvous Service.
    ips = [get(cluster, ns, "services", f"tfgang-a1-w{r}")["spec"]["clusterIP"] for r in (0, 1)]
    assert get(cluster, ns, "services", "tfgang-a1-rdzv") is None
    pods = {p["metadata"]["name"]: p
            for p in get(cluster, ns, "pods", selector="forja.dev/trainingjob=tfgang")["items"]}
    assert set(pods) == {"tfgang-a1-w0", "tfgang-a1-w1"}
    for rank in (0, 1):
        container = pods[f"tfgang-a1-w{rank}"]["spec"]["containers"][0]
        assert container["image"].startswith("forja/trainer-tf:"), container["image"]
        env = {e["name"]: e.get("value") for e in container["env"]}
        config = json.loads(env[TF_CONFIG_ENV])
        peer = 1 - rank
        assert config["cluster"]["worker"][peer] == f"{ips[peer]}:2222"
        assert config["task"] == {"type": "worker", "index": rank}
        text = logs(cluster, ns, f"tfgang-a1-w{rank}")
        assert f"MultiWorkerMirroredStrategy: worker {rank} of 2" in text, text[-3000:]
    chief, other = result_of(pods["tfgang-a1-w0"]), result_of(pods["tfgang-a1-w1"])
    assert chief is not None and chief.artifact is not None
    assert other is not None and other.ok and other.artifact is None  # the chief publishes
    print(f"\n2-worker TF gang: int8 test F1 macro {chief.metrics['test_f1_macro']:.3f}, "
          f"qat_applied {chief.metrics['qat_applied']}")
    mv = wait_for(lambda: get(cluster, ns, MV, "tfgang-v0.1.0"), 60, message="the version")
    assert mv["spec"]["source"]["trainingJob"] == "tfgang"


@pytest.mark.timeout(1800)
def test_a_lost_tf_worker_restarts_the_gang_from_the_chiefs_checkpoint(
    cluster, operator, store_ns
):
    ns = store_ns
    body = tf_gang_job("tflose")
    body["spec"]["hyperparameters"] = {
        **TF_TINY, "student": {**TF_TINY["student"], "epochs": 6}}
    apply(cluster, ns, body)

    def mid_student():
        job = get(cluster, ns, TJ, "tflose")
        progress = ((job or {}).get("status") or {}).get("progress") or {}
        return job if progress.get("step") == "student" and progress.get("epoch", 0) >= 1 else None

    wait_for(mid_student, 900, interval=1, message="the student step's first epoch")
    cluster.kubectl("delete", "pod", "tflose-a1-w1", "-n", ns, "--grace-period=0", "--force")
    job = wait_phase(cluster, ns, "tflose", "Succeeded", "Failed", timeout=1200)
    st = job["status"]
    assert st["phase"] == "Succeeded", st
    first = st["attempts"][0]
    # Preempted when the operator saw the pod gone first; Error when the chief's
    # collective was aborted (its peer's heartbeats stopped) before that.
    assert first["reason"] in ("Preempted", "Error"), first
    last = st["attempts"][-1]["index"]
    assert last >= 2 and st["attempts"][-1]["reason"] == "Completed"
    resumed = []
    for rank in (0, 1):
        text = logs(cluster, ns, f"tflose-a{last}-w{rank}")
        resumed.append([line for line in text.splitlines() if line.startswith("forja-resume ")])
    # Both workers resumed from the same checkpoint, in the student step.
    assert resumed[0] == resumed[1] and len(resumed[0]) == 1, resumed
    assert json.loads(resumed[0][0].split(" ", 1)[1])["step"] in ("student", "qat"), resumed
    print("\nattempts: " + "; ".join(
        f"{a['index']} {a['reason']} ({(a.get('message') or '')[:80]})" for a in st["attempts"]))
    # Attempt 1's worker Services went with it; the last attempt's stay with the job.
    assert get(cluster, ns, "services", "tflose-a1-w0") is None
    assert get(cluster, ns, "services", "tflose-a1-w1") is None
    assert get(cluster, ns, "services", f"tflose-a{last}-w1") is not None
