"""InferenceService: a served model version, rolled out with canary steps and rollback.

A service serves either one model (``model`` plus an optional ``selector``;
without one it follows the ``latest`` version) or a pipeline of ``stages`` in one
pod (e.g. a detector whose boxes feed a verifier), never both.
"""

from __future__ import annotations

import itertools
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from forja_api.v1alpha1.common import (
    AGE_COLUMN,
    AliasName,
    ApiModel,
    Condition,
    CrdInfo,
    Name,
    NameRule,
    PrinterColumn,
    Resources,
    Scheduling,
    SemVer,
    SemVerRange,
    cel,
    validations,
)

__all__ = [
    "Autoscaling",
    "Batching",
    "GatewayRef",
    "InferenceService",
    "InferenceServiceSpec",
    "InferenceServiceStatus",
    "PredictionCache",
    "RateLimit",
    "Rollout",
    "RolloutState",
    "ServicePhase",
    "Stage",
    "VersionSelector",
    "VersionTraffic",
]

_ONE_SELECTOR = "set exactly one of version, range or alias"
_MODEL_XOR_STAGES = (
    "set either spec.model (with an optional spec.selector) or spec.stages, not both"
)
_SELECTOR_NEEDS_MODEL = "spec.selector needs spec.model"
_CANARY_ORDER = "spec.rollout.canarySteps must be strictly ascending and end at 100"
_MIN_MAX = "spec.autoscaling.minReplicas must not exceed maxReplicas"


class VersionSelector(ApiModel):
    """Which Ready version to serve: exactly one of version, range or alias."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "(has(self.version) ? 1 : 0) + (has(self.range) ? 1 : 0)"
                " + (has(self.alias) ? 1 : 0) == 1",
                f"selector: {_ONE_SELECTOR}",
            )
        )
    )

    version: SemVer | None = None
    """An exact version, e.g. 1.2.0."""
    range: SemVerRange | None = None
    """A semver range such as "^1.2" or ">=1.2.0 <2.0.0"; the highest Ready match serves and a
    newer match rolls out by itself."""
    alias: AliasName | None = None
    """An alias such as production or latest; moving the alias rolls out its new holder."""

    @model_validator(mode="after")
    def _exactly_one(self) -> VersionSelector:
        given = [v for v in (self.version, self.range, self.alias) if v is not None]
        if len(given) != 1:
            raise ValueError(f"selector: {_ONE_SELECTOR}")
        return self


class Stage(ApiModel):
    """One stage of a pipeline served in one pod (e.g. detector then verifier)."""

    name: Name
    """The stage's name, unique in the pipeline (e.g. detector)."""
    model: Name
    """The model series this stage serves."""
    selector: VersionSelector
    """Which version of model this stage serves."""
    parameters: dict[str, Any] = Field(default_factory=dict)
    """Stage settings passed to the server, e.g. {"confidence": 0.25} or {"sequenceLength": 4}."""


class Batching(ApiModel):
    """Dynamic batching in the server: requests wait up to maxLatencyMs to share a batch."""

    max_batch_size: int = Field(default=8, ge=1, le=1024)
    """The largest batch the model sees."""
    max_latency_ms: float = Field(default=5.0, ge=0, le=10000)
    """How long the first request of a batch may wait for company, in milliseconds."""


class RateLimit(ApiModel):
    """A token bucket per client over the prediction endpoints: over it, HTTP 429 with
    Retry-After (gRPC RESOURCE_EXHAUSTED). Each replica keeps its own buckets."""

    requests_per_second: float = Field(gt=0, le=1_000_000)
    """Sustained requests per second allowed to one client."""
    burst: int = Field(default=10, ge=1, le=1_000_000)
    """Requests a quiet client may send at once."""
    client_header: str | None = Field(default=None, max_length=128, pattern=r"^[A-Za-z0-9-]+$")
    """A header naming the client (e.g. X-Api-Key); default: the first hop of X-Forwarded-For,
    else the peer address."""


class PredictionCache(ApiModel):
    """Answers kept by the sha256 of the input plus model and served version (never served
    across versions): in each replica's memory, or in a Redis shared by all replicas."""

    max_bytes: int = Field(default=64 * 1024 * 1024, ge=1024, le=64 * 1024 * 1024 * 1024)
    """In-process: the most bytes of cached answers per replica (least recently used go)."""
    redis_url: str | None = Field(default=None, pattern=r"^rediss?://.+", max_length=512)
    """redis://host:port/db of a Redis shared by all replicas; Redis down means misses,
    never failed predictions."""
    ttl_seconds: int = Field(default=3600, ge=1, le=30 * 86400)
    """How long Redis keeps an answer."""


class Autoscaling(ApiModel):
    """A HorizontalPodAutoscaler for the stable version's Deployment (replaces spec.replicas)."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel("self.minReplicas <= self.maxReplicas", _MIN_MAX, field_path=".minReplicas")
        )
    )

    min_replicas: int = Field(default=1, ge=1, le=100)
    """The fewest replicas."""
    max_replicas: int = Field(default=3, ge=1, le=100)
    """The most replicas."""
    target_cpu_utilization_percentage: int = Field(default=80, ge=1, le=100)
    """Average CPU use, in percent of the request, the autoscaler aims for."""

    @model_validator(mode="after")
    def _min_le_max(self) -> Autoscaling:
        if self.min_replicas > self.max_replicas:
            raise ValueError(_MIN_MAX)
        return self


def _canary_rules() -> dict[str, Any]:
    return validations(
        # isSorted() with listType set (no duplicates) means strictly ascending.
        cel("self.isSorted() && self[size(self) - 1] == 100", _CANARY_ORDER),
        **{"x-kubernetes-list-type": "set"},
    )


class Rollout(ApiModel):
    """How a new version replaces the serving one."""

    canary_steps: list[Annotated[int, Field(ge=1, le=100)]] = Field(
        default_factory=lambda: [10, 50, 100],
        min_length=1,
        max_length=20,
        json_schema_extra=_canary_rules(),
    )
    """Traffic share of the new version at each step, in percent (1..100), strictly ascending
    and ending at 100. [100] replaces the old version at once once the new one is ready."""
    pause_seconds: int = Field(default=30, ge=0, le=86400)
    """How long a step must stay healthy before the next one."""
    progress_deadline_seconds: int = Field(default=300, ge=1, le=86400)
    """The new version must be ready within this, or it is rolled back."""
    max_error_rate: float = Field(default=0.05, ge=0, le=1)
    """Roll back when the new version's share of failed requests exceeds this during a step."""

    @field_validator("canary_steps")
    @classmethod
    def _ascending_to_100(cls, steps: list[int]) -> list[int]:
        if any(b <= a for a, b in itertools.pairwise(steps)) or steps[-1] != 100:
            raise ValueError(_CANARY_ORDER)
        return steps


class GatewayRef(ApiModel):
    """A Gateway API Gateway to attach an HTTPRoute to (exact traffic weights)."""

    name: Name
    """The Gateway's name."""
    namespace: Name | None = None
    """Defaults to the InferenceService's namespace."""
    section_name: str | None = Field(default=None, max_length=253)
    """A listener of the Gateway."""


def _spec_rules() -> dict[str, Any]:
    return validations(
        cel("has(self.model) != (has(self.stages) && size(self.stages) > 0)", _MODEL_XOR_STAGES),
        cel(
            "!has(self.selector) || has(self.model)",
            _SELECTOR_NEEDS_MODEL,
            field_path=".selector",
        ),
    )


class InferenceServiceSpec(ApiModel):
    """What to serve, how many replicas, and how new versions roll out."""

    model_config = ConfigDict(json_schema_extra=_spec_rules())

    model: Name | None = None
    """The model series to serve (single-model services)."""
    selector: VersionSelector | None = None
    """Which version of model to serve; the latest Ready version when unset."""
    stages: list[Stage] = Field(
        default_factory=list,
        max_length=8,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    """A pipeline instead of model/selector: each stage feeds the next, in one pod."""
    replicas: int = Field(default=1, ge=0, le=100)
    """Server pods of the stable version (ignored with autoscaling)."""
    resources: Resources = Field(default_factory=Resources)
    """CPU, memory and GPUs per server pod."""
    scheduling: Scheduling = Field(default_factory=Scheduling)
    """Node selection, tolerations and priority of server pods."""
    image: str | None = Field(default=None, min_length=1, max_length=512)
    """Server image; defaults to the operator's server image."""
    batching: Batching = Field(default_factory=Batching)
    """Dynamic batching in the server."""
    autoscaling: Autoscaling | None = None
    """Scale the stable version on CPU instead of a fixed replica count."""
    rollout: Rollout = Field(default_factory=Rollout)
    """Canary steps, pauses, deadline and rollback threshold."""
    rate_limit: RateLimit | None = None
    """Per-client rate limiting of predictions; none when unset."""
    prediction_cache: PredictionCache | None = None
    """Cache answers by the input's digest; off when unset."""
    gateway: GatewayRef | None = None
    """Route through this Gateway with an HTTPRoute (exact canary weights) when the Gateway API
    CRDs are installed; otherwise traffic splits by ready-replica ratio on a plain Service."""

    @model_validator(mode="after")
    def _model_xor_stages(self) -> InferenceServiceSpec:
        if (self.model is not None) == bool(self.stages):
            raise ValueError(_MODEL_XOR_STAGES)
        if self.selector is not None and self.model is None:
            raise ValueError(_SELECTOR_NEEDS_MODEL)
        names = [s.name for s in self.stages]
        if len(set(names)) != len(names):
            raise ValueError("spec.stages: stage names must be unique")
        return self


class ServicePhase(StrEnum):
    """Where an InferenceService is."""

    PENDING = "Pending"
    PROGRESSING = "Progressing"
    READY = "Ready"
    DEGRADED = "Degraded"
    FAILED = "Failed"


class VersionTraffic(ApiModel):
    """Traffic and replicas of one served version."""

    version: str
    """The version (for a pipeline: stage@version pairs)."""
    percent: int = Field(ge=0, le=100)
    """Its share of requests, in percent."""
    ready_replicas: int = 0
    """Its ready server pods."""
    replicas: int = 0
    """Its desired server pods."""


class RolloutState(ApiModel):
    """The operator's bookkeeping of a canary rollout, so a restart resumes it."""

    step: int = 0
    """Index into spec.rollout.canarySteps of the current step."""
    started_at: str | None = None
    """When the canary was created (RFC 3339)."""
    step_started_at: str | None = None
    """When the current step began (its progress deadline counts from here)."""
    step_ready_at: str | None = None
    """When the canary became ready for the current step (its pause counts from here)."""
    rolled_back_version: str | None = None
    """A version that was rolled back; it is not retried until the selector moves on."""
    rolled_back_reason: str | None = None
    """Why it was rolled back (ProgressDeadlineExceeded, ErrorRateExceeded, ...)."""
    rolled_back_message: str | None = None
    """A person-readable account of the rollback."""
    router: str | None = None
    """How traffic is split: ReplicaRatio (plain Service) or HTTPRoute."""


class InferenceServiceStatus(ApiModel):
    """What is being served, observed by the operator."""

    phase: ServicePhase = ServicePhase.PENDING
    """Pending, Progressing, Ready, Degraded or Failed."""
    url: str | None = None
    """The in-cluster URL of the service (HTTP: Open Inference Protocol and /predict)."""
    grpc_address: str | None = None
    """The in-cluster host:port of the Open Inference Protocol over gRPC."""
    conditions: list[Condition] = Field(
        default_factory=list,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    """Ready, Serving, RolloutProgressing and RolledBack (forja_api.conditions)."""
    active_version: str | None = None
    """The stable version taking the main share of traffic."""
    canary_version: str | None = None
    """The version being rolled out, if any."""
    canary_percent: int | None = None
    """The canary's share of traffic, in percent."""
    previous_version: str | None = None
    """The version served before the active one (what a rollback returns to)."""
    traffic: list[VersionTraffic] = Field(default_factory=list)
    """Traffic and replicas per served version."""
    ready_replicas: int = 0
    """Ready server pods across versions."""
    observed_generation: int | None = None
    """The metadata.generation this status was computed from."""
    message: str | None = None
    """A person-readable summary, e.g. why nothing serves yet."""
    rollout: RolloutState | None = None
    """The rollout in progress, or the last rollback."""


_NAME = NameRule("it names the Service and labels the server pods", dns1035=True)


class InferenceService(ApiModel):
    """A served model or pipeline with safe rollouts (forja.dev/v1alpha1)."""

    crd: ClassVar[CrdInfo] = CrdInfo(
        kind="InferenceService",
        plural="inferenceservices",
        singular="inferenceservice",
        # KServe owns `isvc`; these stay distinct so both can live in one cluster.
        short_names=("fisvc", "infs"),
        description=(
            "InferenceService serves a ModelVersion (or a pipeline of them) behind a Service, "
            "rolling new versions out in canary steps and back on failure."
        ),
        root_rules=(_NAME.cel(),),
        columns=(
            PrinterColumn("Phase", "string", ".status.phase", "Pending, Progressing, Ready, ..."),
            PrinterColumn("Active", "string", ".status.activeVersion", "The stable version"),
            PrinterColumn("Canary", "string", ".status.canaryVersion", "The version rolling out"),
            PrinterColumn("Share", "integer", ".status.canaryPercent", "Canary traffic percent"),
            PrinterColumn("Ready", "integer", ".status.readyReplicas", "Ready server pods"),
            PrinterColumn("URL", "string", ".status.url", "In-cluster URL"),
            PrinterColumn("gRPC", "string", ".status.grpcAddress", "In-cluster gRPC address", 1),
            PrinterColumn("Previous", "string", ".status.previousVersion", "Rollback target", 1),
            AGE_COLUMN,
        ),
    )

    api_version: Literal["forja.dev/v1alpha1"] = "forja.dev/v1alpha1"
    kind: Literal["InferenceService"] = "InferenceService"
    metadata: dict[str, Any] = Field(default_factory=dict)
    _name_fits = _NAME.validator()
    spec: InferenceServiceSpec
    status: InferenceServiceStatus | None = None
