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


def test_the_pretrained_weights_read_are_recorded_and_an_unpinned_file_warned():
    digest = "e" * 64
    loaded = contract.PretrainedRef(uri="s3://models/donor.pth", sha256=digest)
    result = ok_result().model_copy(update={"pretrained": loaded})
    unpinned = job(pretrained={"uri": "s3://models/donor.pth"})
    p = plan(advance(unpinned, plan(unpinned, [])), [pod(1, "Succeeded", 0, result=result)])
    assert p.status.phase == "Succeeded"
    assert p.status.to_wire()["pretrained"] == {
        "uri": "s3://models/donor.pth",
        "sha256": digest,
        "pinned": False,
    }
    warned = [e for e in p.events if e.reason == c.REASON_PRETRAINED_UNPINNED]
    assert len(warned) == 1 and digest in warned[0].message and warned[0].type == "Warning"
    pinned = job(pretrained={"uri": "s3://models/donor.pth", "sha256": digest})
    p = plan(advance(pinned, plan(pinned, [])), [pod(1, "Succeeded", 0, result=result)])
    assert p.status.pretrained is not None and p.status.pretrained.pinned
    assert not [e for e in p.events if e.reason == c.REASON_PRETRAINED_UNPINNED]


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


def _lost_with_its_node(body_pod):
    """A running pod the taint manager evicted from a node that stopped reporting: the
    kubelet is gone, so its phase stays Running and it stays Terminating."""
    body_pod["metadata"]["deletionTimestamp"] = "2026-01-01T00:09:00Z"
    body_pod["spec"] = {"nodeName": "node-b"}
    body_pod["status"]["conditions"] = [
        {
            "type": "DisruptionTarget",
            "status": "True",
            "reason": "DeletionByTaintManager",
            "message": "Taint manager: deleting due to NoExecute taint",
        }
    ]
    return body_pod


def test_a_pod_lost_with_its_node_ends_its_attempt_and_the_job_resumes_elsewhere():
    prog = contract.Progress(
        epoch=2, total_epochs=5, checkpoint=contract.CheckpointRef(uri="s3://c/last.pt", epoch=2)
    )
    body = advance(job(), plan(job(), []))
    body = advance(body, plan(body, [pod(1, progress=prog)]))
    lost = _lost_with_its_node(pod(1, progress=prog))
    p = plan(body, [lost])
    first = p.status.attempts[0]
    assert first.reason == c.REASON_NODE_LOST and first.end_time is not None
    assert "node-b stopped reporting" in first.message
    assert p.status.phase == "Restarting" and p.create_attempt is None
    assert any(e.reason == c.REASON_NODE_LOST for e in p.events)
    # The lost pod never goes away on its own; the next attempt does not wait for it.
    p = plan(advance(body, p), [lost], now=NOW + timedelta(seconds=11))
    assert p.create_attempt.index == 2 and p.create_attempt.resume_from == "s3://c/last.pt"
    assert "train-a1" not in p.delete_pods
    # A disruption: preemptionLimit counts it, backoffLimit does not.
    spent = advance(body, p)
    over = job(restartPolicy={"backoffLimit": 0, "preemptionLimit": 5, "backoffSeconds": 10})
    assert plan(with_status(over, spent["status"]), [lost], now=NOW).status.phase != "Failed"


def test_a_terminating_pod_on_a_healthy_node_is_still_waited_for():
    body = advance(job(), plan(job(), []))
    body = advance(body, plan(body, [pod(1)]))
    p = plan(body, [pod(1, deleting=True)])
    assert p.status.attempts[0].end_time is None and p.create_attempt is None


def test_evicted_and_disruption_reasons():
    body = advance(job(), plan(job(), []))
    p = plan(body, [pod(1, "Failed", 137, pod_reason="Evicted")])
    assert p.status.attempts[0].reason == c.REASON_EVICTED


def test_a_created_attempt_is_listed_in_the_same_plan():
    # The reconciler plans once: the status it patches already names the new pod.
    p = plan(job(), [])
    assert [(a.index, a.pod, a.end_time) for a in p.status.attempts] == [(1, "train-a1", None)]
    again = plan(advance(job(), p), [pod(1, "Pending")])
    assert again.create_attempt is None and again.status.phase == "Pending"


def test_rules_answer_in_order_and_each_gets_its_own_status():
    from forja_operator.status.trainingjob import RULES, observe

    body = advance(job(), plan(job(), []))
    obs = observe(body, TrainingJobSpec.model_validate(body["spec"]), [pod(1)], NOW)
    answers = [r.__name__ for r in RULES if r(obs, obs.observed.model_copy(deep=True))]
    assert answers[0] == "attempt_open"
    assert obs.observed.phase == "Pending"  # no rule wrote into the observation


def _oom_with_checkpoint(uri: str) -> tuple[dict, list]:
    body = advance(job(), plan(job(), []))
    ref = contract.CheckpointRef(uri=uri, epoch=1, sha256="c" * 64)
    oom = pod(1, "Failed", 137, reason="OOMKilled", progress=contract.Progress(checkpoint=ref))
    body = advance(body, plan(body, [oom], now=datetime(2026, 1, 1, 0, 10, 5, tzinfo=UTC)))
    return body, [oom]


def test_the_next_attempt_gets_the_recorded_checkpoint_digest():
    body, pods = _oom_with_checkpoint("s3://forja/ns/train/checkpoints/last.pt")
    p = plan_trainingjob(
        body, TrainingJobSpec.model_validate(body["spec"]), pods, NOW, checkpoint_prefix="s3://forja/ns/train/checkpoints/"
    )
    assert p.create_attempt.resume_from == "s3://forja/ns/train/checkpoints/last.pt"
    assert p.create_attempt.resume_sha256 == "c" * 64


def test_a_resume_point_outside_the_jobs_checkpoints_fails_the_job_for_good():
    for uri in (
        "s3://forja/ns/other-job/checkpoints/last.pt",
        "s3://forja/ns/train/checkpoints/../../other-job/checkpoints/last.pt",
    ):
        body, pods = _oom_with_checkpoint(uri)
        p = plan_trainingjob(
            body, TrainingJobSpec.model_validate(body["spec"]), pods, NOW, checkpoint_prefix="s3://forja/ns/train/checkpoints/"
        )
        assert p.create_attempt is None and p.status.phase == "Failed"
        failed = next(x for x in p.status.conditions if x.type == c.FAILED)
        assert failed.reason == c.REASON_CHECKPOINT_REFUSED and uri in failed.message


def test_a_nan_or_inf_metric_never_turns_a_finished_job_into_failed():
    body = advance(job(), plan(job(), []))
    res = ok_result()
    res.metrics = {"accuracy": 0.9, "val_loss": float("nan"), "ratio": float("inf")}
    done = pod(1, "Succeeded", 0, result=res)
    p = plan(body, [done])
    assert p.status.phase == "Succeeded"
    assert p.create_version is not None and p.create_version.metrics == {"accuracy": 0.9}
    # A message written by an older trainer, where NaN became null, parses too.
    term = done["status"]["containerStatuses"][0]["state"]["terminated"]
    term["message"] = term["message"].replace('"accuracy":0.9', '"accuracy":0.9,"loss":null')
    assert '"loss":null' in term["message"]
    assert plan(body, [done]).status.phase == "Succeeded"


def test_the_condition_that_ends_a_job_carries_the_last_attempts_message():
    body = advance(job(restartPolicy={"backoffLimit": 1, "backoffSeconds": 0}), plan(job(), []))
    res = contract.Result(ok=False, reason="Retryable", message="store answered 503 on x.pt")
    p = plan(body, [pod(1, "Failed", 1), pod(2, "Failed", 1, result=res)])
    failed = next(x for x in p.status.conditions if x.type == c.FAILED)
    assert failed.reason == c.REASON_BACKOFF_LIMIT_EXCEEDED
    assert "store answered 503 on x.pt" in failed.message and "Error" in failed.message


def test_preemptions_have_their_own_budget_apart_from_backoff_limit():
    policy = {"backoffLimit": 0, "preemptionLimit": 2, "backoffSeconds": 0}
    body = advance(job(restartPolicy=policy), plan(job(restartPolicy=policy), []))
    evicted = [pod(i, "Failed", 137, pod_reason="Evicted") for i in (1, 2)]
    p = plan(body, evicted)
    # Two evictions with backoffLimit 0: still retried, as the next attempt.
    assert p.status.phase != "Failed" and p.create_attempt is not None
    assert p.create_attempt.index == 3
    p = plan(body, [*evicted, pod(3, "Failed", 137, pod_reason="Evicted")])
    assert p.status.phase == "Failed"
    failed = next(x for x in p.status.conditions if x.type == c.FAILED)
    assert failed.reason == c.REASON_PREEMPTION_LIMIT_EXCEEDED
