"""Apply ModelVersion plans: verify and benchmark pods, status, then the model's `latest`
and aliases."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from forja_operator import metrics
from forja_operator.builders.benchmark import render_benchmark_pod
from forja_operator.builders.modelversion import render_verify_pod
from forja_operator.controller.events import Event
from forja_operator.controller.ownership import is_controlled_by
from forja_operator.reconcilers.common import invalid_spec_status, patch_status
from forja_operator.runtime import Runtime, post_event
from forja_operator.status.benchmark import refuse_benchmark
from forja_operator.status.modelversion import (
    ALIASES_ANNOTATION,
    VersionPlan,
    own_latest,
    plan_model_aliases,
    plan_modelversion,
)

__all__ = ["reconcile_model", "reconcile_modelversion"]

GONE_NAMESAKE_WAIT_SECONDS = 5.0


async def _patch_status(rt: Runtime, mv: dict[str, Any], new: dict[str, Any]) -> bool:
    updated = await patch_status(rt.kube, "ModelVersion", mv, new)
    if updated is not None:
        rt.versions.put(updated, group=updated["spec"]["model"])
    return updated is not None


async def _create_verify_pod(
    rt: Runtime, mv: dict[str, Any], pods: list[dict[str, Any]], plan: VersionPlan, now: datetime
) -> VersionPlan:
    pod, created = await rt.kube.ensure(render_verify_pod(mv, rt.config))
    if created or is_controlled_by(pod, mv):
        rt.verify_pods.put(pod, group=mv["metadata"]["name"])
        return plan
    # Someone else's pod holds the name: the planner refuses it (or waits
    # while the garbage collector removes a gone namesake's).
    plan = plan_modelversion(mv, [*pods, pod], now, rt.config.benchmark)
    if plan.create_verify_pod:
        plan.create_verify_pod, plan.retry_after = False, GONE_NAMESAKE_WAIT_SECONDS
    return plan


async def _create_benchmark_pod(
    rt: Runtime, mv: dict[str, Any], plan: VersionPlan, now: datetime
) -> None:
    pod, created = await rt.kube.ensure(render_benchmark_pod(mv, rt.config))
    if created or is_controlled_by(pod, mv):
        rt.verify_pods.put(pod, group=mv["metadata"]["name"])
    else:
        # Not ours: its report is not trusted; the benchmark is recorded as failed.
        plan.events += refuse_benchmark(plan.status, pod["metadata"]["name"], now).events


@metrics.instrumented("ModelVersion")
async def reconcile_modelversion(rt: Runtime, key: tuple[str, str]) -> float | None:
    ns, name = key
    mv = rt.versions.live(ns, name)
    if mv is None:
        return None
    pods, now = rt.verify_pods.group(ns, name), datetime.now(UTC)
    try:
        plan = plan_modelversion(mv, pods, now, rt.config.benchmark)
    except ValidationError as exc:
        await _patch_status(rt, mv, invalid_spec_status(mv, exc))
        return None
    if plan.create_verify_pod:
        plan = await _create_verify_pod(rt, mv, pods, plan, now)
    if plan.create_benchmark_pod:
        await _create_benchmark_pod(rt, mv, plan, now)
    model = mv["spec"]["model"]
    new = plan.status.to_wire()
    was_latest = bool((mv.get("status") or {}).get("latest"))
    new["latest"] = own_latest(mv, new, rt.versions.group(ns, model))
    changed = await _patch_status(rt, mv, new)
    for pod_name in plan.delete_pods:
        await rt.kube.delete("Pod", ns, pod_name)
    if changed:
        for ev in plan.events:
            post_event(rt, mv, ev)
        if new["latest"] and not was_latest:
            post_event(rt, mv, _latest_event(mv))
    rt.queues["models"].add((ns, model))
    return plan.retry_after


async def reconcile_model(rt: Runtime, key: tuple[str, str]) -> float | None:
    """Keep `latest` and the aliases of one model consistent across its versions."""
    ns, model = key
    versions = rt.versions.group(ns, model)
    plan = plan_model_aliases(versions)
    by_name = {v["metadata"]["name"]: v for v in versions}
    for name, aliases in plan.aliases.items():
        updated = await rt.kube.merge_patch(
            "ModelVersion", ns, name, {"spec": {"aliases": aliases}}
        )
        rt.versions.put(updated, group=model)
    for name, held in plan.held.items():
        updated = await rt.kube.merge_patch(
            "ModelVersion",
            ns,
            name,
            {"metadata": {"annotations": {ALIASES_ANNOTATION: json.dumps(held)}}},
        )
        rt.versions.put(updated, group=model)
    for name, latest in plan.latest.items():
        updated = await rt.kube.merge_patch(
            "ModelVersion", ns, name, {"status": {"latest": latest}}, status=True
        )
        rt.versions.put(updated, group=model)
        if latest:
            post_event(rt, by_name[name], _latest_event(by_name[name]))
    for name, ev in plan.events:
        if name in by_name:
            post_event(rt, by_name[name], ev)
    return None


def _latest_event(mv: dict[str, Any]) -> Event:
    spec = mv["spec"]
    return Event("Normal", "Latest", f"{spec['version']} is now latest of {spec['model']}")
