from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from forja_api import conditions as c
from forja_api.v1alpha1.inferenceservice import Rollout
from forja_operator.inferenceservice.rollout import (
    Observed,
    Plan,
    Router,
    State,
    canary_replicas,
    plan_rollout,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)
ROLLOUT = Rollout(
    canary_steps=[10, 50, 100], pause_seconds=5, progress_deadline_seconds=30, max_error_rate=0.1
)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def step(
    state: State,
    target: str | None,
    observed: dict[str, Observed],
    t: float,
    *,
    replicas: int = 2,
    router: Router = Router.REPLICA_RATIO,
    rate: float | None = None,
) -> Plan:
    return plan_rollout(
        state=state,
        target=target,
        observed=observed,
        rollout=ROLLOUT,
        replicas=replicas,
        router=router,
        now=at(t),
        canary_error_rate=rate,
    )


def ready_as_planned(plan: Plan) -> dict[str, Observed]:
    return {v: Observed(n, n) for v, n in plan.replicas.items()}


def reasons(plan: Plan) -> list[str]:
    return [e.reason for e in plan.events]


def test_first_deploy_is_direct() -> None:
    plan = step(State(), "1.0.0", {}, 0)
    assert plan.state.active == "1.0.0" and plan.state.canary is None
    assert plan.replicas == {"1.0.0": 2} and plan.weights == {"1.0.0": 100}
    assert reasons(plan) == [c.REASON_DEPLOYING]


def test_nothing_resolves_nothing_planned() -> None:
    assert step(State(), None, {}, 0).replicas == {}


def walk_to_promotion(router: Router) -> list[Plan]:
    """v1 serves, the target moves to v2; every step becomes ready at once."""
    state = State(active="1.0.0")
    obs = {"1.0.0": Observed(2, 2)}
    plans = []
    t = 0.0
    plan = step(state, "2.0.0", obs, t, router=router)
    plans.append(plan)
    for _ in range(20):
        obs = ready_as_planned(plan) | {"1.0.0": Observed(2, 2)}
        t += 1
        plan = step(plan.state, "2.0.0", obs, t, router=router)
        plans.append(plan)
        if plan.state.canary is None:
            break
        t += 5
        plan = step(plan.state, "2.0.0", obs, t, router=router)
        plans.append(plan)
        if plan.state.canary is None:
            break
    return plans


def test_canary_steps_then_promotion_on_a_plain_service() -> None:
    plans = walk_to_promotion(Router.REPLICA_RATIO)
    started = plans[0]
    assert started.state.canary == "2.0.0" and started.state.step == 0
    assert started.replicas == {"1.0.0": 2, "2.0.0": 1}  # 1 of 3 endpoints: ~10 % is not possible
    steps = [p.state.step for p in plans if p.state.canary]
    assert sorted(set(steps)) == [0, 1, 2]
    last_step = next(p for p in plans if p.state.step == 2 and p.state.canary)
    assert last_step.replicas == {"1.0.0": 0, "2.0.0": 2}  # 100 %: stable has no endpoints
    final = plans[-1]
    assert final.state.active == "2.0.0" and final.state.previous == "1.0.0"
    assert final.replicas == {"2.0.0": 2}  # the old Deployment goes
    all_reasons = [r for p in plans for r in reasons(p)]
    assert all_reasons.count(c.REASON_CANARY_STEP) == 2
    assert all_reasons[0] == c.REASON_ROLLOUT_STARTED and all_reasons[-1] == c.REASON_PROMOTED


def test_http_route_keeps_the_stable_whole_and_weights_exact() -> None:
    plans = walk_to_promotion(Router.HTTP_ROUTE)
    weights = [dict(p.weights) for p in plans if p.state.canary]
    assert {"2.0.0": 10, "1.0.0": 90} in weights and {"2.0.0": 100, "1.0.0": 0} in weights
    assert all(p.replicas.get("1.0.0", 2) == 2 for p in plans if p.state.canary)


def test_a_step_waits_for_its_pause() -> None:
    plan = step(State(active="1.0.0"), "2.0.0", {"1.0.0": Observed(2, 2)}, 0)
    obs = {"1.0.0": Observed(2, 2), "2.0.0": Observed(1, 1)}
    plan = step(plan.state, "2.0.0", obs, 1)
    assert plan.state.step == 0 and plan.state.step_ready_at == at(1)
    assert plan.requeue_after == pytest.approx(5)
    plan = step(plan.state, "2.0.0", obs, 4)
    assert plan.state.step == 0 and plan.requeue_after == pytest.approx(2)
    plan = step(plan.state, "2.0.0", obs, 6)
    assert plan.state.step == 1


def test_a_canary_that_never_gets_ready_is_rolled_back_and_not_retried() -> None:
    plan = step(State(active="2.0.0"), "3.0.0", {"2.0.0": Observed(2, 2)}, 0)
    obs = {"2.0.0": Observed(2, 2), "3.0.0": Observed(1, 0)}
    plan = step(plan.state, "3.0.0", obs, 10)
    assert plan.state.canary == "3.0.0" and plan.requeue_after == pytest.approx(20)
    assert plan.replicas["2.0.0"] == 2  # the stable is untouched while the canary struggles
    plan = step(plan.state, "3.0.0", obs, 31)
    s = plan.state
    assert s.canary is None and s.active == "2.0.0"
    assert s.rolled_back_version == "3.0.0" and s.rolled_back_reason == c.REASON_PROGRESS_DEADLINE
    assert plan.replicas == {"2.0.0": 2}
    assert plan.events[0].type == "Warning" and "2.0.0 keeps serving" in plan.events[0].message
    again = step(s, "3.0.0", {"2.0.0": Observed(2, 2)}, 60)
    assert again.state.canary is None and again.events == ()


def test_error_rate_over_the_threshold_rolls_back() -> None:
    plan = step(State(active="1.0.0"), "2.0.0", {"1.0.0": Observed(2, 2)}, 0)
    obs = {"1.0.0": Observed(2, 2), "2.0.0": Observed(1, 1)}
    plan = step(plan.state, "2.0.0", obs, 2, rate=0.05)
    assert plan.state.canary == "2.0.0"
    plan = step(plan.state, "2.0.0", obs, 3, rate=0.5)
    assert plan.state.rolled_back_reason == c.REASON_ERROR_RATE
    assert plan.state.canary is None


def test_a_newer_target_replaces_the_canary_and_a_rolled_back_one_is_forgotten() -> None:
    plan = step(
        State(active="1.0.0", rolled_back_version="1.5.0"), "2.0.0", {"1.0.0": Observed(2, 2)}, 0
    )
    assert plan.state.rolled_back_version is None
    plan = step(plan.state, "3.0.0", {"1.0.0": Observed(2, 2)}, 1)
    assert plan.state.canary == "3.0.0" and plan.state.started_at == at(1)
    assert reasons(plan) == [c.REASON_ROLLOUT_ABORTED, c.REASON_ROLLOUT_STARTED]


def test_selector_back_to_active_aborts_the_canary() -> None:
    plan = step(State(active="1.0.0"), "2.0.0", {"1.0.0": Observed(2, 2)}, 0)
    plan = step(plan.state, "1.0.0", {"1.0.0": Observed(2, 2)}, 1)
    assert plan.state.canary is None and plan.replicas == {"1.0.0": 2}


def test_an_active_version_that_never_served_is_replaced_directly() -> None:
    plan = step(State(active="1.0.0", started_at=T0), "1.0.1", {"1.0.0": Observed(2, 0)}, 5)
    assert plan.state.active == "1.0.1" and plan.state.canary is None
    assert plan.replicas == {"1.0.1": 2}


def test_lost_readiness_resets_the_pause() -> None:
    plan = step(State(active="1.0.0"), "2.0.0", {"1.0.0": Observed(2, 2)}, 0)
    ok = {"1.0.0": Observed(2, 2), "2.0.0": Observed(1, 1)}
    plan = step(plan.state, "2.0.0", ok, 1)
    plan = step(plan.state, "2.0.0", {**ok, "2.0.0": Observed(1, 0)}, 4)
    assert plan.state.step_ready_at is None
    assert reasons(plan) == [c.REASON_CANARY_STEP]
    plan = step(plan.state, "2.0.0", ok, 5)
    plan = step(plan.state, "2.0.0", ok, 8)
    assert plan.state.step == 0  # the pause counts again from 5


@pytest.mark.parametrize(
    ("percent", "replicas", "router", "expected"),
    [
        (10, 1, Router.REPLICA_RATIO, (1, 1)),
        (10, 9, Router.REPLICA_RATIO, (1, 9)),
        (50, 4, Router.REPLICA_RATIO, (4, 4)),
        (100, 4, Router.REPLICA_RATIO, (4, 0)),
        (10, 4, Router.HTTP_ROUTE, (1, 4)),
        (50, 4, Router.HTTP_ROUTE, (2, 4)),
        (100, 4, Router.HTTP_ROUTE, (4, 4)),
    ],
)
def test_canary_replicas(
    percent: int, replicas: int, router: Router, expected: tuple[int, int]
) -> None:
    assert canary_replicas(percent, replicas, router) == expected
