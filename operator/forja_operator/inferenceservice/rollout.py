"""The rollout state machine: pure, from (state, target, observations, now) to a plan.

The operator persists :class:`RolloutState` in ``status.rollout`` and the version
fields of status, and calls :func:`plan_rollout` on every reconcile; the plan
says which Deployments to keep at how many replicas, the nominal traffic weights,
the Events to post and when to look again. Nothing here reads a clock or the API.

A rollout from the active (stable) version to a new target walks
``spec.rollout.canarySteps`` (e.g. 10 -> 50 -> 100). A step is promoted when the
canary has been fully ready for ``pauseSeconds``; after the last step the canary
becomes active and the old version's Deployment goes. The canary is rolled back
(its Deployment deleted, the stable untouched) when it is not ready within
``progressDeadlineSeconds`` of its step's start, or when its error share during
the step exceeds ``maxErrorRate``. A rolled-back version is not retried until the
selector resolves to something else. The stable version keeps its full replicas
through every step except, on a plain Service, the final 100 % step (see
docs/rollouts.md for why that is the only way to send it no traffic there).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum

from forja_api import conditions as c
from forja_api.v1alpha1.inferenceservice import Rollout
from forja_operator.controller.events import Event

__all__ = [
    "Event",
    "Observed",
    "Plan",
    "Router",
    "State",
    "canary_replicas",
    "plan_rollout",
]


class Router(StrEnum):
    REPLICA_RATIO = "ReplicaRatio"
    """One Service over every version's pods: traffic follows ready endpoints."""
    HTTP_ROUTE = "HTTPRoute"
    """A Gateway API HTTPRoute with exact backend weights."""


@dataclass(frozen=True)
class State:
    """What the operator remembers between reconciles (mirrors status)."""

    active: str | None = None
    canary: str | None = None
    previous: str | None = None
    step: int = 0
    started_at: datetime | None = None
    step_started_at: datetime | None = None
    step_ready_at: datetime | None = None
    rolled_back_version: str | None = None
    rolled_back_reason: str | None = None
    rolled_back_message: str | None = None


@dataclass(frozen=True)
class Observed:
    """One version's Deployment as last seen."""

    replicas: int
    """spec.replicas the Deployment currently asks for."""
    ready: int
    """status.readyReplicas."""
    up_to_date: bool = True
    """The controller has observed the Deployment's current generation."""


@dataclass(frozen=True)
class Plan:
    state: State
    replicas: Mapping[str, int]
    """Every version that keeps a Deployment, with its replicas; others are deleted."""
    weights: Mapping[str, int]
    """Nominal traffic percent per version (exact under an HTTPRoute)."""
    events: tuple[Event, ...] = ()
    requeue_after: float | None = None
    """Seconds until a time-driven decision is due (a pause ends, a deadline passes)."""
    scaled_down: frozenset[str] = field(default_factory=frozenset)
    """Versions kept at 0 replicas (plain Service, last step) rather than deleted."""


def canary_replicas(percent: int, replicas: int, router: Router) -> tuple[int, int]:
    """(canary, stable) replicas for a step of percent.

    Under an HTTPRoute the weights split traffic, so the canary needs only the
    share of capacity it receives and the stable keeps all of its replicas. On a
    plain Service traffic follows ready endpoints, so the canary gets the replica
    count whose ratio to the stable's is closest to percent (at least one pod;
    with one stable replica the first step is necessarily ~50 %), and the last
    step (100 %) is reached only by scaling the stable to zero.
    """
    replicas = max(replicas, 1)
    if percent >= 100:
        return replicas, (replicas if router is Router.HTTP_ROUTE else 0)
    if router is Router.HTTP_ROUTE:
        return max(1, math.ceil(replicas * percent / 100)), replicas
    return max(1, round(replicas * percent / (100 - percent))), replicas


def _seconds(since: datetime | None, now: datetime) -> float:
    return 0.0 if since is None else (now - since).total_seconds()


def plan_rollout(
    *,
    state: State,
    target: str | None,
    observed: Mapping[str, Observed],
    rollout: Rollout,
    replicas: int,
    router: Router,
    now: datetime,
    canary_error_rate: float | None = None,
) -> Plan:
    """Decide the next state. ``target`` is the resolved version (None: none resolves)."""
    events: list[Event] = []
    s = state

    def ready(version: str | None) -> int:
        obs = observed.get(version) if version else None
        return obs.ready if obs else 0

    if s.active is None:
        if target is None:
            return Plan(s, {}, {})
        s = State(active=target, started_at=now, previous=s.previous)
        events.append(Event("Normal", c.REASON_DEPLOYING, f"deploying version {target}"))
    elif s.canary is not None and target != s.canary:
        # The selector moved while a canary ran: back to stable (or on to a newer target).
        why = "no version resolves" if target is None else f"selector now resolves to {target}"
        events.append(
            Event("Normal", c.REASON_ROLLOUT_ABORTED, f"canary {s.canary} abandoned: {why}")
        )
        s = _without_canary(s)

    if target is not None and target != s.active and s.canary is None:
        s = _move_to(s, target, ready(s.active), rollout, now, events)

    requeue: float | None = None
    if s.canary is not None:
        s, step_events, requeue = _advance(
            s,
            observed=observed,
            rollout=rollout,
            replicas=replicas,
            router=router,
            now=now,
            error_rate=canary_error_rate,
        )
        events += step_events
    elif s.active is not None and ready(s.active) == 0 and s.started_at is not None:
        left = rollout.progress_deadline_seconds - _seconds(s.started_at, now)
        requeue = max(left, 1.0) if left > 0 else None

    return _layout(
        s, rollout=rollout, replicas=replicas, router=router, events=tuple(events), requeue=requeue
    )


def _move_to(  # noqa: PLR0917 - the rollout's own inputs, named at the one call
    s: State, target: str, active_ready: int, rollout: Rollout, now: datetime, events: list[Event]
) -> State:
    """Start towards a new target: replace what does not serve, else a canary's first step."""
    if s.rolled_back_version == target:
        return s  # not retried until the selector resolves to something else
    if active_ready == 0:
        # Nothing serves, so there is nothing a canary would protect: replace.
        events.append(
            Event("Normal", c.REASON_DEPLOYING, f"replacing {s.active} (not ready) by {target}")
        )
        return State(active=target, previous=s.active, started_at=now)
    first = rollout.canary_steps[0]
    s = replace(
        _without_canary(s),
        canary=target,
        step=0,
        started_at=now,
        step_started_at=now,
        step_ready_at=None,
        rolled_back_version=None,
        rolled_back_reason=None,
        rolled_back_message=None,
    )
    events.append(
        Event(
            "Normal",
            c.REASON_ROLLOUT_STARTED,
            f"rolling out {target} over {s.active}: step 1/{len(rollout.canary_steps)} at {first}%",
        )
    )
    return s


def _without_canary(s: State) -> State:
    return replace(s, canary=None, step=0, step_started_at=None, step_ready_at=None)


def _advance(
    s: State,
    *,
    observed: Mapping[str, Observed],
    rollout: Rollout,
    replicas: int,
    router: Router,
    now: datetime,
    error_rate: float | None,
) -> tuple[State, list[Event], float | None]:
    assert s.canary is not None
    steps = rollout.canary_steps
    percent = steps[min(s.step, len(steps) - 1)]
    want, _ = canary_replicas(percent, replicas, router)
    obs = observed.get(s.canary)
    fully_ready = obs is not None and obs.up_to_date and obs.replicas == want and obs.ready >= want

    if error_rate is not None and error_rate > rollout.max_error_rate:
        msg = (
            f"canary {s.canary} error rate {error_rate:.1%} exceeded maxErrorRate "
            f"{rollout.max_error_rate:.1%} at step {s.step + 1} ({percent}%); "
            f"{s.active} keeps serving"
        )
        return (
            _rolled_back(s, c.REASON_ERROR_RATE, msg),
            [Event("Warning", c.REASON_ROLLED_BACK, msg)],
            None,
        )

    if not fully_ready:
        elapsed = _seconds(s.step_started_at, now)
        if elapsed > rollout.progress_deadline_seconds:
            have = obs.ready if obs else 0
            msg = (
                f"canary {s.canary} not ready within {rollout.progress_deadline_seconds}s at step "
                f"{s.step + 1} ({percent}%, {have}/{want} ready); {s.active} keeps serving"
            )
            return (
                _rolled_back(s, c.REASON_PROGRESS_DEADLINE, msg),
                [Event("Warning", c.REASON_ROLLED_BACK, msg)],
                None,
            )
        lost = s.step_ready_at is not None
        s = replace(s, step_ready_at=None)
        events = (
            [Event("Warning", c.REASON_CANARY_STEP, f"canary {s.canary} lost readiness")]
            if lost
            else []
        )
        return s, events, max(rollout.progress_deadline_seconds - elapsed, 1.0)

    if s.step_ready_at is None:
        s = replace(s, step_ready_at=now)
    healthy_for = _seconds(s.step_ready_at, now)
    if healthy_for < rollout.pause_seconds:
        return s, [], max(rollout.pause_seconds - healthy_for, 0.5)

    if s.step + 1 < len(steps):
        nxt = s.step + 1
        s = replace(s, step=nxt, step_started_at=now, step_ready_at=None)
        return (
            s,
            [
                Event(
                    "Normal",
                    c.REASON_CANARY_STEP,
                    f"canary {s.canary} healthy at {percent}%: step {nxt + 1}/{len(steps)} at "
                    f"{steps[nxt]}%",
                )
            ],
            0.5,
        )

    promoted = State(active=s.canary, previous=s.active)
    return (
        promoted,
        [Event("Normal", c.REASON_PROMOTED, f"{s.canary} promoted; {s.active} retired")],
        None,
    )


def _rolled_back(s: State, reason: str, message: str) -> State:
    return replace(
        _without_canary(s),
        rolled_back_version=s.canary,
        rolled_back_reason=reason,
        rolled_back_message=message,
    )


def _layout(
    s: State,
    *,
    rollout: Rollout,
    replicas: int,
    router: Router,
    events: tuple[Event, ...],
    requeue: float | None,
) -> Plan:
    if s.active is None:
        return Plan(s, {}, {}, events, requeue)
    if s.canary is None:
        return Plan(s, {s.active: replicas}, {s.active: 100}, events, requeue)
    percent = rollout.canary_steps[min(s.step, len(rollout.canary_steps) - 1)]
    canary, stable = canary_replicas(percent, replicas, router)
    weights = {s.canary: percent, s.active: 100 - percent}
    scaled = frozenset({s.active}) if stable == 0 else frozenset()
    return Plan(s, {s.active: stable, s.canary: canary}, weights, events, requeue, scaled)
