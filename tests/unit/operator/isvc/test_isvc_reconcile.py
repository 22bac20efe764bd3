"""One pass after another against a recording ChildApi: the whole flow without a cluster."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from forja_api import conditions as c
from forja_operator.controller.events import Event
from forja_operator.inferenceservice import builders as b
from forja_operator.inferenceservice.errorrate import Counts
from forja_operator.inferenceservice.reconcile import (
    DeploymentView,
    PodView,
    ServiceMemory,
    deployment_view,
    reconcile_service,
)

from .isvc_helpers import isvc_body, record

T0 = datetime(2026, 1, 1, tzinfo=UTC)
SETTINGS = b.ServerSettings(image="img")


class FakeApi:
    """Keeps applied objects; Deployments become ready unless their version is broken."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.status: dict[str, Any] = {}
        self.broken: set[str] = set()
        self.status_patches = 0
        self.applies: list[str] = []

    async def apply(self, obj: dict[str, Any]) -> None:
        key = (obj["kind"], obj["metadata"]["name"])
        self.applies.append(f"{key[0]}/{key[1]}")
        if key in self.objects:
            merged = self.objects[key]
            merged["spec"].update(obj["spec"])
        else:
            self.objects[key] = obj

    async def delete(self, api_version: str, kind: str, namespace: str, name: str) -> None:
        self.objects.pop((kind, name), None)

    async def patch_status(self, namespace: str, name: str, patch: dict[str, Any]) -> None:
        self.status_patches += 1
        self.status = _apply_merge(self.status, patch)

    def deployments(self) -> list[DeploymentView]:
        out = []
        for (kind, _), obj in self.objects.items():
            if kind != "Deployment":
                continue
            version = obj["metadata"]["annotations"][b.VERSION_ANNOTATION]
            replicas = obj["spec"].get("replicas", 1)
            ready = 0 if version in self.broken else replicas
            body = {
                **obj,
                "status": {
                    "readyReplicas": ready,
                    "updatedReplicas": replicas,
                    "observedGeneration": 1,
                },
                "metadata": {**obj["metadata"], "generation": 1},
            }
            view = deployment_view(body)
            assert view is not None
            out.append(view)
        return out


def _apply_merge(doc: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(doc)
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        elif isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = _apply_merge(out[k], v)
        else:
            out[k] = v
    return out


class Harness:
    def __init__(self, spec: dict[str, Any], records: list) -> None:
        self.api = FakeApi()
        self.memory = ServiceMemory()
        self.spec = spec
        self.records = records
        self.events: list[Event] = []
        self.t = 0.0
        self.counts: dict[str, Counts] = {}

    async def _scrape(self, pods: Iterable[tuple[str, str]]) -> Mapping[str, Counts]:
        return {name: self.counts.get(name, Counts()) for name, _ in pods}

    def pods(self) -> list[PodView]:
        return [
            PodView(name=f"{d.name}-0", slug=d.slug, ip="127.0.0.9", ready=d.ready > 0)
            for d in self.api.deployments()
        ]

    def run(self, seconds: float = 0.0) -> float | None:
        self.t += seconds
        body = isvc_body(self.spec, status=self.api.status)
        return asyncio.run(
            reconcile_service(
                body=body,
                records=self.records,
                deployments=self.api.deployments(),
                pods=self.pods(),
                api=self.api,
                memory=self.memory,
                settings=SETTINGS,
                gateway_api=False,
                now=T0 + timedelta(seconds=self.t),
                scrape=self._scrape,
                emit=self.events.append,
            )
        )

    def cond(self, type_: str) -> dict[str, Any]:
        return next(x for x in self.api.status["conditions"] if x["type"] == type_)

    def served(self) -> dict[str, int]:
        return {d.version: d.replicas for d in self.api.deployments()}


SPEC = {
    "model": "smoke",
    "selector": {"alias": "production"},
    "replicas": 2,
    "rollout": {"canarySteps": [10, 50, 100], "pauseSeconds": 2, "progressDeadlineSeconds": 10},
}


def test_serve_then_roll_out_when_the_alias_moves() -> None:
    h = Harness(SPEC, [record("1.0.0", aliases=("production",)), record("2.0.0")])
    h.run()
    h.run(1)
    assert h.served() == {"1.0.0": 2}
    assert h.cond(c.READY)["status"] == "True" and h.api.status["phase"] == "Ready"
    assert ("Service", "svc") in h.api.objects and ("PodDisruptionBudget", "svc") in h.api.objects
    assert h.api.status["url"] == "http://svc.ns.svc.cluster.local"
    assert h.api.status["grpcAddress"] == "svc.ns.svc.cluster.local:8081"

    h.records = [record("1.0.0"), record("2.0.0", aliases=("production",))]
    h.run(1)
    assert h.api.status["canaryVersion"] == "2.0.0"
    assert h.cond(c.SERVING)["status"] == "True" and h.cond(c.READY)["status"] == "False"
    seen_steps = set()
    for _ in range(30):
        h.run(1)
        if h.api.status.get("canaryVersion"):
            seen_steps.add(h.api.status["rollout"]["step"])
            assert h.cond(c.SERVING)["status"] == "True"
    assert seen_steps == {0, 1, 2}
    assert h.api.status["activeVersion"] == "2.0.0"
    assert h.api.status["previousVersion"] == "1.0.0"
    assert "canaryVersion" not in h.api.status
    assert h.served() == {"2.0.0": 2}
    assert h.cond(c.READY)["status"] == "True"
    assert [e.reason for e in h.events].count(c.REASON_CANARY_STEP) == 2


def test_a_version_that_cannot_load_is_rolled_back() -> None:
    h = Harness(SPEC, [record("2.0.0", aliases=("production",)), record("3.0.0")])
    h.run()
    h.run(1)
    h.api.broken.add("3.0.0")
    h.records = [record("2.0.0"), record("3.0.0", aliases=("production",))]
    h.run(1)
    assert h.served() == {"2.0.0": 2, "3.0.0": 1}
    h.run(5)
    assert h.served()["2.0.0"] == 2  # the stable never shrinks while the canary struggles
    h.run(6)
    assert h.served() == {"2.0.0": 2}
    assert h.cond(c.ROLLED_BACK)["status"] == "True"
    assert h.cond(c.ROLLED_BACK)["reason"] == c.REASON_PROGRESS_DEADLINE
    assert h.cond(c.READY)["reason"] == c.REASON_ROLLED_BACK
    assert h.cond(c.SERVING)["status"] == "True"
    assert h.events[-1].type == "Warning"
    for _ in range(3):
        h.run(20)  # the rolled-back version is not retried
    assert h.served() == {"2.0.0": 2}


def test_error_rate_from_scraped_counters_rolls_back() -> None:
    h = Harness(SPEC, [record("1.0.0", aliases=("production",)), record("2.0.0")])
    h.run()
    h.records = [record("1.0.0"), record("2.0.0", aliases=("production",))]
    h.run(1)
    h.run(0.5)  # baseline taken
    pod = "svc-v2-0-0-0"
    h.counts[pod] = Counts(total=50, errors=40)
    h.run(0.5)
    assert h.cond(c.ROLLED_BACK)["reason"] == c.REASON_ERROR_RATE
    assert h.served() == {"1.0.0": 2}


def test_status_is_patched_only_on_change() -> None:
    h = Harness(SPEC, [record("1.0.0", aliases=("production",))])
    h.run()
    h.run(1)
    patches = h.api.status_patches
    applies = len(h.api.applies)
    for _ in range(5):
        h.run(1)
    assert h.api.status_patches == patches
    assert len(h.api.applies) == applies  # unchanged children are not re-sent


def test_no_matching_version_then_it_appears() -> None:
    h = Harness(SPEC, [])
    h.run()
    assert h.cond(c.READY)["reason"] == c.REASON_NO_MATCHING_VERSION
    assert h.api.status["phase"] == "Pending" and h.served() == {}
    h.records = [record("1.0.0", aliases=("production",))]
    h.run(1)
    h.run(1)
    assert h.cond(c.READY)["status"] == "True"


def test_invalid_spec_fails_with_the_field_and_touches_nothing() -> None:
    h = Harness({"model": "smoke", "selector": {"range": ">>1"}}, [record("1.0.0")])
    h.run()
    assert h.api.status["phase"] == "Failed"
    assert "spec.selector.range" in h.cond(c.READY)["message"]
    assert h.api.objects == {}
