"""TrainingJobs admitted by a real Kueue (built from its pinned module, run by
forja_localcluster.kueue beside the suite's real-node cluster): its webhooks gate the
attempt's pods, its scheduler admits each gang as one Workload against a
ClusterQueue with quota for one gang, and it preempts a lower-priority gang for a
higher one. The trainer is the real image-classifier from forja/trainer, 2 workers
joined by torch.distributed (gloo), in namespaces that enforce the restricted profile.

The quota that binds is CPU, 2 cores for 2 workers x 1 core, not 2 GPUs: the nodes'
nvidia.com/gpu come from a fake device plugin, with no CUDA device behind them, and
the trainer refuses to fall back to the CPU when it was given a GPU
(forja_trainer/device.py), so a 1-GPU worker cannot train here. Kueue counts every
covered resource the same way. The two nodes have 2 cores each: one gang running and
its successor's pods (or a version's 1-core benchmark pod) beside it still fit.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from fixtures.cluster import wait_for
from fixtures.real_cluster import on_real_nodes, real_cli, restricted_namespaces
from forja_localcluster.kueue import OPT_IN_LABEL
from support.gang_jobs import classifier_gang_job

from .operator_harness import apply, get, wait_phase

pytestmark = pytest.mark.cluster
# Attempts from forja/trainer, the versions' verify and benchmark pods from forja/server.
cluster = on_real_nodes("trainer", "server")
namespace = restricted_namespaces()
TJ = "trainingjobs.forja.dev"
GATE = "kueue.x-k8s.io/admission"
KUEUE = "kueue.x-k8s.io/v1beta2"


@pytest.fixture(scope="module")
def kueue(cluster: Any) -> None:
    """Kueue started beside the real-node cluster (a no-op when it runs already); left
    running for the session's other Kueue tests, ended by the cluster's ``stop``. It
    manages only the namespaces that opt in."""
    started = real_cli("start", module="forja_localcluster.kueue", timeout=600)
    if started.returncode != 0:
        pytest.fail(f"Kueue did not start:\n{started.stdout}{started.stderr[-4000:]}",
                    pytrace=False)


@pytest.fixture
def queue(cluster: Any, kueue: None, store_ns: str) -> Iterator[str]:
    """The namespace opted in to Kueue, a ClusterQueue with 2 cores, one 2-worker gang
    (preempting lower priorities within it), and a LocalQueue ``team`` in it."""
    ns = store_ns
    cluster.kubectl("label", "namespace", ns, f"{OPT_IN_LABEL[0]}={OPT_IN_LABEL[1]}")
    cq = f"cq-{uuid.uuid4().hex[:6]}"
    objs = [
        {"apiVersion": KUEUE, "kind": "ResourceFlavor", "metadata": {"name": "default-flavor"}},
        {"apiVersion": KUEUE, "kind": "WorkloadPriorityClass", "metadata": {"name": "low"},
         "value": 10},
        {"apiVersion": KUEUE, "kind": "WorkloadPriorityClass", "metadata": {"name": "high"},
         "value": 1000},
        {"apiVersion": KUEUE, "kind": "ClusterQueue", "metadata": {"name": cq},
         "spec": {
             "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}},
             "preemption": {"withinClusterQueue": "LowerPriority"},
             "resourceGroups": [{
                 "coveredResources": ["cpu", "memory"],
                 "flavors": [{"name": "default-flavor", "resources": [
                     {"name": "cpu", "nominalQuota": "2"},
                     {"name": "memory", "nominalQuota": "32Gi"},
                 ]}],
             }],
         }},
        {"apiVersion": KUEUE, "kind": "LocalQueue", "metadata": {"name": "team", "namespace": ns},
         "spec": {"clusterQueue": cq}},
    ]
    for obj in objs:
        cluster.apply(obj)
    yield ns
    cluster.kubectl("delete", "clusterqueue", cq, "--wait=false", check=False)


def gang_job(name: str, epochs: int, priority: str | None = None) -> dict[str, Any]:
    labels = {"kueue.x-k8s.io/queue-name": "team"}
    if priority:
        labels["kueue.x-k8s.io/priority-class"] = priority
    return classifier_gang_job(name, epochs, labels=labels,
                               restartPolicy={"backoffLimit": 0, "backoffSeconds": 0})


def pods_of(cluster: Any, ns: str, job: str) -> dict[str, dict[str, Any]]:
    items = (get(cluster, ns, "pods", selector=f"forja.dev/trainingjob={job}")
             or {"items": []})["items"]
    return {p["metadata"]["name"]: p for p in items}


def gates(pod: dict[str, Any]) -> list[str]:
    return [g["name"] for g in pod["spec"].get("schedulingGates") or []]


def status_of(cluster: Any, ns: str, name: str) -> dict[str, Any]:
    return (get(cluster, ns, TJ, name) or {}).get("status") or {}


def workloads(cluster: Any, ns: str) -> dict[str, dict[str, Any]]:
    items = (get(cluster, ns, "workloads.kueue.x-k8s.io") or {"items": []})["items"]
    # a pod group's Workload is named after the group (here: the attempt)
    return {w["metadata"]["name"]: w for w in items}


def admitted(wl: dict[str, Any] | None) -> bool:
    return any(c["type"] == "Admitted" and c["status"] == "True"
               for c in ((wl or {}).get("status") or {}).get("conditions") or [])


def logs(cluster: Any, ns: str, pod: str) -> str:
    return str(cluster.kubectl("logs", pod, "-n", ns, check=False).stdout)


def test_two_gangs_share_a_one_gang_queue_one_waits_gated_then_runs(cluster, operator, queue):
    ns = queue
    apply(cluster, ns, gang_job("first", epochs=3))

    def first_running():
        return status_of(cluster, ns, "first").get("phase") == "Running"

    wait_for(first_running, 300, interval=1, message="first gang running")
    apply(cluster, ns, gang_job("second", epochs=3))

    def second_waiting():
        st = status_of(cluster, ns, "second")
        atts = st.get("attempts") or []
        return st if atts and atts[0].get("reason") == "WaitingForAdmission" else None

    st = wait_for(second_waiting, 120, interval=1, message="second gang waiting for admission")
    waited_at = time.monotonic()
    assert st["phase"] == "Pending" and "waiting for admission" in st["message"], st
    running = next(c for c in st["conditions"] if c["type"] == "Running")
    assert (running["status"], running["reason"]) == ("False", "WaitingForAdmission")
    # both workers exist, gated by Kueue and bound to no node, in one group of 2
    second = pods_of(cluster, ns, "second")
    assert set(second) == {"second-a1-w0", "second-a1-w1"}
    for p in second.values():
        assert GATE in gates(p) and not p["spec"].get("nodeName")
        assert p["metadata"]["labels"]["kueue.x-k8s.io/pod-group-name"] == "second-a1"
        assert p["metadata"]["annotations"]["kueue.x-k8s.io/pod-group-total-count"] == "2"
    wls = workloads(cluster, ns)
    assert admitted(wls.get("first-a1")) and not admitted(wls.get("second-a1")), wls.keys()
    reasons = cluster.kubectl("get", "events", "-n", ns, "--field-selector",
                              "involvedObject.name=second", "-o",
                              "jsonpath={.items[*].reason}").stdout
    assert "WaitingForAdmission" in reasons

    first = wait_phase(cluster, ns, "first", "Succeeded", "Failed", timeout=600)
    assert first["status"]["phase"] == "Succeeded", first["status"]
    # first's quota comes back: second is admitted, ungated and runs to the end
    second_job = wait_phase(cluster, ns, "second", "Succeeded", "Failed", timeout=600)
    st = second_job["status"]
    assert st["phase"] == "Succeeded", st
    assert [a["reason"] for a in st["attempts"]] == ["Completed"]
    for p in pods_of(cluster, ns, "second").values():
        assert gates(p) == [] and p["spec"]["nodeName"]
    print(f"\nsecond gang waited gated, then ran: {time.monotonic() - waited_at:.0f} s "
          "from its WaitingForAdmission to Succeeded")


def test_a_higher_priority_gang_preempts_one_that_resumes_from_its_checkpoint(
    cluster, operator, queue
):
    ns = queue
    # Epochs take ~3 s here, and Kueue's preemption follows the high gang's creation
    # by tens of seconds under load: enough epochs that low is still training then.
    apply(cluster, ns, gang_job("low", epochs=80, priority="low"))

    def checkpointed():
        st = status_of(cluster, ns, "low")
        return st if (st.get("lastCheckpoint") or {}).get("epoch", 0) >= 1 else None

    first = wait_for(checkpointed, 420, interval=1, message="low: a checkpoint at epoch 1")
    high_at = time.monotonic()
    apply(cluster, ns, gang_job("high", epochs=2, priority="high"))

    def preempted():
        st = status_of(cluster, ns, "low")
        atts = st.get("attempts") or []
        assert st.get("phase") != "Succeeded", "low finished before Kueue preempted it"
        return st if atts and atts[0].get("reason") == "Preempted" else None

    st = wait_for(preempted, 180, interval=1, message="low preempted by Kueue")
    preempted_after = time.monotonic() - high_at
    saved = st["lastCheckpoint"]["epoch"]
    assert saved >= 1

    def waiting_again():
        st = status_of(cluster, ns, "low")
        atts = st.get("attempts") or []
        return st if len(atts) == 2 and atts[1].get("reason") == "WaitingForAdmission" else None

    # the next attempt exists, gated until Kueue admits it again
    st = wait_for(waiting_again, 180, interval=1, message="low's attempt 2 gated")
    assert all(GATE in gates(p) for name, p in pods_of(cluster, ns, "low").items()
               if name.startswith("low-a2-"))
    high = wait_phase(cluster, ns, "high", "Succeeded", "Failed", timeout=600)
    assert high["status"]["phase"] == "Succeeded", high["status"]
    low = wait_phase(cluster, ns, "low", "Succeeded", "Failed", timeout=900)
    st = low["status"]
    # backoffLimit 0: the preemption did not spend it
    assert st["phase"] == "Succeeded", st
    assert [a["reason"] for a in st["attempts"]] == ["Preempted", "Completed"], st["attempts"]
    assert st["attempts"][1]["resumedFrom"].endswith("/checkpoints/last.pt")
    text = logs(cluster, ns, "low-a2-w0")
    marker = "resumed at epoch "
    assert marker in text, text[-2000:]
    resumed = int(text.split(marker, 1)[1].split()[0])
    assert resumed >= saved >= 1, (resumed, saved)
    print(f"\nlow preempted {preempted_after:.0f} s after high was created, "
          f"{saved - first['lastCheckpoint']['epoch']} epochs on, "
          f"after its epoch-{saved} checkpoint, resumed at epoch {resumed}; "
          f"attempts: {[(a['index'], a['reason']) for a in st['attempts']]}")
