"""What a TrainingJob's status is and what to do next, from what is observed. Pure.

Inputs are the job (spec, previous status) and its attempt pods; the output is a
:class:`JobPlan`: the whole new status, the pod to create or delete, the events
to record and when to look again. The reconciler applies it; nothing here talks
to the API server, so every rule is unit-tested on plain dicts.

The previous status matters only for what can no longer be observed: attempts
whose pod was deleted, decisions the operator took (suspend, deadline), the
ModelVersion it created, and transition times.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from forja_api import conditions as c
from forja_api import contract
from forja_api.v1alpha1.common import Condition
from forja_api.v1alpha1.trainingjob import (
    Attempt,
    CheckpointStatus,
    OnOOM,
    Phase,
    ProgressStatus,
    TrainingJobSpec,
    TrainingJobStatus,
)
from forja_operator.builders.attempt import OVERRIDES_ANNOTATION, RESUME_ANNOTATION

__all__ = [
    "MAX_BACKOFF_SECONDS",
    "Event",
    "JobPlan",
    "NewAttempt",
    "classify_pod",
    "plan_trainingjob",
    "set_condition",
]

MAX_BACKOFF_SECONDS = 300
TERMINAL = (Phase.SUCCEEDED, Phase.FAILED)
# Endings the operator chose itself; a pod's own exit (143 after SIGTERM) must not overwrite them.
OPERATOR_ENDINGS = (c.REASON_SUSPENDED, c.REASON_DEADLINE_EXCEEDED)
DISRUPTION_REASONS = {
    "PreemptionByScheduler",
    "PreemptionByKubeScheduler",
    "DeletionByTaintManager",
    "EvictionByEvictionAPI",
    "DeletionByPodGC",
    "TerminationByKubelet",
}


@dataclass(frozen=True)
class Event:
    type: str  # Normal | Warning
    reason: str
    message: str


@dataclass(frozen=True)
class NewAttempt:
    index: int
    overrides: dict[str, Any]
    resume_from: str | None
    deadline_seconds: int | None


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


def _ts(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_ts(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


@dataclass(frozen=True)
class PodView:
    """What one attempt pod says, read once."""

    index: int
    name: str
    phase: str  # Pending Running Succeeded Failed Unknown
    terminating: bool
    start_time: str | None
    end_time: str | None
    reason: str | None
    exit_code: int | None
    message: str | None
    result: contract.Result | None
    progress: contract.Progress | None
    overrides: dict[str, Any]
    resumed_from: str | None
    unschedulable: str | None
    """The scheduler's message while the pod cannot be placed."""

    @property
    def ended(self) -> bool:
        return self.phase in ("Succeeded", "Failed")


def _container_state(pod: dict[str, Any]) -> dict[str, Any]:
    statuses = pod.get("status", {}).get("containerStatuses") or []
    for st in statuses:
        if st.get("name") == "trainer":
            return dict(st.get("state") or {})
    return dict(statuses[0].get("state") or {}) if statuses else {}


def classify_pod(pod: dict[str, Any]) -> PodView:
    """Read an attempt pod: phase, why it ended, its Result and Progress."""
    meta, status = pod["metadata"], pod.get("status", {})
    labels, ann = meta.get("labels") or {}, meta.get("annotations") or {}
    phase = status.get("phase") or "Pending"
    terminated = _container_state(pod).get("terminated") or {}
    exit_code = terminated.get("exitCode")
    term_message = terminated.get("message")
    result = contract.Result.from_termination_message(term_message)
    progress = None
    if raw := ann.get(contract.PROGRESS_ANNOTATION):
        try:
            progress = contract.Progress.model_validate_json(raw)
        except ValueError:
            progress = None
    try:
        overrides = json.loads(ann.get(OVERRIDES_ANNOTATION) or "{}")
    except ValueError:
        overrides = {}
    conds = {x.get("type"): x for x in status.get("conditions") or []}
    disruption = conds.get("DisruptionTarget", {})
    disrupted = (
        disruption.get("status") == "True" and disruption.get("reason") in DISRUPTION_REASONS
    )
    unschedulable = None
    sched = conds.get("PodScheduled", {})
    if (
        phase == "Pending"
        and sched.get("status") == "False"
        and sched.get("reason") == "Unschedulable"
    ):
        unschedulable = sched.get("message") or "no node fits the pod"

    reason: str | None = None
    message: str | None = result.message if result else None
    if phase in ("Succeeded", "Failed"):
        if status.get("reason") == "Evicted":
            reason, message = c.REASON_EVICTED, status.get("message") or message
        elif status.get("reason") == "DeadlineExceeded":
            reason, message = c.REASON_DEADLINE_EXCEEDED, status.get("message") or message
        elif terminated.get("reason") == "OOMKilled":
            reason = c.REASON_OOM_KILLED
        elif exit_code == 0 and phase == "Succeeded":
            reason = c.REASON_COMPLETED
        elif exit_code is not None and contract.is_permanent_exit(exit_code):
            reason = (
                result.reason if result and result.reason else None
            ) or contract.PERMANENT_REASONS[exit_code]
        elif disrupted or (meta.get("deletionTimestamp") and exit_code in (137, 143)):
            reason = c.REASON_PREEMPTED
            message = disruption.get("message") or message
        else:
            reason = c.REASON_ERROR
        if message is None and term_message and result is None:
            message = term_message[-1024:]
    return PodView(
        index=int(labels.get(contract.ATTEMPT_LABEL, "0")),
        name=meta["name"],
        phase=phase,
        terminating=bool(meta.get("deletionTimestamp")),
        start_time=status.get("startTime") or meta.get("creationTimestamp"),
        end_time=terminated.get("finishedAt"),
        reason=reason,
        exit_code=exit_code,
        message=message,
        result=result,
        progress=progress,
        overrides=overrides if isinstance(overrides, dict) else {},
        resumed_from=ann.get(RESUME_ANNOTATION),
        unschedulable=unschedulable,
    )


def _retryable(reason: str | None) -> bool:
    return reason in (
        c.REASON_OOM_KILLED,
        c.REASON_EVICTED,
        c.REASON_PREEMPTED,
        c.REASON_ERROR,
    )


def set_condition(  # noqa: PLR0917 - mirrors meta.SetStatusCondition's fields
    conds: list[Condition],
    ctype: str,
    status: bool,
    reason: str,
    message: str,
    generation: int | None,
    now: str,
) -> None:
    value = "True" if status else "False"
    for i, old in enumerate(conds):
        if old.type == ctype:
            keep_time = old.status == value and old.last_transition_time
            conds[i] = Condition(
                type=ctype,
                status=value,
                reason=reason,
                message=message,
                last_transition_time=old.last_transition_time if keep_time else now,
                observed_generation=generation,
            )
            return
    conds.append(
        Condition(
            type=ctype,
            status=value,
            reason=reason,
            message=message,
            last_transition_time=now,
            observed_generation=generation,
        )
    )


def _attempt_from_pod(view: PodView) -> Attempt:
    return Attempt(
        index=view.index,
        pod=view.name,
        start_time=view.start_time,
        end_time=(view.end_time or None) if view.ended else None,
        reason=view.reason
        if view.ended
        else (c.REASON_UNSCHEDULABLE if view.unschedulable else None),
        exit_code=view.exit_code if view.ended else None,
        message=view.message if view.ended else view.unschedulable,
        overrides=view.overrides,
        resumed_from=view.resumed_from,
    )


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


def plan_trainingjob(
    job: dict[str, Any],
    spec: TrainingJobSpec,
    pods: list[dict[str, Any]],
    now: datetime,
) -> JobPlan:
    """The new status and next step of ``job`` given its attempt ``pods``."""
    meta = job["metadata"]
    generation = meta.get("generation")
    now_s = _ts(now)
    prev = TrainingJobStatus.model_validate(job.get("status") or {})
    status = prev.model_copy(deep=True)
    status.observed_generation = generation
    plan = JobPlan(status=status)

    views = {v.index: v for v in (classify_pod(p) for p in pods)}
    attempts: dict[int, Attempt] = {a.index: a for a in prev.attempts}
    for index, pv in views.items():
        fresh = _attempt_from_pod(pv)
        old = attempts.get(index)
        if old and old.reason in OPERATOR_ENDINGS:
            fresh = fresh.model_copy(
                update={
                    "reason": old.reason,
                    "message": old.message,
                    "end_time": old.end_time or fresh.end_time,
                }
            )
        if pv.ended and fresh.end_time is None:
            fresh = fresh.model_copy(update={"end_time": (old.end_time if old else None) or now_s})
        attempts[index] = fresh
    # An attempt still open in status whose pod is gone was deleted by someone
    # else (preemption, node drain, a person): retryable.
    for index, att in list(attempts.items()):
        if index not in views and att.end_time is None:
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
    status.attempts = [attempts[i] for i in sorted(attempts)]
    current = status.attempts[-1] if status.attempts else None
    view = views.get(current.index) if current else None

    # Progress and checkpoints, from the newest report.
    if view and view.progress:
        p = view.progress
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
        view.progress.checkpoint if view and view.progress else None,
        view.result.checkpoint if view and view.result else None,
    ):
        if ckpt and (status.last_checkpoint is None or ckpt.epoch >= status.last_checkpoint.epoch):
            status.last_checkpoint = CheckpointStatus(
                uri=ckpt.uri, epoch=ckpt.epoch, sha256=ckpt.sha256
            )

    if status.start_time is None and not spec.suspend:
        status.start_time = now_s

    def transition(phase: Phase, message: str | None, event: Event | None) -> None:
        if event and (phase != prev.phase or message != prev.message):
            plan.events.append(event)
        status.phase = phase
        status.message = message

    def finish(phase: Phase, reason: str, message: str) -> None:
        status.completion_time = status.completion_time or now_s
        ok = phase == Phase.SUCCEEDED
        transition(phase, message, Event("Normal" if ok else "Warning", reason, message))
        set_condition(
            status.conditions,
            c.SUCCEEDED if ok else c.FAILED,
            True,
            reason,
            message,
            generation,
            now_s,
        )
        set_condition(status.conditions, c.RUNNING, False, reason, message, generation, now_s)

    # Attempt endings seen for the first time get an event each.
    prev_by_index = {a.index: a for a in prev.attempts}
    for att in status.attempts:
        before = prev_by_index.get(att.index)
        if (
            att.end_time
            and (before is None or before.end_time is None)
            and att.reason != c.REASON_COMPLETED
        ):
            plan.events.append(
                Event(
                    "Warning",
                    att.reason or c.REASON_ERROR,
                    f"attempt {att.index} ended: {att.reason}"
                    + (f" (exit code {att.exit_code})" if att.exit_code is not None else "")
                    + (f": {att.message}" if att.message else ""),
                )
            )

    running_pod = view is not None and not view.ended
    # --- terminal: only versioning and TTL remain --------------------------------
    if prev.phase in TERMINAL:
        status.phase = prev.phase
        if running_pod and view is not None and not view.terminating:
            plan.delete_pods.append(view.name)
        _versioning_and_ttl(plan, spec, view, now)
        return plan

    # --- deadline (reset on resume, as batch/v1) ----------------------------------
    started = _parse_ts(status.start_time)
    if spec.active_deadline_seconds and started and not spec.suspend:
        left = (started + timedelta(seconds=spec.active_deadline_seconds) - now).total_seconds()
        if left <= 0:
            if running_pod and view is not None and current is not None:
                plan.delete_pods.append(view.name)
                status.attempts[-1] = current.model_copy(
                    update={"reason": c.REASON_DEADLINE_EXCEEDED, "end_time": now_s}
                )
            finish(
                Phase.FAILED,
                c.REASON_DEADLINE_EXCEEDED,
                f"activeDeadlineSeconds ({spec.active_deadline_seconds}s) exceeded",
            )
            _versioning_and_ttl(plan, spec, view, now)
            return plan
        plan.requeue_after = left

    # --- suspend -------------------------------------------------------------------
    if spec.suspend:
        if running_pod and view is not None and current is not None:
            if not view.terminating:
                plan.delete_pods.append(view.name)
            status.attempts[-1] = current.model_copy(update={"reason": c.REASON_SUSPENDED})
        status.start_time = None
        plan.requeue_after = None
        msg = "suspended; checkpoints are kept and the job resumes when spec.suspend is false"
        transition(Phase.SUSPENDED, msg, Event("Normal", c.REASON_SUSPENDED, msg))
        set_condition(
            status.conditions, c.SUSPENDED, True, c.REASON_SUSPENDED, msg, generation, now_s
        )
        set_condition(
            status.conditions, c.RUNNING, False, c.REASON_SUSPENDED, msg, generation, now_s
        )
        return plan
    if any(x.type == c.SUSPENDED and x.status == "True" for x in status.conditions):
        set_condition(
            status.conditions, c.SUSPENDED, False, "Resumed", "resumed", generation, now_s
        )

    # --- an attempt is running or pending -----------------------------------------
    if current is not None and current.end_time is None:
        if view is None or view.terminating:
            # Its pod is still going away (or not in our cache yet): wait for the watch.
            return plan
        if view.unschedulable:
            msg = f"attempt {current.index} cannot be scheduled: {view.unschedulable}"
            transition(Phase.PENDING, msg, Event("Warning", c.REASON_UNSCHEDULABLE, msg))
            set_condition(
                status.conditions, c.RUNNING, False, c.REASON_UNSCHEDULABLE, msg, generation, now_s
            )
        elif view.phase == "Running":
            msg = f"attempt {current.index} running"
            transition(Phase.RUNNING, msg, Event("Normal", "Running", msg))
            set_condition(
                status.conditions, c.RUNNING, True, "AttemptRunning", msg, generation, now_s
            )
        else:
            status.phase = Phase.PENDING if prev.phase != Phase.RESTARTING else Phase.RESTARTING
        set_condition(
            status.conditions, c.RESTARTING, False, "AttemptStarted", "", generation, now_s
        )
        return plan

    # --- no attempt yet ------------------------------------------------------------
    if current is None:
        plan.create_attempt = NewAttempt(1, {}, None, _deadline_left(spec, status.start_time, now))
        transition(
            Phase.PENDING, "attempt 1 created", Event("Normal", c.CREATED, "created attempt 1")
        )
        set_condition(
            status.conditions, c.CREATED, True, c.CREATED, "attempt 1 created", generation, now_s
        )
        return plan

    # --- the current attempt ended ---------------------------------------------------
    reason = current.reason or c.REASON_ERROR
    if reason == c.REASON_COMPLETED:
        result = view.result if view else None
        if result is None or result.artifact is None:
            finish(
                Phase.FAILED,
                c.REASON_ERROR,
                f"attempt {current.index} exited 0 without an artifact in its termination message",
            )
        else:
            status.progress = (status.progress or ProgressStatus()).model_copy(
                update={"percent": 100}
            )
            finish(Phase.SUCCEEDED, c.REASON_COMPLETED, f"attempt {current.index} completed")
        _versioning_and_ttl(plan, spec, view, now)
        return plan
    if reason != c.REASON_SUSPENDED and not _retryable(reason):
        finish(Phase.FAILED, reason, current.message or f"attempt {current.index} failed: {reason}")
        _versioning_and_ttl(plan, spec, view, now)
        return plan
    overrides = dict(current.overrides)
    if reason == c.REASON_OOM_KILLED:
        policy = spec.restart_policy.on_oom
        if policy == OnOOM.FAIL:
            finish(
                Phase.FAILED,
                c.REASON_OOM_KILLED,
                f"attempt {current.index} was OOM killed (onOOM: Fail)",
            )
            return plan
        if policy == OnOOM.HALVE_BATCH:
            size = _batch_size(spec, overrides, view.progress if view else None)
            if size is None:
                plan.events.append(
                    Event(
                        "Warning",
                        "BatchSizeUnknown",
                        "OOM killed but no batch_size known; retrying as is",
                    )
                )
            elif size // 2 < spec.restart_policy.min_batch_size:
                finish(
                    Phase.FAILED,
                    c.REASON_OOM_KILLED,
                    f"OOM killed at batch_size {size}; halving would go below minBatchSize "
                    f"{spec.restart_policy.min_batch_size}",
                )
                return plan
            else:
                overrides["batch_size"] = size // 2
    failures = sum(1 for a in status.attempts if _retryable(a.reason))
    if reason != c.REASON_SUSPENDED and failures > spec.restart_policy.backoff_limit:
        finish(
            Phase.FAILED,
            c.REASON_BACKOFF_LIMIT_EXCEEDED,
            f"{failures} retryable failures exceed backoffLimit "
            f"{spec.restart_policy.backoff_limit}; "
            f"last: {reason}",
        )
        return plan
    delay = 0.0
    if reason != c.REASON_SUSPENDED and failures > 0:
        delay = min(MAX_BACKOFF_SECONDS, spec.restart_policy.backoff_seconds * 2 ** (failures - 1))
    ended = _parse_ts(current.end_time) or now
    wait = (ended + timedelta(seconds=delay) - now).total_seconds()
    resume = status.last_checkpoint.uri if status.last_checkpoint else None
    if wait > 0:
        msg = f"attempt {current.index + 1} starts in {int(wait) + 1}s after {reason}"
        transition(Phase.RESTARTING, msg, Event("Normal", c.RESTARTING, msg))
        set_condition(status.conditions, c.RESTARTING, True, reason, msg, generation, now_s)
        set_condition(status.conditions, c.RUNNING, False, reason, msg, generation, now_s)
        plan.requeue_after = wait if plan.requeue_after is None else min(wait, plan.requeue_after)
        return plan
    nxt = current.index + 1
    plan.create_attempt = NewAttempt(
        nxt, overrides, resume, _deadline_left(spec, status.start_time, now)
    )
    changed = {k: v for k, v in overrides.items() if current.overrides.get(k) != v}
    msg = f"attempt {nxt} created after {reason}" + (f", resuming from {resume}" if resume else "")
    if changed:
        msg += f", overrides {json.dumps(changed, sort_keys=True)}"
    status.phase = Phase.RESTARTING if reason != c.REASON_SUSPENDED else Phase.PENDING
    status.message = msg
    plan.events.append(
        Event("Normal", c.RESTARTING if reason != c.REASON_SUSPENDED else "Resumed", msg)
    )
    set_condition(status.conditions, c.RESTARTING, True, reason, msg, generation, now_s)
    return plan


def _deadline_left(spec: TrainingJobSpec, start_time: str | None, now: datetime) -> int | None:
    started = _parse_ts(start_time)
    if not spec.active_deadline_seconds or started is None:
        return None
    return (
        int((started + timedelta(seconds=spec.active_deadline_seconds) - now).total_seconds()) + 1
    )


def _versioning_and_ttl(
    plan: JobPlan, spec: TrainingJobSpec, view: PodView | None, now: datetime
) -> None:
    status = plan.status
    if status.phase == Phase.SUCCEEDED and status.model_version is None:
        if view and view.result and view.result.artifact:
            plan.create_version = view.result
        return  # never expire a job before its version is recorded
    ttl = spec.ttl_seconds_after_finished
    done = _parse_ts(status.completion_time)
    if ttl is not None and done is not None:
        left = (done + timedelta(seconds=ttl) - now).total_seconds()
        if left <= 0:
            plan.delete_job = True
        else:
            plan.requeue_after = left
