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
from forja_operator.controller.clock import parse_rfc3339, timestamp, to_rfc3339
from forja_operator.controller.conditions import condition
from forja_operator.inferenceservice.rollout import Observed, Plan, Router, State

__all__ = ["Problem", "compute_status", "split_by_ready", "state_from_status"]


@dataclass(frozen=True)
class Problem:
    """Why the spec could not be resolved now (NoMatchingVersionError, InvalidSpec)."""

    reason: str
    message: str


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
        started_at=parse_rfc3339(r.started_at),
        step_started_at=parse_rfc3339(r.step_started_at),
        step_ready_at=parse_rfc3339(r.step_ready_at),
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
    prev = old.get(type_)
    return condition(
        type_,
        status,
        reason,
        message,
        generation,
        timestamp(now),
        Condition.model_validate(prev) if prev is not None else None,
    )


@dataclass(frozen=True)
class _Facts:
    """What the conditions and the phase are decided from."""

    state: State
    plan: Plan | None
    target: str | None
    ready: Mapping[str, int]
    """Ready replicas of the active and the canary version."""
    problem: Problem | None
    desired_replicas: int

    @property
    def serving(self) -> bool:
        return sum(self.ready.values()) > 0

    @property
    def target_serves(self) -> bool:
        s, target = self.state, self.target
        return (
            target is not None
            and target == s.active
            and s.canary is None
            and self.ready.get(target, 0) > 0
        )


Verdict = tuple[bool, str, str]
"""A condition's (status, reason, message)."""


def _ready(f: _Facts) -> Verdict:
    s, target = f.state, f.target
    if f.target_serves and target is not None:
        msg = f"{target} serves with {f.ready[target]} ready replica(s)"
        return True, c.REASON_TARGET_SERVING, msg
    if f.problem is not None:
        return False, f.problem.reason, f.problem.message
    if s.canary is not None:
        msg = f"rolling out {s.canary}; {s.active} serves meanwhile"
        return False, c.REASON_ROLLOUT_IN_PROGRESS, msg
    if target is not None and target == s.rolled_back_version:
        return False, c.REASON_ROLLED_BACK, f"target {target} was rolled back; {s.active} serves"
    msg = f"{s.active or 'no version'} has no ready replica yet"
    return False, c.REASON_NO_READY_REPLICAS, msg


def _serving(f: _Facts) -> Verdict:
    wanted = f.plan.replicas if f.plan else {}
    msg = ", ".join(f"{v}: {n}/{wanted.get(v, 0)} ready" for v, n in f.ready.items())
    reason = c.REASON_REPLICAS_READY if f.serving else c.REASON_NO_READY_REPLICAS
    return f.serving, reason, msg or "nothing deployed"


def _progressing(f: _Facts) -> Verdict:
    s = f.state
    if s.canary is not None:
        nominal = f.plan.weights.get(s.canary, 0) if f.plan else 0
        msg = f"canary {s.canary} at step {s.step + 1}: {nominal}% nominal"
        return True, c.REASON_CANARY_STEP, msg
    if s.rolled_back_version is not None:
        return False, c.REASON_ROLLED_BACK, f"{s.rolled_back_version} was rolled back"
    if s.previous is not None:
        return False, c.REASON_ROLLOUT_COMPLETE, f"{s.active} replaced {s.previous}"
    return False, c.REASON_STABLE, "no rollout under way"


def _rolled_back(f: _Facts) -> Verdict:
    s = f.state
    if s.rolled_back_version is not None:
        return True, s.rolled_back_reason or c.REASON_ROLLED_BACK, s.rolled_back_message or ""
    return False, c.REASON_STABLE, "no rollback"


def _phase(f: _Facts) -> ServicePhase:
    s, target, plan = f.state, f.target, f.plan
    if f.problem is not None and f.problem.reason == c.REASON_INVALID_SPEC:
        return ServicePhase.FAILED
    if s.active is None:
        return ServicePhase.PENDING
    if s.canary is not None:
        return ServicePhase.PROGRESSING
    if f.target_serves and target is not None:
        full = f.ready[target] >= max(f.desired_replicas, 1)
        return ServicePhase.READY if full else ServicePhase.DEGRADED
    if f.serving:
        return ServicePhase.DEGRADED
    gave_up = s.started_at is not None and plan is not None and plan.requeue_after is None
    if gave_up and s.active == target:
        return ServicePhase.FAILED  # never became ready within its progress deadline
    return ServicePhase.PROGRESSING


def _traffic(f: _Facts, router: Router) -> list[VersionTraffic]:
    wanted = f.plan.replicas if f.plan else {}
    if router is Router.HTTP_ROUTE and f.plan is not None:
        percent = {v: f.plan.weights.get(v, 0) for v in f.ready}
    else:
        percent = split_by_ready(f.ready)
    return [
        VersionTraffic(version=v, percent=percent[v], ready_replicas=n, replicas=wanted.get(v, 0))
        for v, n in f.ready.items()
    ]


def _rollout_state(s: State, router: Router) -> RolloutState:
    return RolloutState(
        step=s.step,
        started_at=to_rfc3339(s.started_at),
        step_started_at=to_rfc3339(s.step_started_at),
        step_ready_at=to_rfc3339(s.step_ready_at),
        rolled_back_version=s.rolled_back_version,
        rolled_back_reason=s.rolled_back_reason,
        rolled_back_message=s.rolled_back_message,
        router=router.value,
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
    grpc_address: str | None = None,
) -> dict[str, Any]:
    """The whole status as it goes on the wire."""
    s = plan.state if plan else State()
    versions = [v for v in (s.active, s.canary) if v]
    facts = _Facts(
        state=s,
        plan=plan,
        target=target,
        ready={v: (observed[v].ready if v in observed else 0) for v in versions},
        problem=problem,
        desired_replicas=desired_replicas,
    )
    old = {str(x.get("type")): x for x in old_conditions}
    conditions = [
        _condition(
            old=old,
            type_=ctype,
            status=ok,
            reason=reason,
            message=message,
            generation=generation,
            now=now,
        )
        for ctype, (ok, reason, message) in (
            (c.READY, _ready(facts)),
            (c.SERVING, _serving(facts)),
            (c.ROLLOUT_PROGRESSING, _progressing(facts)),
            (c.ROLLED_BACK, _rolled_back(facts)),
        )
    ]
    ready_cond = conditions[0]
    status = InferenceServiceStatus(
        phase=_phase(facts),
        url=url,
        grpc_address=grpc_address,
        conditions=conditions,
        active_version=s.active,
        canary_version=s.canary,
        canary_percent=plan.weights.get(s.canary) if plan and s.canary else None,
        previous_version=s.previous,
        traffic=_traffic(facts, router),
        ready_replicas=sum(facts.ready.values()),
        observed_generation=generation,
        message=ready_cond.message if ready_cond.status == "False" else None,
        rollout=_rollout_state(s, router),
    )
    return status.to_wire()
