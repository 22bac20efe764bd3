"""Apply a TrainingJob's plan: create or delete attempt pods, version, patch status."""

from __future__ import annotations

import contextlib
import logging
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from forja_api import conditions as c
from forja_api import contract, semver
from forja_api.v1alpha1.trainingjob import Phase, TrainingJobSpec, TrainingJobStatus
from forja_operator import metrics
from forja_operator.builders.attempt import (
    AttemptInputs,
    render_attempt_pods,
    render_rendezvous_service,
    rendezvous_service_name,
    store_layout,
)
from forja_operator.builders.common import JOB_UID_LABEL
from forja_operator.builders.modelversion import render_modelversion
from forja_operator.builders.rbac import LEGACY_TRAINER_ACCOUNT, render_attempt_rbac
from forja_operator.builders.tf_cluster import (
    TF_WORKER_COMPONENT,
    render_worker_services,
    uses_tf_config,
)
from forja_operator.controller.clock import timestamp
from forja_operator.controller.conditions import set_condition
from forja_operator.controller.events import Event
from forja_operator.controller.ownership import awaiting_collection, is_controlled_by
from forja_operator.errors import ConflictError, NotFoundError
from forja_operator.reconcilers.common import invalid_spec_status, patch_status
from forja_operator.runtime import Runtime, post_event
from forja_operator.status.trainingjob import JobPlan, plan_trainingjob

__all__ = ["next_free_version", "reconcile_trainingjob"]

log = logging.getLogger(__name__)
MAX_VERSION_TRIES = 50


def _named_pods(rt: Runtime, job: dict[str, Any]) -> list[dict[str, Any]]:
    """The pods labelled with the job's name; the planner trusts only those it controls."""
    meta = job["metadata"]
    return rt.job_pods.group(meta["namespace"], meta["name"])


async def _apply_rbac(rt: Runtime, job: dict[str, Any], index: int, workers: int) -> None:
    """The attempt's own trainer identity; applied, so a planted namesake gets our rules.

    Once per namespace, the namespace-wide trainer Role of earlier releases (patch on
    every pod) is removed: it would outlive the upgrade and keep old pods' power.
    """
    ns = job["metadata"]["namespace"]
    for obj in render_attempt_rbac(job, index, workers):
        await rt.kube.apply(obj)
    if ns in rt.rbac_ready:
        return
    for kind in ("RoleBinding", "Role"):
        with contextlib.suppress(NotFoundError):
            legacy = await rt.kube.get(kind, ns, LEGACY_TRAINER_ACCOUNT)
            labels = legacy["metadata"].get("labels") or {}
            if labels.get(contract.MANAGED_BY_LABEL) == contract.MANAGED_BY:
                await rt.kube.delete(kind, ns, LEGACY_TRAINER_ACCOUNT)
    rt.rbac_ready.add(ns)


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


def _made_for(mv: dict[str, Any], job: dict[str, Any]) -> bool:
    """A version is this job's only if both its uid label and its lineage name the job.

    With two operators (an upgrade's overlap, a second install) a version is never
    taken as this job's on one sign alone: another job's version is a version taken.
    """
    meta = job["metadata"]
    labels = mv["metadata"].get("labels") or {}
    source = (mv.get("spec") or {}).get("source") or {}
    same_uid: bool = labels.get(JOB_UID_LABEL) == meta.get("uid")
    same_job: bool = source.get("trainingJob") == meta["name"]
    return same_uid and same_job


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
    listed = await rt.kube.list("ModelVersion", ns, f"{JOB_UID_LABEL}={uid}")
    mine = [mv for mv in listed if _made_for(mv, job)]
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
                if _made_for(taken, job):
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
    now = timestamp(datetime.now(UTC))
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


@metrics.instrumented("TrainingJob")
async def reconcile_trainingjob(rt: Runtime, key: tuple[str, str]) -> float | None:
    ns, name = key
    job = rt.jobs.live(ns, name)
    if job is None:
        return None
    try:
        spec = TrainingJobSpec.model_validate(job.get("spec") or {})
    except ValidationError as exc:
        await _patch_status(rt, job, invalid_spec_status(job, exc))
        return None
    pods = await _read_pods(rt, job)
    now = datetime.now(UTC)
    prefix = store_layout(ns, name, spec, rt.config).checkpoint_uri
    bound = rt.config.unschedulable_seconds
    plan = plan_trainingjob(job, spec, pods, now, prefix, unschedulable_seconds=bound)
    if plan.create_version is not None:
        await _apply_version(rt, job, spec, plan)
    if plan.create_attempt is not None:
        stranger = await _create_attempt(rt, job, spec, plan)
        if stranger is not None:
            # The name was taken by a pod we did not make: plan again as if the
            # attempt were recorded, so the job fails on it rather than reading it.
            recorded = {**job, "status": plan.status.to_wire()}
            plan = plan_trainingjob(
                recorded, spec, [*pods, stranger], now, prefix, unschedulable_seconds=bound
            )

    new_status = plan.status.to_wire()
    # Status first, then deletions: a pod deleted for suspend or deadline is
    # already recorded as such when its exit code arrives.
    changed = await _patch_status(rt, job, new_status)
    by_name = {p["metadata"]["name"]: p for p in pods}
    for pod_name in plan.delete_pods:
        await rt.kube.delete("Pod", ns, pod_name)
        await _release_kueue_finalizer(rt, by_name.get(pod_name))
    if changed:
        for ev in plan.events:
            post_event(rt, job, ev)
            if ev.reason in (
                c.REASON_OOM_KILLED,
                c.REASON_EVICTED,
                c.REASON_PREEMPTED,
                c.REASON_ERROR,
                c.REASON_DEADLINE_EXCEEDED,
                c.REASON_INVALID_CONFIG,
                c.REASON_INVALID_DATASET,
                c.REASON_GPU_UNAVAILABLE,
                c.REASON_INCOMPATIBLE_PRETRAINED,
            ) and ev.message.startswith("attempt "):
                metrics.ATTEMPTS.labels(ev.reason).inc()
    if plan.delete_job:
        await rt.kube.delete("TrainingJob", ns, name, uid=job["metadata"].get("uid"))
        return None
    return plan.requeue_after


async def _read_pods(rt: Runtime, job: dict[str, Any]) -> list[dict[str, Any]]:
    """The job's attempt pods, with any the cache has not seen yet fetched from the API.

    An open attempt whose pod is not cached is made sure to be really gone before
    it is recorded as preempted (the watch may lag behind a fresh operator start).
    """
    meta = job["metadata"]
    seen = {p["metadata"]["name"] for p in _named_pods(rt, job)}
    status = TrainingJobStatus.model_validate(job.get("status") or {})
    for att in status.attempts:
        if att.end_time is not None or not att.pod:
            continue
        # Every worker of the open attempt (status.workers lists the current one's).
        names = [w.pod for w in status.workers] if att is status.attempts[-1] else []
        for name in dict.fromkeys([att.pod, *names]):
            if name in seen:
                continue
            try:
                pod = await rt.kube.get("Pod", meta["namespace"], name)
            except NotFoundError:
                continue
            rt.job_pods.put(pod, group=meta["name"])
    return _named_pods(rt, job)


async def _create_attempt(
    rt: Runtime, job: dict[str, Any], spec: TrainingJobSpec, plan: JobPlan
) -> dict[str, Any] | None:
    """Create the plan's attempt pods; a pod already holding a name and not ours is returned.

    A gang's rendezvous Service comes first: its ClusterIP, allocated on create (and
    fixed for the Service's life), is MASTER_ADDR of the other ranks. Every name is
    deterministic, so a reconcile interrupted half-way finds what it made and goes on.
    """
    new = plan.create_attempt
    if new is None:
        return None
    meta = job["metadata"]
    await _apply_rbac(rt, job, new.index, new.workers)
    master_addr: str | None = None
    worker_addrs: tuple[str, ...] = ()
    if new.workers > 1 and uses_tf_config(spec):
        worker_addrs = await _ensure_worker_services(rt, job, new.index, new.workers)
    elif new.workers > 1:
        service, _ = await rt.kube.ensure(render_rendezvous_service(job, new.index))
        if not is_controlled_by(service, job):
            # Retried by the work queue (and logged) until that Service is removed.
            raise ConflictError(
                409,
                f"Service {service['metadata']['name']} exists and is not this job's: "
                "its address would not lead to this attempt's rank 0",
            )
        master_addr = service["spec"]["clusterIP"]
    pods = render_attempt_pods(
        job,
        spec,
        AttemptInputs(
            new.index,
            new.overrides,
            new.resume_from,
            new.deadline_seconds,
            new.resume_sha256,
            workers=new.workers,
            master_addr=master_addr,
            worker_addrs=worker_addrs,
        ),
        rt.config,
    )
    created_any = False
    for pod in pods:
        obj, created = await rt.kube.ensure(pod)
        if not created and not is_controlled_by(obj, job) and not awaiting_collection(obj, job):
            return obj
        rt.job_pods.put(obj, group=meta["name"])
        created_any = created_any or created
    if created_any:
        metrics.CREATED_ATTEMPTS.inc()
        await _delete_previous_rendezvous(rt, job, new.index - 1)
        await _delete_previous_worker_services(rt, job, new.index - 1)
    else:
        plan.events = [
            e for e in plan.events if e.reason not in (c.CREATED, c.RESTARTING, "Resumed")
        ]
    return None


async def _ensure_worker_services(
    rt: Runtime, job: dict[str, Any], index: int, workers: int
) -> tuple[str, ...]:
    """A TensorFlow gang's Service per worker, made before its pods; their ClusterIPs by
    rank (every worker dials every other one, so TF_CONFIG lists them all)."""
    addresses = []
    for body in render_worker_services(job, index, workers):
        service, _ = await rt.kube.ensure(body)
        if not is_controlled_by(service, job):
            raise ConflictError(
                409,
                f"Service {service['metadata']['name']} exists and is not this job's: "
                "its address would not lead to this attempt's worker",
            )
        addresses.append(service["spec"]["clusterIP"])
    return tuple(addresses)


async def _delete_previous_worker_services(rt: Runtime, job: dict[str, Any], index: int) -> None:
    """The per-worker Services of attempt ``index``, ended now, as its rendezvous Service
    is: found by label (the world size may have changed), only this job's, by uid."""
    if index < 1:
        return
    meta = job["metadata"]
    selector = (
        f"{contract.JOB_LABEL}={meta['name']},{contract.ATTEMPT_LABEL}={index},"
        f"{contract.COMPONENT_LABEL}={TF_WORKER_COMPONENT}"
    )
    for old in await rt.kube.list("Service", meta["namespace"], selector):
        if is_controlled_by(old, job):
            with contextlib.suppress(NotFoundError):
                await rt.kube.delete(
                    "Service", meta["namespace"], old["metadata"]["name"],
                    uid=old["metadata"].get("uid"),
                )


async def _delete_previous_rendezvous(rt: Runtime, job: dict[str, Any], index: int) -> None:
    """The Service of attempt ``index``, ended now: only its own (the uid is checked twice).

    The last attempt's stays until the job goes (it owns it); without endpoints it
    costs a ClusterIP and nothing else.
    """
    if index < 1:
        return
    meta = job["metadata"]
    try:
        old = await rt.kube.get(
            "Service", meta["namespace"], rendezvous_service_name(meta["name"], index)
        )
    except NotFoundError:
        return
    if is_controlled_by(old, job):
        await rt.kube.delete(
            "Service", meta["namespace"], old["metadata"]["name"], uid=old["metadata"].get("uid")
        )


async def _release_kueue_finalizer(rt: Runtime, pod: dict[str, Any] | None) -> None:
    """Drop Kueue's finalizer from a deleted pod that never reached a node (still gated).

    Such a pod never ran, so there is nothing for Kueue to account, and no kubelet will
    ever end it: left to Kueue (or with Kueue gone), the finalizer would keep it, and
    with it the attempt, Terminating. A pod that ran keeps its finalizer for Kueue,
    which finishes the group's Workload once no pod of it is running.
    """
    if pod is None:
        return
    meta = pod["metadata"]
    finalizers = meta.get("finalizers") or []
    if contract.KUEUE_FINALIZER not in finalizers or (pod.get("spec") or {}).get("nodeName"):
        return
    rest = [f for f in finalizers if f != contract.KUEUE_FINALIZER]
    patch = {"metadata": {"uid": meta.get("uid"), "finalizers": rest or None}}
    with contextlib.suppress(NotFoundError, ConflictError):
        await rt.kube.merge_patch("Pod", meta["namespace"], meta["name"], patch)


async def _patch_status(rt: Runtime, job: dict[str, Any], new_status: dict[str, Any]) -> bool:
    updated = await patch_status(rt.kube, "TrainingJob", job, new_status)
    if updated is not None:
        rt.jobs.put(updated)
    return updated is not None
