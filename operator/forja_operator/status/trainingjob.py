"""What a TrainingJob's status is and what to do next, from what is observed. Pure.

Inputs are the job (spec, previous status) and its attempt pods; the output is a
:class:`JobPlan`: the whole new status, the pod to create or delete, the events
to record and when to look again. The reconciler applies it; nothing here talks
to the API server, so every rule is unit-tested on plain dicts.

Planning is two steps. :func:`observe` reads the pods and the previous status once
into an :class:`Observation` (attempts, progress, checkpoint, start time, the
deadline). Then the :data:`RULES` are asked in order, each a small function
``(observation, status) -> JobPlan | None`` that answers only for its situation
(terminal, past the deadline, suspended, an attempt running, no attempt yet, the
last attempt ended); the first answer is the plan. Each rule gets its own copy of
the observed status, so one that does not answer leaves no trace.

The previous status matters only for what can no longer be observed: attempts
whose pod was deleted, decisions the operator took (suspend, deadline), the
ModelVersion it created, and transition times.

A multi-worker attempt (spec.workers > 1) is one gang: its pods are merged into one
view (:func:`~forja_operator.status.attempt_pod.gang_view`), so every rule reads it
as one pod. What is particular to a gang is stopping it whole: a rule that stops an
attempt stops every live worker, the workers still running when another one ended
are deleted, and the next attempt starts only once all of them have ended (a rank 0
still writing its checkpoint must not race the next attempt reading it).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from forja_api import conditions as c
from forja_api import contract
from forja_api.v1alpha1.trainingjob import (
    Attempt,
    CheckpointStatus,
    OnOOM,
    Phase,
    PretrainedStatus,
    ProgressStatus,
    TrainingJobSpec,
    TrainingJobStatus,
    WorkerStatus,
)
from forja_operator.builders.attempt import attempt_pod_names
from forja_operator.controller.clock import parse_rfc3339, timestamp
from forja_operator.controller.conditions import set_condition
from forja_operator.controller.events import Event
from forja_operator.controller.ownership import awaiting_collection, is_controlled_by
from forja_operator.status.attempt_pod import PodView, classify_pod, gang_view

__all__ = [
    "MAX_BACKOFF_SECONDS",
    "RULES",
    "JobPlan",
    "NewAttempt",
    "Observation",
    "observe",
    "plan_trainingjob",
]

MAX_BACKOFF_SECONDS = 300
TERMINAL = (Phase.SUCCEEDED, Phase.FAILED)
# Endings the operator chose itself; a pod's own exit (143 after SIGTERM) must not overwrite them.
OPERATOR_ENDINGS = (c.REASON_SUSPENDED, c.REASON_DEADLINE_EXCEEDED)
RETRYABLE = (
    c.REASON_UNSCHEDULABLE,
    c.REASON_OOM_KILLED,
    c.REASON_EVICTED,
    c.REASON_PREEMPTED,
    c.REASON_NODE_LOST,
    c.REASON_ERROR,
)
# Endings the job did not cause: counted against preemptionLimit, not backoffLimit.
DISRUPTIONS = (c.REASON_EVICTED, c.REASON_PREEMPTED, c.REASON_NODE_LOST)
# Endings that cost no work (no pod ever ran): counted against neither budget.
UNCOUNTED = (c.REASON_UNSCHEDULABLE,)


@dataclass(frozen=True)
class NewAttempt:
    index: int
    overrides: dict[str, Any]
    resume_from: str | None
    deadline_seconds: int | None
    resume_sha256: str | None = None
    workers: int = 1


@dataclass
class JobPlan:
    status: TrainingJobStatus
    create_attempt: NewAttempt | None = None
    delete_pods: list[str] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    requeue_after: float | None = None
    """Look again after this many seconds even if nothing changes (backoff, deadline, TTL)."""
    create_version: contract.Result | None = None
    """The job succeeded with this result and has no ModelVersion yet."""
    delete_job: bool = False
    """ttlSecondsAfterFinished has passed."""


def _retryable(reason: str | None) -> bool:
    return reason in RETRYABLE


# --- observation ------------------------------------------------------------------


@dataclass(frozen=True)
class Observation:
    """The job and its pods, read once; what every rule decides from."""

    name: str
    generation: int | None
    spec: TrainingJobSpec
    prev: TrainingJobStatus
    """The status as last written."""
    observed: TrainingJobStatus
    """The status with what the pods say now, before any decision."""
    views: Mapping[int, PodView]
    now: datetime
    endings: tuple[Event, ...]
    """One event per attempt seen ending for the first time."""
    deadline_left: float | None
    """Seconds until activeDeadlineSeconds (None: no deadline running)."""
    strangers: tuple[str, ...] = ()
    """Pods named as one of this job's attempts that the job does not control."""
    checkpoint_prefix: str | None = None
    """Where this job's checkpoints live; a resume point elsewhere is refused."""
    unschedulable_seconds: float | None = None
    """How long an attempt may have a pod the scheduler cannot place (None: forever)."""

    @property
    def now_s(self) -> str:
        return timestamp(self.now)

    @property
    def current(self) -> Attempt | None:
        return self.observed.attempts[-1] if self.observed.attempts else None

    @property
    def view(self) -> PodView | None:
        cur = self.current
        return self.views.get(cur.index) if cur else None

    @property
    def running_pod(self) -> PodView | None:
        """The current attempt's pod while it has not ended."""
        view = self.view
        return view if view is not None and not view.ended else None

    def condition(
        self, status: TrainingJobStatus, ctype: str, ok: bool, reason: str, message: str
    ) -> None:
        """set_condition with this observation's generation and time."""
        set_condition(status.conditions, ctype, ok, reason, message, self.generation, self.now_s)


def _ended_by_operator(att: Attempt | None) -> bool:
    """An ending the operator decided, which the pods' own endings must not overwrite."""
    if att is None:
        return False
    return att.reason in OPERATOR_ENDINGS or (
        att.reason == c.REASON_UNSCHEDULABLE and att.end_time is not None
    )


def _attempt_from_pod(view: PodView) -> Attempt:
    return Attempt(
        index=view.index,
        pod=view.name,
        start_time=view.start_time,
        end_time=(view.end_time or None) if view.ended else None,
        reason=view.reason if view.ended else _open_reason(view),
        exit_code=view.exit_code if view.ended else None,
        message=view.message if view.ended else (view.unschedulable or _admission(view)),
        overrides=view.overrides,
        resumed_from=view.resumed_from,
    )


def _open_reason(view: PodView) -> str | None:
    if view.unschedulable:
        return c.REASON_UNSCHEDULABLE
    return c.REASON_WAITING_FOR_ADMISSION if view.gates else None


def _admission(view: PodView) -> str | None:
    """What an attempt whose pods are gated waits for (Kueue's gate: admission)."""
    if not view.gates:
        return None
    return f"waiting for admission (scheduling gates: {', '.join(view.gates)})"


def _merge_attempts(
    prev: list[Attempt], views: Mapping[int, PodView], now_s: str, strangers: frozenset[str]
) -> list[Attempt]:
    attempts: dict[int, Attempt] = {a.index: a for a in prev}
    for index, pv in views.items():
        fresh = _attempt_from_pod(pv)
        old = attempts.get(index)
        if pv.members and old is not None and old.end_time is not None:
            continue  # a gang's ending, once recorded, is not re-decided by its stragglers
        if not pv.ended and pv.unschedulable:
            # The clock starts when the operator first sees it (a pod's PodScheduled
            # transition time may date from a scheduling gate: no time of Kueue's counts).
            since = (old.unschedulable_since if old else None) or now_s
            fresh = fresh.model_copy(update={"unschedulable_since": since})
        if _ended_by_operator(old):
            assert old is not None
            fresh = fresh.model_copy(
                update={
                    "reason": old.reason,
                    "message": old.message,
                    "end_time": old.end_time or fresh.end_time,
                    "unschedulable_since": old.unschedulable_since,
                }
            )
        if pv.ended and fresh.end_time is None:
            fresh = fresh.model_copy(update={"end_time": (old.end_time if old else None) or now_s})
        attempts[index] = fresh
    # An attempt still open in status whose pod is gone was deleted by someone
    # else (preemption, node drain, a person): retryable.
    # (A name held by a stranger is decided by the stranger_pod rule instead.)
    for index, att in list(attempts.items()):
        if index not in views and att.end_time is None and att.pod not in strangers:
            if att.reason in OPERATOR_ENDINGS:
                attempts[index] = att.model_copy(update={"end_time": now_s})
            else:
                attempts[index] = att.model_copy(
                    update={
                        "end_time": now_s,
                        "reason": c.REASON_PREEMPTED,
                        "message": f"pod {att.pod} was deleted before it finished",
                    }
                )
    return [attempts[i] for i in sorted(attempts)]


def _record_progress(status: TrainingJobStatus, view: PodView | None) -> None:
    """Progress and checkpoints, from the newest report."""
    if view is None:
        return
    if p := view.progress:
        status.progress = ProgressStatus(
            epoch=p.epoch,
            total_epochs=p.total_epochs,
            percent=p.percent,
            step=p.step,
            metrics=p.metrics,
            eta_seconds=p.eta_seconds,
            updated_at=p.updated_at,
        )
    for ckpt in (
        view.progress.checkpoint if view.progress else None,
        view.result.checkpoint if view.result else None,
    ):
        if ckpt and (status.last_checkpoint is None or ckpt.epoch >= status.last_checkpoint.epoch):
            status.last_checkpoint = CheckpointStatus(
                uri=ckpt.uri, epoch=ckpt.epoch, sha256=ckpt.sha256
            )


def _ending_events(prev: list[Attempt], now: list[Attempt]) -> tuple[Event, ...]:
    before = {a.index: a for a in prev}
    events = []
    for att in now:
        old = before.get(att.index)
        if (
            att.end_time
            and (old is None or old.end_time is None)
            and att.reason != c.REASON_COMPLETED
        ):
            events.append(
                Event(
                    "Warning",
                    att.reason or c.REASON_ERROR,
                    f"attempt {att.index} ended: {att.reason}"
                    + (f" (exit code {att.exit_code})" if att.exit_code is not None else "")
                    + (f": {att.message}" if att.message else ""),
                )
            )
    return tuple(events)


def _views(name: str, pods: list[dict[str, Any]]) -> dict[int, PodView]:
    """One view per attempt: its pod's, or its gang's merged from the workers'."""
    by_index: dict[int, list[PodView]] = {}
    for view in (classify_pod(p) for p in pods):
        by_index.setdefault(view.index, []).append(view)
    views = {}
    for index, group in by_index.items():
        if any(v.rank is not None for v in group):
            views[index] = gang_view(name, index, [v for v in group if v.rank is not None])
        else:
            views[index] = group[0]
    return views


def _workers(view: PodView, before: list[WorkerStatus]) -> list[WorkerStatus]:
    """The current attempt's pods by rank, as status.workers shows them. A pod that is
    gone keeps the node it ran on (from ``before``): where it was is what a user asks."""
    members = view.members or (view,)
    shown = [
        WorkerStatus(rank=m.rank or 0, pod=m.name, node=m.node, phase=m.phase) for m in members
    ]
    ranks = {m.rank for m in view.members}
    missing = [r for r in range(view.world_size) if view.members and r not in ranks]
    nodes = {w.pod: w.node for w in before}
    shown += [
        WorkerStatus(rank=r, pod=name, node=nodes.get(name), phase="Missing")
        for r, name in zip(missing, view.missing, strict=True)
    ]
    return sorted(shown, key=lambda w: w.rank)


def observe(
    job: dict[str, Any],
    spec: TrainingJobSpec,
    pods: list[dict[str, Any]],
    now: datetime,
    checkpoint_prefix: str | None = None,
    *,
    unschedulable_seconds: float | None = None,
) -> Observation:
    """Read the job's previous status and its attempt pods into one Observation.

    Only pods whose controller reference is this job are read; a pod that merely has
    an attempt's name (made by someone else before the operator could) is a stranger.
    """
    meta = job["metadata"]
    strangers = [
        p["metadata"]["name"]
        for p in pods
        if not is_controlled_by(p, job) and not awaiting_collection(p, job)
    ]
    pods = [p for p in pods if is_controlled_by(p, job)]
    generation = meta.get("generation")
    now_s = timestamp(now)
    prev = TrainingJobStatus.model_validate(job.get("status") or {})
    status = prev.model_copy(deep=True)
    status.observed_generation = generation
    views = _views(meta["name"], pods)
    status.attempts = _merge_attempts(prev.attempts, views, now_s, frozenset(strangers))
    current = status.attempts[-1] if status.attempts else None
    current_view = views.get(current.index) if current else None
    _record_progress(status, current_view)
    if current_view is not None:
        status.workers = _workers(current_view, prev.workers)
    if status.start_time is None and not spec.suspend:
        status.start_time = now_s
    if not spec.suspend and any(
        x.type == c.SUSPENDED and x.status == "True" for x in status.conditions
    ):
        set_condition(
            status.conditions, c.SUSPENDED, False, "Resumed", "resumed", generation, now_s
        )
    deadline_left = None
    started = parse_rfc3339(status.start_time)
    if spec.active_deadline_seconds and started and not spec.suspend:
        deadline = started + timedelta(seconds=spec.active_deadline_seconds)
        deadline_left = (deadline - now).total_seconds()
    return Observation(
        name=meta["name"],
        generation=generation,
        spec=spec,
        prev=prev,
        observed=status,
        views=views,
        now=now,
        endings=_ending_events(prev.attempts, status.attempts),
        deadline_left=deadline_left,
        checkpoint_prefix=checkpoint_prefix,
        strangers=_known_strangers(status, strangers),
        unschedulable_seconds=unschedulable_seconds or None,
    )


def _known_strangers(status: TrainingJobStatus, strangers: list[str]) -> tuple[str, ...]:
    """The strangers holding a name of this job's attempts (any worker of the current one)."""
    known = [a.pod for a in status.attempts if a.pod is not None]
    known += [w.pod for w in status.workers]
    return tuple(dict.fromkeys(p for p in known if p in strangers))


# --- what every rule shares --------------------------------------------------------


def _plan(obs: Observation, status: TrainingJobStatus) -> JobPlan:
    """A plan that looks again when the deadline passes."""
    return JobPlan(status=status, requeue_after=obs.deadline_left)


def _transition(
    obs: Observation, plan: JobPlan, phase: Phase, message: str | None, event: Event | None
) -> None:
    if event and (phase != obs.prev.phase or message != obs.prev.message):
        plan.events.append(event)
    plan.status.phase = phase
    plan.status.message = message


def _finish(obs: Observation, plan: JobPlan, phase: Phase, reason: str, message: str) -> None:
    status = plan.status
    status.completion_time = status.completion_time or obs.now_s
    ok = phase == Phase.SUCCEEDED
    _transition(obs, plan, phase, message, Event("Normal" if ok else "Warning", reason, message))
    obs.condition(status, c.SUCCEEDED if ok else c.FAILED, True, reason, message)
    obs.condition(status, c.RUNNING, False, reason, message)


def _versioning_and_ttl(obs: Observation, plan: JobPlan) -> None:
    status, view = plan.status, obs.view
    if status.phase == Phase.SUCCEEDED and status.model_version is None:
        if view and view.result and view.result.artifact:
            plan.create_version = view.result
        return  # never expire a job before its version is recorded
    ttl = obs.spec.ttl_seconds_after_finished
    done = parse_rfc3339(status.completion_time)
    if ttl is not None and done is not None:
        left = (done + timedelta(seconds=ttl) - obs.now).total_seconds()
        if left <= 0:
            plan.delete_job = True
        else:
            plan.requeue_after = left


def _deadline_seconds(obs: Observation) -> int | None:
    """What is left of the deadline, for the new pod's activeDeadlineSeconds."""
    return None if obs.deadline_left is None else int(obs.deadline_left) + 1


def _start_attempt(
    obs: Observation, status: TrainingJobStatus, new: NewAttempt, events: list[Event]
) -> JobPlan:
    """Create attempt ``new``; the status lists it as its pod's first watch event will.

    So the one status patch already names the attempt, and the pod's ADDED event
    finds nothing left to write.
    """
    pods = attempt_pod_names(obs.name, new.index, new.workers)
    status.attempts.append(
        Attempt(
            index=new.index,
            pod=pods[0],
            start_time=obs.now_s,
            overrides=new.overrides,
            resumed_from=new.resume_from,
        )
    )
    status.workers = [WorkerStatus(rank=r, pod=p, phase="Pending") for r, p in enumerate(pods)]
    status.phase = Phase.RESTARTING if obs.prev.phase == Phase.RESTARTING else Phase.PENDING
    obs.condition(status, c.RESTARTING, False, "AttemptStarted", "")
    plan = _plan(obs, status)
    plan.create_attempt = new
    plan.events.extend(events)
    return plan


def _stoppable(view: PodView) -> list[str]:
    """The attempt's pods to delete to stop it: those not ended nor already going."""
    members = view.members or (view,)
    return [m.name for m in members if not m.ended and not m.terminating]


# --- the rules, in the order they are asked -----------------------------------------


def after_terminal(obs: Observation, status: TrainingJobStatus) -> JobPlan | None:
    """A finished job: only versioning and TTL remain (and a stray pod goes)."""
    if obs.prev.phase not in TERMINAL:
        return None
    plan = JobPlan(status=status)
    status.phase = obs.prev.phase
    pod = obs.running_pod
    if pod is not None:
        plan.delete_pods.extend(_stoppable(pod))
    _versioning_and_ttl(obs, plan)
    return plan


def stranger_pod(obs: Observation, status: TrainingJobStatus) -> JobPlan | None:
    """An attempt's name is held by a pod this job does not control: fail, read nothing.

    Its termination message or progress could be anyone's; the job cannot go on
    under that name, and retrying under another would hide the collision.
    """
    if not obs.strangers:
        return None
    plan = JobPlan(status=status)
    pod = obs.strangers[0]
    for i, att in enumerate(status.attempts):
        if att.pod == pod:
            status.attempts[i] = att.model_copy(
                update={
                    "reason": c.REASON_POD_NOT_OWNED,
                    "end_time": att.end_time or obs.now_s,
                    "exit_code": None,
                    "message": f"pod {pod} is not controlled by this TrainingJob",
                }
            )
    _finish(
        obs,
        plan,
        Phase.FAILED,
        c.REASON_POD_NOT_OWNED,
        f"pod {pod} has this job's attempt name but is not controlled by it (no owner "
        "reference to this TrainingJob's uid): it is not trusted. Delete that pod and "
        "create the job again.",
    )
    return plan


def past_deadline(obs: Observation, status: TrainingJobStatus) -> JobPlan | None:
    """activeDeadlineSeconds passed (reset on resume, as batch/v1): fail, stop the pod."""
    if obs.deadline_left is None or obs.deadline_left > 0:
        return None
    plan = JobPlan(status=status)
    pod, current = obs.running_pod, obs.current
    if pod is not None and current is not None:
        plan.delete_pods.extend(pod.live_pods())
        status.attempts[-1] = current.model_copy(
            update={"reason": c.REASON_DEADLINE_EXCEEDED, "end_time": obs.now_s}
        )
    _finish(
        obs,
        plan,
        Phase.FAILED,
        c.REASON_DEADLINE_EXCEEDED,
        f"activeDeadlineSeconds ({obs.spec.active_deadline_seconds}s) exceeded",
    )
    _versioning_and_ttl(obs, plan)
    return plan


def suspended(obs: Observation, status: TrainingJobStatus) -> JobPlan | None:
    """spec.suspend: stop the running pod, keep checkpoints, stop the deadline clock."""
    if not obs.spec.suspend:
        return None
    plan = JobPlan(status=status)
    pod, current = obs.running_pod, obs.current
    if pod is not None and current is not None:
        plan.delete_pods.extend(_stoppable(pod))
        status.attempts[-1] = current.model_copy(update={"reason": c.REASON_SUSPENDED})
    status.start_time = None
    msg = "suspended; checkpoints are kept and the job resumes when spec.suspend is false"
    _transition(obs, plan, Phase.SUSPENDED, msg, Event("Normal", c.REASON_SUSPENDED, msg))
    obs.condition(status, c.SUSPENDED, True, c.REASON_SUSPENDED, msg)
    obs.condition(status, c.RUNNING, False, c.REASON_SUSPENDED, msg)
    return plan


def attempt_open(obs: Observation, status: TrainingJobStatus) -> JobPlan | None:
    """The current attempt is pending or running: report it."""
    current, view = obs.current, obs.view
    if current is None or current.end_time is not None:
        return None
    plan = _plan(obs, status)
    if view is None or view.terminating:
        # Its pod is still going away (or not in our cache yet): wait for the watch.
        return plan
    if view.gates and not view.unschedulable:
        msg = f"attempt {current.index} {_admission(view)}"
        phase = Phase.RESTARTING if obs.prev.phase == Phase.RESTARTING else Phase.PENDING
        event = Event("Normal", c.REASON_WAITING_FOR_ADMISSION, msg)
        _transition(obs, plan, phase, msg, event)
        obs.condition(status, c.RUNNING, False, c.REASON_WAITING_FOR_ADMISSION, msg)
    elif view.unschedulable:
        msg = f"attempt {current.index} cannot be scheduled: {view.unschedulable}"
        _transition(obs, plan, Phase.PENDING, msg, Event("Warning", c.REASON_UNSCHEDULABLE, msg))
        obs.condition(status, c.RUNNING, False, c.REASON_UNSCHEDULABLE, msg)
        left = _unschedulable_left(obs, current)
        if left is not None:  # look again when the bound passes
            earlier = plan.requeue_after
            plan.requeue_after = left if earlier is None else min(left, earlier)
    elif view.phase == "Running":
        msg = f"attempt {current.index} running"
        _transition(obs, plan, Phase.RUNNING, msg, Event("Normal", "Running", msg))
        obs.condition(status, c.RUNNING, True, "AttemptRunning", msg)
    else:
        status.phase = Phase.PENDING if obs.prev.phase != Phase.RESTARTING else Phase.RESTARTING
    obs.condition(status, c.RESTARTING, False, "AttemptStarted", "")
    return plan


def _unschedulable_left(obs: Observation, current: Attempt) -> float | None:
    """Seconds until the open attempt has been unschedulable for the operator's bound."""
    since = parse_rfc3339(current.unschedulable_since)
    if obs.unschedulable_seconds is None or since is None:
        return None
    bound = since + timedelta(seconds=obs.unschedulable_seconds)
    return max(0.0, (bound - obs.now).total_seconds())


def _unschedulable_pod(view: PodView) -> tuple[str, str]:
    """The first pod the scheduler cannot place, and what the scheduler says."""
    for member in view.members or (view,):
        if member.unschedulable and not member.ended:
            return member.name, member.unschedulable
    return view.name, view.unschedulable or "no node fits the pod"


def unschedulable_too_long(obs: Observation, status: TrainingJobStatus) -> JobPlan | None:
    """A pod of the open attempt has not been placed within unschedulableSeconds: end the
    attempt (every pod; the next attempt removes its rendezvous Service) to retry it whole.

    Retried fresh rather than left pending: half a gang holding GPUs while the rest
    waits is the deadlock gang scheduling exists to avoid, and new pods are placed
    anew (capacity freed, nodes added). It spends neither backoffLimit nor
    preemptionLimit: no pod ran, no work is lost, and a cluster that is only busy must
    not fail the job; activeDeadlineSeconds bounds a job that can never be placed.
    """
    current, view = obs.current, obs.view
    if current is None or current.end_time is not None or view is None or view.terminating:
        return None
    if view.ended or not view.unschedulable:
        return None
    left = _unschedulable_left(obs, current)
    if left is None or left > 0:
        return None
    pod, detail = _unschedulable_pod(view)
    msg = (
        f"attempt {current.index}: pod {pod} could not be scheduled within "
        f"{int(obs.unschedulable_seconds or 0)}s: {detail}"
    )
    plan = _plan(obs, status)
    plan.delete_pods.extend(_stoppable(view))
    status.attempts[-1] = current.model_copy(
        update={"reason": c.REASON_UNSCHEDULABLE, "end_time": obs.now_s, "message": msg}
    )
    plan.events.append(Event("Warning", c.REASON_UNSCHEDULABLE, f"{msg}; retrying"))
    _transition(obs, plan, Phase.RESTARTING, msg, None)
    obs.condition(status, c.RESTARTING, True, c.REASON_UNSCHEDULABLE, msg)
    obs.condition(status, c.RUNNING, False, c.REASON_UNSCHEDULABLE, msg)
    return plan


def first_attempt(obs: Observation, status: TrainingJobStatus) -> JobPlan | None:
    """No attempt yet: create attempt 1."""
    if obs.current is not None:
        return None
    new = NewAttempt(1, {}, None, _deadline_seconds(obs), workers=obs.spec.workers)
    events = []
    if obs.prev.phase != Phase.PENDING or obs.prev.message != "attempt 1 created":
        events.append(Event("Normal", c.CREATED, "created attempt 1"))
    return _start_attempt(obs, status, new, events)


def attempt_completed(obs: Observation, status: TrainingJobStatus) -> JobPlan | None:
    """The last attempt exited 0: succeed with its artifact (or fail without one)."""
    current = obs.current
    if current is None or current.reason != c.REASON_COMPLETED:
        return None
    plan = _plan(obs, status)
    result = obs.view.result if obs.view else None
    if result is None or result.artifact is None:
        _finish(
            obs,
            plan,
            Phase.FAILED,
            c.REASON_ERROR,
            f"attempt {current.index} exited 0 without an artifact in its termination message",
        )
    else:
        status.progress = (status.progress or ProgressStatus()).model_copy(update={"percent": 100})
        _record_pretrained(obs, plan, result.pretrained)
        _finish(
            obs, plan, Phase.SUCCEEDED, c.REASON_COMPLETED, f"attempt {current.index} completed"
        )
    _versioning_and_ttl(obs, plan)
    return plan


def _record_pretrained(
    obs: Observation, plan: JobPlan, loaded: contract.PretrainedRef | None
) -> None:
    """What the job trained from goes in status (and the version's lineage); an unpinned
    file gets a warning that names the digest to pin."""
    if loaded is None or obs.spec.pretrained is None:
        return
    pinned = obs.spec.pretrained.sha256 is not None
    plan.status.pretrained = PretrainedStatus(uri=loaded.uri, sha256=loaded.sha256, pinned=pinned)
    if not pinned:
        plan.events.append(
            Event(
                "Warning",
                c.REASON_PRETRAINED_UNPINNED,
                f"spec.pretrained.sha256 is unset: trained from {loaded.uri} with sha256 "
                f"{loaded.sha256}; set it to refuse any other file",
            )
        )


def attempt_failed(obs: Observation, status: TrainingJobStatus) -> JobPlan | None:
    """The last attempt ended for a reason a retry cannot fix (e.g. InvalidDataset)."""
    current = obs.current
    if current is None:
        return None
    reason = current.reason or c.REASON_ERROR
    if reason == c.REASON_SUSPENDED or _retryable(reason):
        return None
    plan = _plan(obs, status)
    _finish(
        obs,
        plan,
        Phase.FAILED,
        reason,
        current.message or f"attempt {current.index} failed: {reason}",
    )
    _versioning_and_ttl(obs, plan)
    return plan


def _batch_size(
    spec: TrainingJobSpec, overrides: dict[str, Any], progress: contract.Progress | None
) -> int | None:
    for candidate in (
        overrides.get("batch_size"),
        spec.hyperparameters.get("batch_size"),
        progress.batch_size if progress else None,
    ):
        if isinstance(candidate, int) and candidate > 0:
            return candidate
    return None


def _oom_refusal(obs: Observation, current: Attempt) -> str | None:
    """Why an OOM-killed attempt is not retried (onOOM: Fail, or the batch cannot halve)."""
    policy = obs.spec.restart_policy
    if policy.on_oom == OnOOM.FAIL:
        return f"attempt {current.index} was OOM killed (onOOM: Fail)"
    if policy.on_oom == OnOOM.HALVE_BATCH:
        progress = obs.view.progress if obs.view else None
        size = _batch_size(obs.spec, current.overrides, progress)
        if size is not None and size // 2 < policy.min_batch_size:
            return (
                f"OOM killed at batch_size {size}; halving would go below minBatchSize "
                f"{policy.min_batch_size}"
            )
    return None


def oom_not_retried(obs: Observation, status: TrainingJobStatus) -> JobPlan | None:
    current = obs.current
    if current is None or current.reason != c.REASON_OOM_KILLED:
        return None
    refusal = _oom_refusal(obs, current)
    if refusal is None:
        return None
    plan = _plan(obs, status)
    _finish(obs, plan, Phase.FAILED, c.REASON_OOM_KILLED, refusal)
    return plan


def _failures(status: TrainingJobStatus) -> int:
    """The job's own retryable failures (OOMKilled, Error): what backoffLimit counts."""
    return sum(
        1
        for a in status.attempts
        if _retryable(a.reason) and a.reason not in DISRUPTIONS and a.reason not in UNCOUNTED
    )


def _disruptions(status: TrainingJobStatus) -> int:
    return sum(1 for a in status.attempts if a.reason in DISRUPTIONS)


def _last_words(current: Attempt) -> str:
    """The last attempt's reason and message, for the condition that ends the job."""
    reason = current.reason or c.REASON_ERROR
    return f"{reason}: {current.message}" if current.message else reason


def backoff_exhausted(obs: Observation, status: TrainingJobStatus) -> JobPlan | None:
    """More own failures than backoffLimit, or more disruptions than preemptionLimit, allow."""
    current = obs.current
    if current is None or current.reason == c.REASON_SUSPENDED:
        return None
    policy = obs.spec.restart_policy
    failures, disruptions = _failures(status), _disruptions(status)
    if failures > policy.backoff_limit:
        reason = c.REASON_BACKOFF_LIMIT_EXCEEDED
        msg = f"{failures} retryable failures exceed backoffLimit {policy.backoff_limit}"
    elif disruptions > policy.preemption_limit:
        reason = c.REASON_PREEMPTION_LIMIT_EXCEEDED
        msg = f"{disruptions} evictions/preemptions exceed preemptionLimit "
        msg += str(policy.preemption_limit)
    else:
        return None
    plan = _plan(obs, status)
    plan.events.extend(_next_overrides(obs, current)[1])
    _finish(obs, plan, Phase.FAILED, reason, f"{msg}; last: {_last_words(current)}"[:2000])
    return plan


def _next_overrides(obs: Observation, current: Attempt) -> tuple[dict[str, Any], list[Event]]:
    """The next attempt's overrides: half the batch after an OOM kill (onOOM: HalveBatch)."""
    overrides = dict(current.overrides)
    spec = obs.spec
    if current.reason != c.REASON_OOM_KILLED or spec.restart_policy.on_oom != OnOOM.HALVE_BATCH:
        return overrides, []
    size = _batch_size(spec, overrides, obs.view.progress if obs.view else None)
    if size is None:
        msg = "OOM killed but no batch_size known; retrying as is"
        return overrides, [Event("Warning", "BatchSizeUnknown", msg)]
    overrides["batch_size"] = size // 2
    return overrides, []


def retry(obs: Observation, status: TrainingJobStatus) -> JobPlan | None:
    """After a retryable ending or a resume: wait out the backoff, then the next attempt."""
    current = obs.current
    if current is None:
        return None
    reason = current.reason or c.REASON_ERROR
    view = obs.view
    if view is not None and view.members and view.live_pods():
        # A gang's workers still stopping: the next attempt would race rank 0's
        # checkpoint and share the workers' names' ranks. Their endings wake us.
        plan = _plan(obs, status)
        plan.delete_pods.extend(_stoppable(view))
        msg = f"attempt {current.index} ended ({reason}); stopping its other workers"
        _transition(obs, plan, Phase.RESTARTING, msg, Event("Normal", c.RESTARTING, msg))
        obs.condition(status, c.RESTARTING, True, reason, msg)
        obs.condition(status, c.RUNNING, False, reason, msg)
        return plan
    resumed = reason == c.REASON_SUSPENDED
    overrides, events = _next_overrides(obs, current)
    # The delay grows with every retryable ending, disruptions included (a drain loop
    # must not spin); only the budgets that end the job count them apart.
    failures = _failures(status) + _disruptions(status)
    delay = 0.0
    if not resumed and failures > 0:
        backoff = obs.spec.restart_policy.backoff_seconds * 2 ** (failures - 1)
        delay = min(MAX_BACKOFF_SECONDS, backoff)
    ended = parse_rfc3339(current.end_time) or obs.now
    wait = (ended + timedelta(seconds=delay) - obs.now).total_seconds()
    ckpt = status.last_checkpoint
    resume = ckpt.uri if ckpt else None
    prefix = obs.checkpoint_prefix
    if resume and prefix and not contract.is_under_prefix(resume, prefix):
        plan = _plan(obs, status)
        _finish(
            obs,
            plan,
            Phase.FAILED,
            c.REASON_CHECKPOINT_REFUSED,
            f"the recorded checkpoint {resume} is outside this job's checkpoint prefix "
            f"{prefix}; it is not loaded",
        )
        return plan
    if wait > 0:
        plan = _plan(obs, status)
        plan.events.extend(events)
        msg = f"attempt {current.index + 1} starts in {int(wait) + 1}s after {reason}"
        _transition(obs, plan, Phase.RESTARTING, msg, Event("Normal", c.RESTARTING, msg))
        obs.condition(status, c.RESTARTING, True, reason, msg)
        obs.condition(status, c.RUNNING, False, reason, msg)
        plan.requeue_after = wait if plan.requeue_after is None else min(wait, plan.requeue_after)
        return plan
    nxt = current.index + 1
    changed = {k: v for k, v in overrides.items() if current.overrides.get(k) != v}
    msg = f"attempt {nxt} created after {reason}" + (f", resuming from {resume}" if resume else "")
    if changed:
        msg += f", overrides {json.dumps(changed, sort_keys=True)}"
    events.append(Event("Normal", "Resumed" if resumed else c.RESTARTING, msg))
    new = NewAttempt(
        nxt,
        overrides,
        resume,
        _deadline_seconds(obs),
        ckpt.sha256 if ckpt else None,
        workers=obs.spec.workers,
    )
    return _start_attempt(obs, status, new, events)


Rule = Callable[[Observation, TrainingJobStatus], JobPlan | None]

RULES: tuple[Rule, ...] = (
    after_terminal,
    stranger_pod,
    past_deadline,
    suspended,
    unschedulable_too_long,
    attempt_open,
    first_attempt,
    attempt_completed,
    attempt_failed,
    oom_not_retried,
    backoff_exhausted,
    retry,
)
"""Asked in this order; the first that answers decides. ``retry`` always answers."""


# After rank 0 completed, the other ranks are past the last collective and exiting on
# their own; their kubelets may report it a moment later than rank 0's. Deleting them
# at once would lose their exit status and logs for nothing; a rank still running
# after this long is stuck, and is stopped.
COMPLETED_GANG_GRACE_SECONDS = 60.0


def _stop_the_rest_of_the_gang(obs: Observation, plan: JobPlan) -> None:
    """One worker ended the attempt: the others stop too, whatever the rule decided
    (after a grace period when rank 0 completed it)."""
    view = obs.view
    if view is None or not view.members or not view.ended:
        return
    if view.reason == c.REASON_COMPLETED and _stoppable(view):
        ended = parse_rfc3339(view.end_time)
        left = COMPLETED_GANG_GRACE_SECONDS - (
            (obs.now - ended).total_seconds() if ended else COMPLETED_GANG_GRACE_SECONDS
        )
        if left > 0:
            earlier = plan.requeue_after
            plan.requeue_after = left if earlier is None else min(left, earlier)
            return
    plan.delete_pods.extend(p for p in _stoppable(view) if p not in plan.delete_pods)


def plan_trainingjob(
    job: dict[str, Any],
    spec: TrainingJobSpec,
    pods: list[dict[str, Any]],
    now: datetime,
    checkpoint_prefix: str | None = None,
    *,
    unschedulable_seconds: float | None = None,
) -> JobPlan:
    """The new status and next step of ``job`` given its attempt ``pods``."""
    obs = observe(
        job, spec, pods, now, checkpoint_prefix, unschedulable_seconds=unschedulable_seconds
    )
    for rule in RULES:
        plan = rule(obs, obs.observed.model_copy(deep=True))
        if plan is not None:
            plan.events[:0] = obs.endings
            _stop_the_rest_of_the_gang(obs, plan)
            return plan
    raise AssertionError("no rule answered")  # unreachable: retry answers any ended attempt
