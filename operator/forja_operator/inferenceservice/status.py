"""The InferenceService status, computed whole from the plan and what was observed.

Conditions (types and reasons in forja_api.conditions):

* ``Ready``: True only when the version the selector resolves to is the active
  version, no canary is in flight, and it has a ready replica. A rolled-back
  target leaves Ready False (reason RolledBack) while the stable still serves.
* ``Serving``: True while any version behind the Service has a ready replica;
  stays True through a rollout (the stable keeps serving).
* ``RolloutProgressing``: True during canary steps (reason CanaryStep).
* ``RolledBack``: True with the reason (ProgressDeadlineExceeded, ErrorRateExceeded)
  after an automatic rollback, until a new rollout starts.

``traffic`` reports what clients actually get: under an HTTPRoute the exact
weights; on a plain Service the share of ready endpoints, which is how
kube-proxy spreads connections.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from forja_api import conditions as c
from forja_api.v1alpha1.common import Condition
from forja_api.v1alpha1.inferenceservice import (
    InferenceServiceStatus,
    RolloutState,
    ServicePhase,
    VersionTraffic,
)
from forja_operator.inferenceservice.rollout import Observed, Plan, Router, State

__all__ = ["Problem", "compute_status", "split_by_ready", "state_from_status", "to_rfc3339"]


@dataclass(frozen=True)
class Problem:
    """Why the spec could not be resolved now (NoMatchingVersionError, InvalidSpec)."""

    reason: str
    message: str


def to_rfc3339(t: datetime | None, seconds: bool = False) -> str | None:
    if t is None:
        return None
    if seconds:
        t = t.replace(microsecond=0)
    return t.isoformat().replace("+00:00", "Z")


def _parse(text: str | None) -> datetime | None:
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def state_from_status(status: Mapping[str, Any] | None) -> State:
    """The rollout state persisted in a status (empty for a new object)."""
    if not status:
        return State()
    parsed = InferenceServiceStatus.model_validate(status)
    r = parsed.rollout or RolloutState()
    return State(
        active=parsed.active_version,
        canary=parsed.canary_version,
        previous=parsed.previous_version,
        step=r.step,
        started_at=_parse(r.started_at),
        step_started_at=_parse(r.step_started_at),
        step_ready_at=_parse(r.step_ready_at),
        rolled_back_version=r.rolled_back_version,
        rolled_back_reason=r.rolled_back_reason,
        rolled_back_message=r.rolled_back_message,
    )


def split_by_ready(ready: Mapping[str, int]) -> dict[str, int]:
    """Percent of endpoints per version, summing to 100 (largest remainder)."""
    total = sum(ready.values())
    if total == 0:
        return dict.fromkeys(ready, 0)
    exact = {v: 100 * n / total for v, n in ready.items()}
    out = {v: int(x) for v, x in exact.items()}
    short = 100 - sum(out.values())
    for v in sorted(exact, key=lambda k: exact[k] - out[k], reverse=True)[:short]:
        out[v] += 1
    return out


def _condition(
    *,
    old: Mapping[str, Mapping[str, Any]],
    type_: str,
    status: bool,
    reason: str,
    message: str,
    generation: int | None,
    now: datetime,
) -> Condition:
    value = "True" if status else "False"
    prev = old.get(type_)
    since = (
        prev.get("lastTransitionTime")
        if prev is not None and prev.get("status") == value
        else to_rfc3339(now, seconds=True)
    )
    return Condition(
        type=type_,
        status=value,
        reason=reason,
        message=message,
        last_transition_time=since,
        observed_generation=generation,
    )


def compute_status(
    *,
    generation: int | None,
    plan: Plan | None,
    observed: Mapping[str, Observed],
    target: str | None,
    router: Router,
    url: str | None,
    desired_replicas: int,
    problem: Problem | None,
    old_conditions: Sequence[Mapping[str, Any]],
    now: datetime,
) -> dict[str, Any]:
    """The whole status as it goes on the wire."""
    s = plan.state if plan else State()
    old = {str(x.get("type")): x for x in old_conditions}
    versions = [v for v in (s.active, s.canary) if v]
    ready = {v: (observed[v].ready if v in observed else 0) for v in versions}
    wanted = plan.replicas if plan else {}
    if router is Router.HTTP_ROUTE and plan is not None:
        percent = {v: plan.weights.get(v, 0) for v in versions}
    else:
        percent = split_by_ready(ready)
    traffic = [
        VersionTraffic(
            version=v, percent=percent[v], ready_replicas=ready[v], replicas=wanted.get(v, 0)
        )
        for v in versions
    ]
    total_ready = sum(ready.values())
    serving = total_ready > 0
    target_serves = (
        target is not None and target == s.active and s.canary is None and ready.get(target, 0) > 0
    )

    def cond(type_: str, ok: bool, reason: str, message: str) -> Condition:
        return _condition(
            old=old,
            type_=type_,
            status=ok,
            reason=reason,
            message=message,
            generation=generation,
            now=now,
        )

    if target_serves and target is not None:
        ready_cond = cond(
            c.READY,
            True,
            c.REASON_TARGET_SERVING,
            f"{target} serves with {ready[target]} ready replica(s)",
        )
    elif problem is not None:
        ready_cond = cond(c.READY, False, problem.reason, problem.message)
    elif s.canary is not None:
        ready_cond = cond(
            c.READY,
            False,
            c.REASON_ROLLOUT_IN_PROGRESS,
            f"rolling out {s.canary}; {s.active} serves meanwhile",
        )
    elif target is not None and target == s.rolled_back_version:
        ready_cond = cond(
            c.READY,
            False,
            c.REASON_ROLLED_BACK,
            f"target {target} was rolled back; {s.active} serves",
        )
    else:
        ready_cond = cond(
            c.READY,
            False,
            c.REASON_NO_READY_REPLICAS,
            f"{s.active or 'no version'} has no ready replica yet",
        )

    serving_msg = ", ".join(f"{v}: {ready[v]}/{wanted.get(v, 0)} ready" for v in versions)
    serving_cond = cond(
        c.SERVING,
        serving,
        c.REASON_REPLICAS_READY if serving else c.REASON_NO_READY_REPLICAS,
        serving_msg or "nothing deployed",
    )
    if s.canary is not None:
        progressing = cond(
            c.ROLLOUT_PROGRESSING,
            True,
            c.REASON_CANARY_STEP,
            f"canary {s.canary} at step {s.step + 1}: "
            f"{plan.weights.get(s.canary, 0) if plan else 0}% nominal",
        )
    elif s.rolled_back_version is not None:
        progressing = cond(
            c.ROLLOUT_PROGRESSING,
            False,
            c.REASON_ROLLED_BACK,
            f"{s.rolled_back_version} was rolled back",
        )
    elif s.previous is not None:
        progressing = cond(
            c.ROLLOUT_PROGRESSING,
            False,
            c.REASON_ROLLOUT_COMPLETE,
            f"{s.active} replaced {s.previous}",
        )
    else:
        progressing = cond(c.ROLLOUT_PROGRESSING, False, c.REASON_STABLE, "no rollout under way")
    if s.rolled_back_version is not None:
        rolled = cond(
            c.ROLLED_BACK,
            True,
            s.rolled_back_reason or c.REASON_ROLLED_BACK,
            s.rolled_back_message or "",
        )
    else:
        rolled = cond(c.ROLLED_BACK, False, c.REASON_STABLE, "no rollback")

    if problem is not None and problem.reason == c.REASON_INVALID_SPEC:
        phase = ServicePhase.FAILED
    elif s.active is None:
        phase = ServicePhase.PENDING
    elif s.canary is not None:
        phase = ServicePhase.PROGRESSING
    elif target_serves and target is not None:
        phase = (
            ServicePhase.READY
            if ready[target] >= max(desired_replicas, 1)
            else ServicePhase.DEGRADED
        )
    elif serving:
        phase = ServicePhase.DEGRADED
    elif (
        s.started_at is not None
        and plan is not None
        and plan.requeue_after is None
        and s.active == target
    ):
        phase = ServicePhase.FAILED  # never became ready within its progress deadline
    else:
        phase = ServicePhase.PROGRESSING

    message = ready_cond.message if ready_cond.status == "False" else None
    rollout_state = RolloutState(
        step=s.step,
        started_at=to_rfc3339(s.started_at),
        step_started_at=to_rfc3339(s.step_started_at),
        step_ready_at=to_rfc3339(s.step_ready_at),
        rolled_back_version=s.rolled_back_version,
        rolled_back_reason=s.rolled_back_reason,
        rolled_back_message=s.rolled_back_message,
        router=router.value,
    )
    status = InferenceServiceStatus(
        phase=phase,
        url=url,
        conditions=[ready_cond, serving_cond, progressing, rolled],
        active_version=s.active,
        canary_version=s.canary,
        canary_percent=plan.weights.get(s.canary) if plan and s.canary else None,
        previous_version=s.previous,
        traffic=traffic,
        ready_replicas=total_ready,
        observed_generation=generation,
        message=message,
        rollout=rollout_state,
    )
    return status.to_wire()
