"""An attempt whose pods cannot all be placed within the operator's unschedulableSeconds
is torn down and retried (reason Unschedulable); pods held by a scheduling gate (Kueue
has not admitted them) are waiting, not unschedulable, and never count."""

from datetime import UTC, datetime, timedelta

from forja_api import conditions as c
from forja_api.v1alpha1.trainingjob import TrainingJobSpec
from forja_operator.status.trainingjob import plan_trainingjob

from .operator_factories import job, pod, with_status

T0 = datetime(2026, 1, 1, 0, 1, 0, tzinfo=UTC)
BOUND = 600
NO_GPU = "0/2 nodes are available: 2 Insufficient nvidia.com/gpu."


def plan(body, pods, now, bound=BOUND):
    spec = TrainingJobSpec.model_validate(body["spec"])
    return plan_trainingjob(body, spec, pods, now, unschedulable_seconds=bound)


def advance(body, p):
    return with_status(body, p.status.to_wire())


def gated(index, **kw):
    """A pod Kueue holds: schedulingGates set, PodScheduled False with SchedulingGated."""
    p = pod(index, **kw)
    p["spec"]["schedulingGates"] = [{"name": "kueue.x-k8s.io/admission"}]
    p["status"] = {
        "phase": "Pending",
        "conditions": [
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": "SchedulingGated",
                "message": "Scheduling is blocked due to non-empty scheduling gates",
            }
        ],
    }
    return p


def started(**spec):
    body = job(**spec)
    return advance(body, plan(body, [], T0))


def test_an_attempt_unschedulable_past_the_bound_is_torn_down_and_retried():
    body = started(resources={"gpus": 8})
    stuck = [pod(1, unschedulable=NO_GPU)]
    p = plan(body, stuck, T0)
    # the clock starts when the operator first sees it; it looks again at the bound
    assert p.status.attempts[-1].unschedulable_since == "2026-01-01T00:01:00Z"
    assert p.requeue_after == BOUND and p.status.phase == "Pending"
    body = advance(body, p)
    # the clock is kept, not restarted, by later passes
    p = plan(body, stuck, T0 + timedelta(seconds=BOUND - 1))
    assert p.status.attempts[-1].end_time is None and p.requeue_after == 1
    assert p.status.attempts[-1].unschedulable_since == "2026-01-01T00:01:00Z"
    body = advance(body, p)

    p = plan(body, stuck, T0 + timedelta(seconds=BOUND))
    ended = p.status.attempts[-1]
    assert ended.reason == c.REASON_UNSCHEDULABLE and ended.end_time is not None
    assert f"pod train-a1 could not be scheduled within {BOUND}s: {NO_GPU}" in ended.message
    assert p.delete_pods == ["train-a1"]
    event = next(e for e in p.events if e.reason == c.REASON_UNSCHEDULABLE)
    assert event.type == "Warning" and NO_GPU in event.message
    assert p.status.phase == "Restarting" and p.create_attempt is None
    body = advance(body, p)

    # the pod going away does not rewrite the ending (nor post it again) ...
    p = plan(body, [pod(1, unschedulable=NO_GPU, deleting=True)], T0 + timedelta(seconds=BOUND))
    assert p.status.attempts[0].reason == c.REASON_UNSCHEDULABLE
    assert p.status.attempts[0].message == ended.message
    assert not [e for e in p.events if e.reason == c.REASON_UNSCHEDULABLE]
    # ... and the next attempt starts at once, from the last checkpoint (none yet)
    assert p.create_attempt is not None and p.create_attempt.index == 2


def test_unschedulable_spends_neither_backoff_nor_preemption_limit():
    body = started(resources={"gpus": 8}, restartPolicy={"backoffLimit": 0, "preemptionLimit": 0})
    now = T0
    for index in range(1, 5):
        stuck = [pod(index, unschedulable=NO_GPU)]
        body = advance(body, plan(body, stuck, now))
        now += timedelta(seconds=BOUND)
        body = advance(body, plan(body, stuck, now))
        assert body["status"]["attempts"][-1]["reason"] == c.REASON_UNSCHEDULABLE
        p = plan(body, [], now)
        assert p.create_attempt is not None and p.create_attempt.index == index + 1, p.status
        assert p.status.phase != "Failed"
        body = advance(body, p)


def test_a_gang_with_one_unplaceable_worker_is_stopped_whole_then_retried_whole():
    body = started(workers=2)
    running = pod(1, rank=0, world=2, node="node-0")
    stuck = pod(1, rank=1, world=2, unschedulable=NO_GPU)
    body = advance(body, plan(body, [running, stuck], T0))
    p = plan(body, [running, stuck], T0 + timedelta(seconds=BOUND + 5))
    assert sorted(p.delete_pods) == ["train-a1-w0", "train-a1-w1"]
    assert "pod train-a1-w1 could not be scheduled" in p.status.attempts[-1].message
    body = advance(body, p)
    # rank 0 still stopping: the next attempt waits for it (it may be writing a checkpoint)
    p = plan(body, [pod(1, rank=0, world=2, node="node-0", deleting=True)], T0 + timedelta(
        seconds=BOUND + 6))
    assert p.create_attempt is None
    body = advance(body, p)
    p = plan(body, [], T0 + timedelta(seconds=BOUND + 30))
    assert p.create_attempt is not None and p.create_attempt.workers == 2
    assert p.create_attempt.index == 2


def test_gated_pods_wait_for_admission_and_never_count():
    body = started(workers=2)
    waiting = [gated(1, rank=0, world=2), gated(1, rank=1, world=2)]
    for seconds in (0, BOUND, 10 * BOUND):
        p = plan(body, waiting, T0 + timedelta(seconds=seconds))
        att = p.status.attempts[-1]
        assert att.end_time is None and att.unschedulable_since is None
        assert att.reason == "WaitingForAdmission"  # open, and said why
        assert p.delete_pods == [] and p.create_attempt is None
        body = advance(body, p)
    # admitted after an hour of waiting: the clock starts only now
    admitted = T0 + timedelta(hours=1)
    stuck = [pod(1, rank=r, world=2, unschedulable=NO_GPU) for r in (0, 1)]
    p = plan(body, stuck, admitted)
    assert p.status.attempts[-1].unschedulable_since == "2026-01-01T01:01:00Z"
    assert p.delete_pods == [] and p.requeue_after == BOUND


def test_a_pod_placed_in_time_stops_the_clock():
    body = started()
    body = advance(body, plan(body, [pod(1, unschedulable=NO_GPU)], T0))
    p = plan(body, [pod(1)], T0 + timedelta(seconds=BOUND - 10))
    assert p.status.phase == "Running" and p.status.attempts[-1].unschedulable_since is None
    body = advance(body, p)
    p = plan(body, [pod(1)], T0 + timedelta(seconds=BOUND + 10))
    assert p.delete_pods == [] and p.status.attempts[-1].end_time is None


def test_bound_zero_waits_forever():
    body = started()
    stuck = [pod(1, unschedulable=NO_GPU)]
    body = advance(body, plan(body, stuck, T0, bound=0))
    p = plan(body, stuck, T0 + timedelta(days=1), bound=0)
    assert p.delete_pods == [] and p.status.attempts[-1].end_time is None
    assert p.status.phase == "Pending" and p.requeue_after is None
