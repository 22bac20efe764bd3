"""Apply ModelVersion plans: verify pods, status, then the model's `latest` and aliases."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from forja_operator import metrics
from forja_operator.builders.modelversion import render_verify_pod
from forja_operator.errors import NotFoundError
from forja_operator.reconcilers.trainingjob import status_patch
from forja_operator.runtime import Runtime, post_event
from forja_operator.status.modelversion import (
    ALIASES_ANNOTATION,
    plan_model_aliases,
    plan_modelversion,
)

__all__ = ["reconcile_model", "reconcile_modelversion"]


async def reconcile_modelversion(rt: Runtime, key: tuple[str, str]) -> float | None:
    started = time.perf_counter()
    metrics.RECONCILES.labels("ModelVersion").inc()
    try:
        return await _reconcile_version(rt, key)
    except Exception:
        metrics.ERRORS.labels("ModelVersion").inc()
        raise
    finally:
        metrics.LATENCY.labels("ModelVersion").observe(time.perf_counter() - started)


async def _patch_status(rt: Runtime, mv: dict[str, Any], new: dict[str, Any]) -> bool:
    patch = status_patch(mv.get("status"), new)
    if patch is None:
        return False
    meta = mv["metadata"]
    try:
        updated = await rt.kube.merge_patch(
            "ModelVersion", meta["namespace"], meta["name"], {"status": patch}, status=True
        )
    except NotFoundError:
        return False
    rt.versions.put(updated, group=updated["spec"]["model"])
    return True


async def _reconcile_version(rt: Runtime, key: tuple[str, str]) -> float | None:
    ns, name = key
    mv = rt.versions.get(ns, name)
    if mv is None or mv["metadata"].get("deletionTimestamp"):
        return None
    try:
        plan = plan_modelversion(mv, rt.verify_pods.group(ns, name), datetime.now(UTC))
    except ValidationError as exc:
        msg = "; ".join(
            f"spec.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        await _patch_status(rt, mv, {**(mv.get("status") or {}), "phase": "Failed", "message": msg})
        return None
    if plan.create_verify_pod:
        pod, _ = await rt.kube.ensure(render_verify_pod(mv, rt.config))
        rt.verify_pods.put(pod, group=name)
    changed = await _patch_status(rt, mv, plan.status.to_wire())
    for pod_name in plan.delete_pods:
        await rt.kube.delete("Pod", ns, pod_name)
    if changed:
        for ev in plan.events:
            post_event(rt, mv, ev.type, ev.reason, ev.message)
    rt.queues["models"].add((ns, mv["spec"]["model"]))
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
            post_event(
                rt,
                by_name[name],
                "Normal",
                "Latest",
                f"{by_name[name]['spec']['version']} is now latest of {model}",
            )
    for name, ev in plan.events:
        if name in by_name:
            post_event(rt, by_name[name], ev.type, ev.reason, ev.message)
    return None
