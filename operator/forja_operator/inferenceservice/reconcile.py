"""One reconcile pass of an InferenceService: read what the indexes saw, plan, apply.

Everything the pass reads arrives as arguments (the operator's in-memory indexes
of ModelVersions, Deployments and pods, fed by watches); everything it writes
goes through :class:`ChildApi`, a seam the handler fills with the operator's
Kubernetes client and tests fill with a recorder. The pass keeps per-service
memory between calls (:class:`ServiceMemory`): the last status it wrote, the
manifests it applied (so an unchanged child is not re-sent every pass), and the
canary's counter baselines for its current step.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from pydantic import ValidationError

from forja_api import conditions as c
from forja_api.v1alpha1.inferenceservice import InferenceServiceSpec
from forja_operator.controller.events import Event
from forja_operator.controller.patch import merge_patch
from forja_operator.controller.pods import pod_is_ready
from forja_operator.controller.validation import validation_message
from forja_operator.inferenceservice import builders as b
from forja_operator.inferenceservice.errorrate import Counts, error_rate
from forja_operator.inferenceservice.errors import (
    InvalidServiceSpecError,
    NoMatchingVersionError,
)
from forja_operator.inferenceservice.resolve import (
    SINGLE_STAGE,
    ResolvedStage,
    Revision,
    VersionRecord,
    resolve_service,
    revision_slug,
)
from forja_operator.inferenceservice.rollout import (
    Observed,
    Plan,
    Router,
    State,
    plan_rollout,
)
from forja_operator.inferenceservice.status import (
    Problem,
    compute_status,
    state_from_status,
)

__all__ = [
    "ChildApi",
    "DeploymentView",
    "PodView",
    "ServiceMemory",
    "deployment_view",
    "pod_view",
    "reconcile_service",
]


class ChildApi(Protocol):
    """What a pass needs from the API server."""

    async def apply(self, obj: dict[str, Any]) -> None:
        """Server-side apply (create or update) with the operator's field manager."""

    async def delete(self, api_version: str, kind: str, namespace: str, name: str) -> None:
        """Delete if present."""

    async def patch_status(self, namespace: str, name: str, patch: dict[str, Any]) -> None:
        """JSON merge patch of the InferenceService's status subresource."""


@dataclass(frozen=True)
class DeploymentView:
    """A child Deployment as the index saw it."""

    name: str
    slug: str
    version: str
    replicas: int
    ready: int
    up_to_date: bool


@dataclass(frozen=True)
class PodView:
    name: str
    slug: str
    ip: str | None
    ready: bool


@dataclass
class ServiceMemory:
    """Per-service memory across passes (lost on restart, rebuilt from status)."""

    status: dict[str, Any] | None = None
    applied: dict[str, str] = field(default_factory=dict)
    baseline_key: tuple[str, int] | None = None
    baseline: dict[str, Counts] = field(default_factory=dict)


Scraper = Callable[[Iterable[tuple[str, str]]], Awaitable[Mapping[str, Counts]]]
EventSink = Callable[[Event], None]


def _digest(obj: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def _rebuild_revision(
    version: str, spec: InferenceServiceSpec, records: Iterable[VersionRecord]
) -> Revision | None:
    """The revision a served version string stands for, while its ModelVersions exist."""
    pool = list(records)

    def find(model: str, wanted: str) -> VersionRecord | None:
        return next((r for r in pool if r.model == model and r.version.lstrip("v") == wanted), None)

    if not spec.stages:
        rec = find(spec.model or "", version)
        return Revision((ResolvedStage(SINGLE_STAGE, rec),)) if rec else None
    parts = dict(p.split("@", 1) for p in version.split(",") if "@" in p)
    stages = []
    for st in spec.stages:
        rec = find(st.model, parts.get(st.name, ""))
        if rec is None:
            return None
        stages.append(ResolvedStage(st.name, rec, st.parameters))
    return Revision(tuple(stages))


async def _apply_once(
    api: ChildApi, memory: ServiceMemory, obj: dict[str, Any], force: bool = False
) -> None:
    key = f"{obj['kind']}/{obj['metadata']['name']}"
    digest = _digest(obj)
    if force or memory.applied.get(key) != digest:
        await api.apply(obj)
        memory.applied[key] = digest


async def _delete_once(
    api: ChildApi, memory: ServiceMemory, obj: tuple[str, str, str, str]
) -> None:
    api_version, kind, namespace, name = obj
    key = f"{kind}/{name}"
    if memory.applied.get(key) != "deleted":
        await api.delete(api_version, kind, namespace, name)
        memory.applied[key] = "deleted"


async def reconcile_service(
    *,
    body: Mapping[str, Any],
    records: Iterable[VersionRecord],
    deployments: Iterable[DeploymentView],
    pods: Iterable[PodView],
    api: ChildApi,
    memory: ServiceMemory,
    settings: b.ServerSettings,
    gateway_api: bool,
    now: datetime,
    scrape: Scraper,
    emit: EventSink,
) -> float | None:
    """One pass; returns seconds until a time-driven decision is due (None: none)."""
    meta = body["metadata"]
    owner = b.Owner(name=meta["name"], namespace=meta["namespace"], uid=meta.get("uid", ""))
    generation = meta.get("generation")
    old_status: dict[str, Any] = (
        memory.status if memory.status is not None else dict(body.get("status") or {})
    )
    pool = list(records)
    spec, revision, problem = _resolve(body, pool)
    views = {d.version: d for d in deployments}
    observed = {v: Observed(d.replicas, d.ready, d.up_to_date) for v, d in views.items()}
    router = (
        Router.HTTP_ROUTE
        if spec is not None and spec.gateway is not None and gateway_api
        else Router.REPLICA_RATIO
    )
    state = state_from_status(old_status)
    replicas = _desired_replicas(spec)
    plan: Plan | None = None
    if spec is not None and (problem is None or problem.reason != c.REASON_INVALID_SPEC):
        target = revision.version if revision else None
        rate = await _canary_error_rate(state.canary, state.step, pods, memory, scrape)
        plan = plan_rollout(
            state=state,
            target=target,
            observed=observed,
            rollout=spec.rollout,
            replicas=replicas,
            router=router,
            now=now,
            canary_error_rate=rate,
        )
        for event in plan.events:
            emit(event)
        await _apply_children(
            api,
            memory=memory,
            owner=owner,
            spec=spec,
            target=revision,
            plan=plan,
            pool=pool,
            views=views,
            settings=settings,
            router=router,
        )
    target_version = revision.version if revision else None
    new_status = compute_status(
        generation=generation,
        plan=plan if plan is not None else _hold_plan(state),
        observed=observed,
        target=target_version,
        router=router,
        url=b.service_url(owner, settings),
        grpc_address=b.grpc_address(owner, settings),
        desired_replicas=replicas,
        problem=problem,
        old_conditions=list(old_status.get("conditions") or []),
        now=now,
    )
    patch = merge_patch(old_status, new_status)
    if patch:
        await api.patch_status(owner.namespace, owner.name, patch)
    memory.status = new_status
    return plan.requeue_after if plan else None


def _resolve(
    body: Mapping[str, Any], pool: list[VersionRecord]
) -> tuple[InferenceServiceSpec | None, Revision | None, Problem | None]:
    """The spec and the revision it resolves to, or the problem that stops either."""
    spec: InferenceServiceSpec | None = None
    try:
        spec = InferenceServiceSpec.model_validate(dict(body.get("spec") or {}))
        return spec, resolve_service(spec, pool), None
    except ValidationError as exc:
        return spec, None, Problem(c.REASON_INVALID_SPEC, validation_message(exc))
    except InvalidServiceSpecError as exc:
        return spec, None, Problem(c.REASON_INVALID_SPEC, str(exc))
    except NoMatchingVersionError as exc:
        return spec, None, Problem(c.REASON_NO_MATCHING_VERSION, str(exc))


def _desired_replicas(spec: InferenceServiceSpec | None) -> int:
    if spec is None:
        return 1
    return spec.autoscaling.min_replicas if spec.autoscaling else spec.replicas


def _hold_plan(state: State) -> Plan:
    # An invalid spec changes nothing that serves: report the state as it stands.
    versions = [v for v in (state.active, state.canary) if v]
    return Plan(state, dict.fromkeys(versions, 0), {})


async def _canary_error_rate(
    canary: str | None,
    step: int,
    pods: Iterable[PodView],
    memory: ServiceMemory,
    scrape: Scraper,
) -> float | None:
    if canary is None:
        memory.baseline_key = None
        return None
    slug = revision_slug(canary)
    targets = [(p.name, p.ip) for p in pods if p.slug == slug and p.ip]
    counts = dict(await scrape(targets)) if targets else {}
    key = (canary, step)
    if memory.baseline_key != key:
        # A new step is judged on its own requests only.
        memory.baseline_key = key
        memory.baseline = counts
        return None
    return error_rate(counts, memory.baseline)


async def _apply_children(
    api: ChildApi,
    *,
    memory: ServiceMemory,
    owner: b.Owner,
    spec: InferenceServiceSpec,
    target: Revision | None,
    plan: Plan,
    pool: list[VersionRecord],
    views: Mapping[str, DeploymentView],
    settings: b.ServerSettings,
    router: Router,
) -> None:
    s = plan.state
    for version, replicas in plan.replicas.items():
        revision = (
            target
            if target is not None and target.version == version
            else (_rebuild_revision(version, spec, pool))
        )
        seen = views.get(version)
        hpa_owned = spec.autoscaling is not None and version == s.active and s.canary is None
        if revision is None:
            # Its ModelVersion is gone: keep the Deployment serving, only scale it.
            if seen is not None and seen.replicas != replicas and not hpa_owned:
                await api.apply(_scale_only(owner, seen.name, replicas))
            continue
        manifest = b.render_deployment(
            owner, spec, revision, None if hpa_owned else replicas, settings
        )
        drifted = seen is None or (not hpa_owned and seen.replicas != replicas)
        await _apply_once(api, memory, manifest, force=drifted)
    for version, view in views.items():
        if version not in plan.replicas:
            await api.delete("apps/v1", "Deployment", owner.namespace, view.name)
            memory.applied.pop(f"Deployment/{view.name}", None)
    await _apply_once(api, memory, b.render_service(owner))
    await _apply_once(api, memory, b.render_pdb(owner))
    if spec.autoscaling is not None and s.active is not None:
        await _apply_once(api, memory, b.render_hpa(owner, spec, revision_slug(s.active)))
    else:
        await _delete_once(
            api,
            memory,
            (
                "autoscaling/v2",
                "HorizontalPodAutoscaler",
                owner.namespace,
                b.child_name(owner.name),
            ),
        )
    if router is Router.HTTP_ROUTE:
        weights = {revision_slug(v): w for v, w in plan.weights.items()}
        for slug in weights:
            await _apply_once(api, memory, b.render_revision_service(owner, slug))
        await _apply_once(api, memory, b.render_http_route(owner, spec, weights))


def _scale_only(owner: b.Owner, name: str, replicas: int) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": owner.namespace},
        "spec": {"replicas": replicas},
    }


def deployment_view(body: Mapping[str, Any]) -> DeploymentView | None:
    """What the index keeps of a child Deployment."""
    meta = body.get("metadata") or {}
    labels = meta.get("labels") or {}
    version = (meta.get("annotations") or {}).get(b.VERSION_ANNOTATION)
    slug = labels.get(b.REVISION_LABEL)
    if not version or not slug:
        return None
    spec = body.get("spec") or {}
    status = body.get("status") or {}
    return DeploymentView(
        name=str(meta.get("name")),
        slug=str(slug),
        version=str(version),
        replicas=int(spec.get("replicas", 1)),
        ready=int(status.get("readyReplicas") or 0),
        up_to_date=int(status.get("observedGeneration") or 0) >= int(meta.get("generation") or 0)
        and int(status.get("updatedReplicas") or 0) >= int(spec.get("replicas", 1)),
    )


def pod_view(body: Mapping[str, Any]) -> PodView | None:
    meta = body.get("metadata") or {}
    slug = (meta.get("labels") or {}).get(b.REVISION_LABEL)
    if not slug:
        return None
    ip = (body.get("status") or {}).get("podIP")
    return PodView(name=str(meta.get("name")), slug=str(slug), ip=ip, ready=pod_is_ready(body))
