from __future__ import annotations

from datetime import UTC, datetime

from forja_api import conditions as c
from forja_api.v1alpha1.inferenceservice import InferenceServiceStatus
from forja_operator.inferenceservice.rollout import Observed, Plan, Router, State
from forja_operator.inferenceservice.status import (
    Problem,
    compute_status,
    split_by_ready,
    state_from_status,
)

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def status(
    state: State,
    target: str | None,
    observed: dict[str, Observed],
    *,
    weights: dict[str, int] | None = None,
    replicas: dict[str, int] | None = None,
    router: Router = Router.REPLICA_RATIO,
    problem: Problem | None = None,
    old: list | None = None,
) -> dict:
    plan = Plan(state, replicas or {v: o.replicas for v, o in observed.items()}, weights or {})
    return compute_status(
        generation=3,
        plan=plan,
        observed=observed,
        target=target,
        router=router,
        url="http://svc.ns.svc.cluster.local",
        desired_replicas=2,
        problem=problem,
        old_conditions=old or [],
        now=NOW,
    )


def conds(st: dict) -> dict[str, dict]:
    return {x["type"]: x for x in st["conditions"]}


def test_ready_only_when_the_target_serves() -> None:
    st = status(State(active="1.0.0"), "1.0.0", {"1.0.0": Observed(2, 2)})
    cs = conds(st)
    assert cs[c.READY]["status"] == "True" and st["phase"] == "Ready"
    assert st["observedGeneration"] == 3 and cs[c.READY]["observedGeneration"] == 3
    assert st["traffic"] == [
        {"version": "1.0.0", "percent": 100, "readyReplicas": 2, "replicas": 2}
    ]
    InferenceServiceStatus.model_validate(st)  # the wire form is the API type


def test_mid_rollout_ready_is_false_but_serving_stays_true() -> None:
    st = status(
        State(active="1.0.0", canary="2.0.0", step=1),
        "2.0.0",
        {"1.0.0": Observed(2, 2), "2.0.0": Observed(2, 2)},
        weights={"1.0.0": 50, "2.0.0": 50},
    )
    cs = conds(st)
    assert cs[c.READY]["status"] == "False"
    assert cs[c.READY]["reason"] == c.REASON_ROLLOUT_IN_PROGRESS
    assert cs[c.SERVING]["status"] == "True"
    assert cs[c.ROLLOUT_PROGRESSING]["status"] == "True"
    assert st["phase"] == "Progressing" and st["canaryVersion"] == "2.0.0"
    assert st["canaryPercent"] == 50
    assert {t["version"]: t["percent"] for t in st["traffic"]} == {"1.0.0": 50, "2.0.0": 50}


def test_plain_service_reports_the_ready_ratio_not_the_nominal_weight() -> None:
    st = status(
        State(active="1.0.0", canary="2.0.0"),
        "2.0.0",
        {"1.0.0": Observed(2, 2), "2.0.0": Observed(1, 1)},
        weights={"1.0.0": 90, "2.0.0": 10},
    )
    assert {t["version"]: t["percent"] for t in st["traffic"]} == {"1.0.0": 67, "2.0.0": 33}
    routed = status(
        State(active="1.0.0", canary="2.0.0"),
        "2.0.0",
        {"1.0.0": Observed(2, 2), "2.0.0": Observed(1, 1)},
        weights={"1.0.0": 90, "2.0.0": 10},
        router=Router.HTTP_ROUTE,
    )
    assert {t["version"]: t["percent"] for t in routed["traffic"]} == {"1.0.0": 90, "2.0.0": 10}


def test_rolled_back_target_is_not_ready_and_says_why() -> None:
    st = status(
        State(
            active="2.0.0",
            rolled_back_version="3.0.0",
            rolled_back_reason=c.REASON_PROGRESS_DEADLINE,
            rolled_back_message="canary 3.0.0 not ready",
        ),
        "3.0.0",
        {"2.0.0": Observed(2, 2)},
    )
    cs = conds(st)
    assert cs[c.ROLLED_BACK]["status"] == "True"
    assert cs[c.ROLLED_BACK]["reason"] == c.REASON_PROGRESS_DEADLINE
    assert cs[c.READY]["status"] == "False" and cs[c.READY]["reason"] == c.REASON_ROLLED_BACK
    assert cs[c.SERVING]["status"] == "True" and st["phase"] == "Degraded"


def test_no_matching_version() -> None:
    st = status(State(), None, {}, problem=Problem(c.REASON_NO_MATCHING_VERSION, "no match"))
    assert conds(st)[c.READY]["reason"] == c.REASON_NO_MATCHING_VERSION
    assert st["phase"] == "Pending" and st["message"] == "no match"


def test_transition_time_kept_while_status_holds() -> None:
    old = [
        {"type": c.READY, "status": "True", "lastTransitionTime": "2025-01-01T00:00:00Z"},
        {"type": c.SERVING, "status": "False", "lastTransitionTime": "2025-01-01T00:00:00Z"},
    ]
    cs = conds(status(State(active="1.0.0"), "1.0.0", {"1.0.0": Observed(2, 2)}, old=old))
    assert cs[c.READY]["lastTransitionTime"] == "2025-01-01T00:00:00Z"
    assert cs[c.SERVING]["lastTransitionTime"] == "2026-01-01T00:00:00Z"


def test_state_round_trips_through_status() -> None:
    state = State(
        active="1.0.0",
        canary="2.0.0",
        previous="0.9.0",
        step=1,
        started_at=NOW,
        step_started_at=NOW,
        step_ready_at=None,
        rolled_back_version=None,
    )
    st = status(state, "2.0.0", {"1.0.0": Observed(2, 2)}, weights={"2.0.0": 50})
    assert state_from_status(st) == state


def test_split_by_ready_sums_to_100() -> None:
    assert split_by_ready({"a": 1, "b": 1, "c": 1}) in (
        {"a": 34, "b": 33, "c": 33},
        {"a": 33, "b": 34, "c": 33},
        {"a": 33, "b": 33, "c": 34},
    )
    assert split_by_ready({"a": 0}) == {"a": 0}
