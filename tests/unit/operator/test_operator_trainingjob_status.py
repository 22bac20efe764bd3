from datetime import UTC, datetime, timedelta

from forja_api import conditions as c
from forja_api import contract
from forja_api.v1alpha1.trainingjob import TrainingJobSpec
from forja_operator.status.trainingjob import plan_trainingjob

from .operator_factories import job, ok_result, pod, with_status

NOW = datetime(2026, 1, 1, 0, 10, 30, tzinfo=UTC)


def plan(body, pods, now=NOW):
    return plan_trainingjob(body, TrainingJobSpec.model_validate(body["spec"]), pods, now)


def advance(body, p):
    return with_status(body, p.status.to_wire())


def test_new_job_creates_attempt_one_then_runs_with_progress():
    body = job()
    p = plan(body, [])
    assert p.create_attempt is not None and p.create_attempt.index == 1
    assert p.status.phase == "Pending"
    body = advance(body, p)
    prog = contract.Progress(
        epoch=1,
        total_epochs=3,
        metrics={"loss": 0.5},
        checkpoint=contract.CheckpointRef(uri="s3://x/last.pt", epoch=1),
    )
    p = plan(body, [pod(1, progress=prog)])
    assert p.create_attempt is None
    assert p.status.phase == "Running"
    assert p.status.progress.percent == 33
    assert p.status.last_checkpoint.uri == "s3://x/last.pt"
    assert any(
        x.type == c.RUNNING and x.status == "True" and x.observed_generation == 1
        for x in p.status.conditions
    )
    assert [e.reason for e in p.events] == ["Running"]
    # Same observation again: nothing new to say.
    assert plan(advance(body, p), [pod(1, progress=prog)]).events == []


def test_success_asks_for_a_version_and_ttl_waits_for_it():
    body = advance(job(ttlSecondsAfterFinished=0), plan(job(), []))
    p = plan(body, [pod(1, "Succeeded", 0, result=ok_result())])
    assert p.status.phase == "Succeeded"
    assert p.create_version is not None and p.create_version.artifact.sha256 == "a" * 64
    assert not p.delete_job
    status = p.status.to_wire() | {"modelVersion": "detector-v0.1.0"}
    p = plan(with_status(body, status), [pod(1, "Succeeded", 0, result=ok_result())])
    assert p.create_version is None and p.delete_job


def test_oom_resumes_from_checkpoint_with_half_batch_after_backoff():
    body = advance(job(), plan(job(), []))
    prog = contract.Progress(
        epoch=1, total_epochs=3, checkpoint=contract.CheckpointRef(uri="s3://c/last.pt", epoch=1)
    )
    oom = pod(1, "Failed", 137, reason="OOMKilled", progress=prog)
    p = plan(body, [oom], now=datetime(2026, 1, 1, 0, 10, 5, tzinfo=UTC))
    assert p.status.phase == "Restarting" and p.create_attempt is None
    assert 0 < p.requeue_after <= 10
    assert p.status.attempts[0].reason == c.REASON_OOM_KILLED
    body = advance(body, p)
    p = plan(body, [oom], now=NOW)
    assert p.create_attempt.index == 2
    assert p.create_attempt.overrides == {"batch_size": 16}
    assert p.create_attempt.resume_from == "s3://c/last.pt"
    assert any('"batch_size": 16' in e.message for e in p.events)


def test_permanent_exit_fails_with_trainers_message():
    body = advance(job(), plan(job(), []))
    res = contract.Result(
        ok=False, reason="InvalidDataset", message="dataset.uri: no images under s3://data/set"
    )
    p = plan(body, [pod(1, "Failed", 3, result=res)])
    assert p.status.phase == "Failed" and p.create_attempt is None
    assert p.status.message == "dataset.uri: no images under s3://data/set"
    assert p.status.attempts[0].reason == "InvalidDataset"
    assert any(x.type == c.FAILED and x.reason == "InvalidDataset" for x in p.status.conditions)


def test_backoff_limit_exceeded():
    body = advance(job(restartPolicy={"backoffLimit": 1, "backoffSeconds": 0}), plan(job(), []))
    p = plan(body, [pod(1, "Failed", 1), pod(2, "Failed", 1)])
    assert p.status.phase == "Failed"
    assert any(x.reason == c.REASON_BACKOFF_LIMIT_EXCEEDED for x in p.status.conditions)


def test_unschedulable_is_shown_while_pending():
    body = advance(job(resources={"gpus": 1}), plan(job(), []))
    p = plan(
        body, [pod(1, unschedulable="0/1 nodes are available: 1 Insufficient nvidia.com/gpu.")]
    )
    assert p.status.phase == "Pending"
    assert p.status.attempts[0].reason == c.REASON_UNSCHEDULABLE
    assert "Insufficient nvidia.com/gpu" in p.status.message


def test_suspend_deletes_pod_then_resume_starts_next_attempt_from_checkpoint():
    body = advance(job(), plan(job(), []))
    prog = contract.Progress(
        epoch=2, total_epochs=3, checkpoint=contract.CheckpointRef(uri="s3://c/last.pt", epoch=2)
    )
    body = advance(body, plan(body, [pod(1, progress=prog)]))
    body["spec"]["suspend"] = True
    p = plan(body, [pod(1, progress=prog)])
    assert p.delete_pods == ["train-a1"] and p.status.phase == "Suspended"
    body = advance(body, p)
    # The pod is gone; the attempt stays Suspended, not Preempted.
    p = plan(body, [])
    assert p.status.attempts[0].reason == c.REASON_SUSPENDED and p.create_attempt is None
    body = advance(body, p)
    body["spec"]["suspend"] = False
    p = plan(body, [])
    assert p.create_attempt.index == 2 and p.create_attempt.resume_from == "s3://c/last.pt"


def test_deadline_fails_and_deletes_running_pod():
    body = advance(job(activeDeadlineSeconds=60), plan(job(activeDeadlineSeconds=60), [], now=NOW))
    p = plan(body, [pod(1)], now=NOW + timedelta(seconds=61))
    assert p.status.phase == "Failed" and p.delete_pods == ["train-a1"]
    assert p.status.attempts[0].reason == c.REASON_DEADLINE_EXCEEDED


def test_deleted_pod_counts_as_preempted_and_is_retried():
    body = advance(job(), plan(job(), []))
    body = advance(body, plan(body, [pod(1)]))
    p = plan(body, [])
    assert p.status.attempts[0].reason == c.REASON_PREEMPTED
    # The attempt ended now, so the retry waits for the 10 s backoff.
    assert p.create_attempt is None and p.status.phase == "Restarting"
    assert p.requeue_after == 10
    p = plan(advance(body, p), [], now=NOW + timedelta(seconds=11))
    assert p.create_attempt.index == 2


def test_evicted_and_disruption_reasons():
    body = advance(job(), plan(job(), []))
    p = plan(body, [pod(1, "Failed", 137, pod_reason="Evicted")])
    assert p.status.attempts[0].reason == c.REASON_EVICTED
