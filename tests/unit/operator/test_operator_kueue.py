"""Kueue: the pod-group metadata the builders put on an attempt, and the planner
reading pods Kueue gates (waiting for admission) and stops (a preempted Workload)."""

import copy
from datetime import UTC, datetime

from forja_api import conditions as c
from forja_api import contract
from forja_api.v1alpha1.trainingjob import TrainingJobSpec
from forja_operator.builders.attempt import AttemptInputs, render_attempt_pods
from forja_operator.config import OperatorConfig
from forja_operator.reconcilers.trainingjob import reconcile_trainingjob
from forja_operator.runtime import Runtime
from forja_operator.status.attempt_pod import classify_pod
from forja_operator.status.trainingjob import plan_trainingjob

from .memory_api import MemoryApi
from .operator_factories import job, pod, with_status
from .test_operator_reconcilers import KEY, run

NOW = datetime(2026, 1, 1, 0, 10, 30, tzinfo=UTC)
QUEUE, PRIORITY = contract.KUEUE_QUEUE_LABEL, contract.KUEUE_PRIORITY_CLASS_LABEL
GROUP, COUNT = contract.KUEUE_POD_GROUP_LABEL, contract.KUEUE_POD_GROUP_TOTAL_COUNT_ANNOTATION


def queued_job(workers=2, labels=None, **spec):
    body = job(workers=workers, **spec)
    body["metadata"]["labels"] = (
        {QUEUE: "team-a", PRIORITY: "high"} if labels is None else labels
    )
    return body


def render(body, index=3):
    spec = TrainingJobSpec.model_validate(body["spec"])
    workers = spec.workers
    inputs = AttemptInputs(index, workers=workers, master_addr="10.96.0.9")
    return render_attempt_pods(body, spec, inputs, OperatorConfig())


def plan(body, pods):
    return plan_trainingjob(body, TrainingJobSpec.model_validate(body["spec"]), pods, NOW)


def started(body):
    return with_status(body, plan(body, []).status.to_wire())


def gated(p):
    p["spec"]["schedulingGates"] = [{"name": contract.KUEUE_ADMISSION_GATE}]
    p["status"] = {
        "phase": "Pending",
        "conditions": [{"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}],
    }
    return p


def stopped_by_kueue(p, exit_code=143):
    """As Kueue leaves a pod of a preempted Workload: TerminationTarget, then deleted,
    then ended by its kubelet (the trainer checkpointed on SIGTERM)."""
    p["metadata"]["deletionTimestamp"] = "2026-01-01T00:06:00Z"
    p["metadata"]["finalizers"] = [contract.KUEUE_FINALIZER]
    p["status"]["phase"] = "Failed"
    p["status"]["containerStatuses"][0]["state"] = {
        "terminated": {"exitCode": exit_code, "finishedAt": "2026-01-01T00:06:30Z"}
    }
    p["status"]["conditions"] = [{
        "type": contract.KUEUE_TERMINATION_TARGET, "status": "True",
        "reason": "WorkloadEvicted",
        "message": "Preempted to accommodate a workload (UID: u-2) due to prioritization",
    }]
    return p


# --- builders --------------------------------------------------------------------------


def test_every_worker_is_in_one_pod_group_named_after_the_attempt():
    pods = render(queued_job(workers=3))
    assert len(pods) == 3
    for p in pods:
        labels, ann = p["metadata"]["labels"], p["metadata"]["annotations"]
        assert labels[QUEUE] == "team-a" and labels[PRIORITY] == "high"
        assert labels[GROUP] == "train-a3"
        assert ann[COUNT] == "3"
        # a failed worker is never replaced inside the group: the next attempt is a new one
        assert ann[contract.KUEUE_RETRIABLE_IN_GROUP_ANNOTATION] == "false"


def test_a_single_worker_is_a_group_of_one():
    (p,) = render(queued_job(workers=1, labels={QUEUE: "team-a"}), index=1)
    assert p["metadata"]["name"] == "train-a1"
    assert p["metadata"]["labels"][GROUP] == "train-a1"
    assert p["metadata"]["annotations"][COUNT] == "1"
    assert PRIORITY not in p["metadata"]["labels"]


def test_the_jobs_queue_label_wins_over_the_spec_field():
    body = queued_job(labels={QUEUE: "from-label"}, scheduling={"queueName": "from-spec"})
    assert {p["metadata"]["labels"][QUEUE] for p in render(body)} == {"from-label"}
    body = queued_job(labels={}, scheduling={"queueName": "from-spec"})
    assert {p["metadata"]["labels"][QUEUE] for p in render(body)} == {"from-spec"}


def test_without_a_queue_no_kueue_metadata_at_all():
    for p in render(queued_job(labels={PRIORITY: "high"})):
        assert not any(k.startswith("kueue.x-k8s.io/") for k in p["metadata"]["labels"])
        assert not any(k.startswith("kueue.x-k8s.io/") for k in p["metadata"]["annotations"])


# --- planner: gated --------------------------------------------------------------------


def test_a_gated_gang_waits_for_admission_pending_not_unschedulable():
    body = started(queued_job())
    workers = [gated(pod(1, rank=r, world=2)) for r in (0, 1)]
    view = classify_pod(workers[0])
    assert view.gates == (contract.KUEUE_ADMISSION_GATE,) and view.unschedulable is None
    p = plan(body, workers)
    assert p.status.phase == "Pending"
    assert "waiting for admission" in (p.status.message or "")
    assert contract.KUEUE_ADMISSION_GATE in (p.status.message or "")
    att = p.status.attempts[-1]
    assert att.reason == c.REASON_WAITING_FOR_ADMISSION and att.end_time is None
    running = next(x for x in p.status.conditions if x.type == c.RUNNING)
    assert (running.status, running.reason) == ("False", c.REASON_WAITING_FOR_ADMISSION)
    assert [e.reason for e in p.events] == [c.REASON_WAITING_FOR_ADMISSION]
    assert p.delete_pods == [] and p.create_attempt is None


def test_admission_lifts_the_gate_and_the_attempt_runs():
    body = started(queued_job())
    body = with_status(body, plan(body, [gated(pod(1, rank=r, world=2)) for r in (0, 1)])
                       .status.to_wire())
    p = plan(body, [pod(1, rank=r, world=2, node="n") for r in (0, 1)])
    assert p.status.phase == "Running"
    assert p.status.attempts[-1].reason is None


def test_a_bound_pod_is_never_called_gated():
    p = gated(pod(1, node="n"))
    assert classify_pod(p).gates == ()


# --- planner: preempted by Kueue ----------------------------------------------------------


def test_kueue_stopping_the_gang_is_a_preemption_that_spends_no_backoff():
    policy = {"backoffLimit": 0, "backoffSeconds": 0}
    body = started(queued_job(restartPolicy=policy))
    ckpt = contract.CheckpointRef(uri="s3://forja/ns/train/checkpoints/last.pt", epoch=2,
                                  sha256="b" * 64)
    prog = contract.Progress(epoch=2, total_epochs=5, checkpoint=ckpt, batch_size=32)
    workers = [stopped_by_kueue(pod(1, rank=r, world=2, node="n", progress=prog if r == 0
                                    else None)) for r in (0, 1)]
    p = plan(body, workers)
    assert len(p.status.attempts) == 2
    att = p.status.attempts[0]
    assert att.reason == c.REASON_PREEMPTED
    assert "Preempted to accommodate" in (att.message or "")
    assert p.status.phase != "Failed"
    new = p.create_attempt
    assert new is not None and new.index == 2 and new.workers == 2
    assert new.resume_from == ckpt.uri and new.resume_sha256 == "b" * 64


def test_kueue_termination_target_wins_over_the_exit_code():
    # The trainer checkpointed and exited with its retryable code, not 143: still Kueue's.
    view = classify_pod(stopped_by_kueue(pod(1, node="n"), exit_code=contract.EXIT_RETRYABLE))
    assert view.reason == c.REASON_PREEMPTED and "Preempted" in (view.message or "")


# --- reconciler: Kueue's finalizer ----------------------------------------------------------


class FinalizingApi(MemoryApi):
    """Deleting an object with finalizers only marks it, as the API server does."""

    async def delete(self, kind, namespace, name, uid=None, api_version=None):
        obj = self.objects.get((kind, namespace, name))
        if obj is not None and obj["metadata"].get("finalizers"):
            self.writes.append(("delete", kind, name))
            obj["metadata"]["deletionTimestamp"] = "2026-01-01T00:07:00Z"
            return
        await super().delete(kind, namespace, name, uid, api_version)


def _suspend_a_gated_and_a_bound_gang(bound: bool):
    api = FinalizingApi()
    rt = Runtime(config=OperatorConfig(), kube=api)
    body = queued_job()
    rt.jobs.put(api.put(copy.deepcopy(body)))
    run(rt, reconcile_trainingjob, KEY)
    for name in ("train-a1-w0", "train-a1-w1"):
        stored = api.objects[("Pod", "ns", name)]
        stored["metadata"]["finalizers"] = [contract.KUEUE_FINALIZER, "example.com/other"]
        if bound:
            stored["spec"]["nodeName"] = "n"
            stored["status"] = pod(1)["status"]
        else:
            gated(stored)
        rt.job_pods.put(copy.deepcopy(stored), group="train")
    live = api.objects[("TrainingJob", "ns", "train")]
    live["spec"]["suspend"] = True
    rt.jobs.put(copy.deepcopy(live))
    run(rt, reconcile_trainingjob, KEY)
    return api


def test_a_deleted_gated_pod_loses_kueues_finalizer_and_keeps_the_others():
    api = _suspend_a_gated_and_a_bound_gang(bound=False)
    for name in ("train-a1-w0", "train-a1-w1"):
        meta = api.objects[("Pod", "ns", name)]["metadata"]
        assert meta["deletionTimestamp"]
        assert meta["finalizers"] == ["example.com/other"]


def test_a_pod_that_ran_keeps_kueues_finalizer_for_kueue():
    api = _suspend_a_gated_and_a_bound_gang(bound=True)
    for name in ("train-a1-w0", "train-a1-w1"):
        meta = api.objects[("Pod", "ns", name)]["metadata"]
        assert meta["deletionTimestamp"]
        assert contract.KUEUE_FINALIZER in meta["finalizers"]
