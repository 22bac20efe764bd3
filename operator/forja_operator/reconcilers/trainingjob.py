"""Apply a TrainingJob's plan: create or delete attempt pods, version, patch status."""

from __future__ import annotations

import contextlib
import logging
import time
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from forja_api import conditions as c
from forja_api import contract, semver
from forja_api.v1alpha1.trainingjob import Phase, TrainingJobSpec, TrainingJobStatus
from forja_operator import metrics
from forja_operator.builders.attempt import AttemptInputs, attempt_name, render_attempt_pod
from forja_operator.builders.common import JOB_UID_LABEL
from forja_operator.builders.modelversion import render_modelversion
from forja_operator.builders.rbac import render_trainer_rbac
from forja_operator.errors import ConflictError, NotFoundError
from forja_operator.runtime import Runtime, post_event
from forja_operator.status.trainingjob import Event, JobPlan, plan_trainingjob, set_condition

__all__ = ["next_free_version", "reconcile_trainingjob", "status_patch"]

log = logging.getLogger(__name__)
MAX_VERSION_TRIES = 50


def status_patch(old: dict[str, Any] | None, new: dict[str, Any]) -> dict[str, Any] | None:
    """A merge patch turning ``old`` into ``new`` (None when equal); removed keys become null."""
    old = old or {}
    if old == new:
        return None
    patch: dict[str, Any] = dict(new)
    for key in old:
        if key not in new:
            patch[key] = None
    return patch


def _owned_pods(rt: Runtime, job: dict[str, Any]) -> list[dict[str, Any]]:
    meta = job["metadata"]
    return [
        p
        for p in rt.job_pods.group(meta["namespace"], meta["name"])
        if (p["metadata"].get("labels") or {}).get(JOB_UID_LABEL) == meta.get("uid")
    ]


async def _ensure_rbac(rt: Runtime, namespace: str) -> None:
    if namespace in rt.rbac_ready:
        return
    for obj in render_trainer_rbac(namespace):
        await rt.kube.ensure(obj)
    rt.rbac_ready.add(namespace)


async def _claim(rt: Runtime, job: dict[str, Any], version: semver.Version) -> dict[str, Any]:
    """Record ``version`` in the job's status, only if the job is unchanged since read.

    The resourceVersion precondition makes the claim a compare-and-swap: of two actors
    versioning one job at once (a retried reconcile, a second replica), one wins and
    the other gets a ConflictError and starts over from the job as it now is.
    """
    meta = job["metadata"]
    patch = {
        "metadata": {"resourceVersion": meta["resourceVersion"]},
        "status": {"version": str(version)},
    }
    updated = await rt.kube.merge_patch(
        "TrainingJob", meta["namespace"], meta["name"], patch, status=True
    )
    rt.jobs.put(updated)
    return updated


async def next_free_version(
    rt: Runtime,
    job: dict[str, Any],
    spec: TrainingJobSpec,
    result: contract.Result,
    overrides: dict[str, Any],
) -> tuple[str, str] | str:
    """Create the job's ModelVersion at the model's next free version; exactly one per job.

    Two locks, both held by the API server: the job claims a version in its status
    with a resourceVersion precondition (one claim per job wins), and the
    ModelVersion's name ``<model>-v<version>`` is unique (one job per version wins; a
    loser claims the next version). A version this job already created (found by its
    uid label, or a 409 on a name labelled with its uid) is reused.
    Returns (name, version), or a message when an explicit version is taken.
    """
    meta = job["metadata"]
    ns, uid = meta["namespace"], meta.get("uid", "")
    mine = await rt.kube.list("ModelVersion", ns, f"{JOB_UID_LABEL}={uid}")
    if mine:
        mv = mine[0]
        return mv["metadata"]["name"], mv["spec"]["version"]
    explicit = spec.versioning.version
    bump: semver.Part = spec.versioning.effective_bump.value
    claimed = (job.get("status") or {}).get("version")
    if claimed:
        candidate = semver.parse(claimed)
    elif explicit:
        candidate = semver.parse(explicit)
        job = await _claim(rt, job, candidate)
    else:
        parsed = []
        for mv in await rt.kube.list("ModelVersion", ns):
            if mv.get("spec", {}).get("model") == spec.model:
                with contextlib.suppress(semver.SemverError):
                    parsed.append(semver.parse(mv["spec"].get("version", "")))
        candidate = semver.bump(semver.highest(parsed), bump)
        job = await _claim(rt, job, candidate)
    for _ in range(MAX_VERSION_TRIES):
        body = render_modelversion(job, spec, candidate, result, overrides)
        try:
            created = await rt.kube.create(body)
        except ConflictError:
            with contextlib.suppress(NotFoundError):
                taken = await rt.kube.get("ModelVersion", ns, body["metadata"]["name"])
                if (taken["metadata"].get("labels") or {}).get(JOB_UID_LABEL) == uid:
                    rt.versions.put(taken, group=spec.model)
                    return taken["metadata"]["name"], taken["spec"]["version"]
            if explicit:
                return f"version {explicit} of model {spec.model} already exists"
            candidate = semver.bump(candidate, bump)
            job = await _claim(rt, job, candidate)
            continue
        rt.versions.put(created, group=spec.model)
        metrics.VERSIONS.inc()
        return created["metadata"]["name"], str(candidate)
    raise RuntimeError(f"no free version for {spec.model} after {MAX_VERSION_TRIES} tries")


async def _apply_version(
    rt: Runtime, job: dict[str, Any], spec: TrainingJobSpec, plan: JobPlan
) -> None:
    result = plan.create_version
    if result is None:
        return
    status = plan.status
    overrides = status.attempts[-1].overrides if status.attempts else {}
    outcome = await next_free_version(rt, job, spec, result, overrides)
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    gen = job["metadata"].get("generation")
    if isinstance(outcome, str):
        status.phase = Phase.FAILED
        status.message = outcome
        set_condition(status.conditions, c.VERSIONED, False, "VersionExists", outcome, gen, now)
        set_condition(status.conditions, c.SUCCEEDED, False, "VersionExists", outcome, gen, now)
        set_condition(status.conditions, c.FAILED, True, "VersionExists", outcome, gen, now)
        plan.events.append(Event("Warning", "VersionExists", outcome))
        return
    name, version = outcome
    status.model_version, status.version = name, version
    msg = f"created ModelVersion {name} ({spec.model} {version})"
    set_condition(status.conditions, c.VERSIONED, True, "VersionCreated", msg, gen, now)
    plan.events.append(Event("Normal", c.VERSIONED, msg))


async def reconcile_trainingjob(rt: Runtime, key: tuple[str, str]) -> float | None:
    started = time.perf_counter()
    metrics.RECONCILES.labels("TrainingJob").inc()
    try:
        return await _reconcile(rt, key)
    except Exception:
        metrics.ERRORS.labels("TrainingJob").inc()
        raise
    finally:
        metrics.LATENCY.labels("TrainingJob").observe(time.perf_counter() - started)


async def _reconcile(rt: Runtime, key: tuple[str, str]) -> float | None:
    ns, name = key
    job = rt.jobs.get(ns, name)
    if job is None or job["metadata"].get("deletionTimestamp"):
        return None
    try:
        spec = TrainingJobSpec.model_validate(job.get("spec") or {})
    except ValidationError as exc:
        # The CRD schema should have refused it; do not retry a spec that cannot work.
        msg = "; ".join(
            f"spec.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        await _patch_status(
            rt, job, {**(job.get("status") or {}), "phase": "Failed", "message": msg}
        )
        return None
    pods = _owned_pods(rt, job)
    plan = plan_trainingjob(job, spec, pods, datetime.now(UTC))
    # An open attempt whose pod is not cached: make sure it is really gone before
    # recording it as preempted (the watch may lag behind a fresh operator start).
    seen = {p["metadata"]["name"] for p in pods}
    prev_open = [
        a
        for a in TrainingJobStatus.model_validate(job.get("status") or {}).attempts
        if a.end_time is None
    ]
    refetched = False
    for att in prev_open:
        if att.pod and att.pod not in seen:
            try:
                pod = await rt.kube.get("Pod", ns, att.pod)
            except NotFoundError:
                continue
            rt.job_pods.put(pod, group=name)
            refetched = True
    if refetched:
        plan = plan_trainingjob(job, spec, _owned_pods(rt, job), datetime.now(UTC))

    if plan.create_version is not None:
        await _apply_version(rt, job, spec, plan)

    if plan.create_attempt is not None:
        new = plan.create_attempt
        await _ensure_rbac(rt, ns)
        pod = render_attempt_pod(
            job,
            spec,
            AttemptInputs(new.index, new.overrides, new.resume_from, new.deadline_seconds),
            rt.config,
        )
        obj, created = await rt.kube.ensure(pod)
        rt.job_pods.put(obj, group=name)
        if created:
            metrics.CREATED_ATTEMPTS.inc()
        else:
            plan.events = [
                e for e in plan.events if e.reason not in (c.CREATED, c.RESTARTING, "Resumed")
            ]
        # Plan again with the new pod: the one status patch then already lists the
        # attempt, and the pod's ADDED event finds nothing left to write.
        again = plan_trainingjob(job, spec, _owned_pods(rt, job), datetime.now(UTC))
        if again.create_attempt is None and not again.delete_pods:
            plan.status = again.status

    new_status = plan.status.to_wire()
    # Status first, then deletions: a pod deleted for suspend or deadline is
    # already recorded as such when its exit code arrives.
    changed = await _patch_status(rt, job, new_status)
    for pod_name in plan.delete_pods:
        await rt.kube.delete("Pod", ns, pod_name)
    if changed:
        for ev in plan.events:
            post_event(rt, job, ev.type, ev.reason, ev.message)
            if ev.reason in (
                c.REASON_OOM_KILLED,
                c.REASON_EVICTED,
                c.REASON_PREEMPTED,
                c.REASON_ERROR,
                c.REASON_DEADLINE_EXCEEDED,
                c.REASON_INVALID_CONFIG,
                c.REASON_INVALID_DATASET,
                c.REASON_GPU_UNAVAILABLE,
                "IncompatiblePretrained",
            ) and ev.message.startswith("attempt "):
                metrics.ATTEMPTS.labels(ev.reason).inc()
    if plan.delete_job:
        await rt.kube.delete("TrainingJob", ns, name, uid=job["metadata"].get("uid"))
        return None
    return plan.requeue_after


async def _patch_status(rt: Runtime, job: dict[str, Any], new_status: dict[str, Any]) -> bool:
    patch = status_patch(job.get("status"), new_status)
    if patch is None:
        return False
    meta = job["metadata"]
    try:
        updated = await rt.kube.merge_patch(
            "TrainingJob", meta["namespace"], meta["name"], {"status": patch}, status=True
        )
    except NotFoundError:
        return False
    rt.jobs.put(updated)
    return True


def attempt_pod_name(job: str, index: int) -> str:
    return attempt_name(job, index)
