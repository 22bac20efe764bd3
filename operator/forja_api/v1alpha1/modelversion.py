"""ModelVersion: one immutable, verifiable model artifact with its lineage.

The operator creates one when a TrainingJob succeeds; a person creates one to
register a model trained elsewhere. Either way the artifact is verified against
its sha256 before the version is Ready, and model, version, format and artifact
never change afterwards (the CRD refuses it with ``self == oldSelf``): a changed
model is a new version. Aliases and metrics may change.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, field_validator

from forja_api.v1alpha1.common import (
    AGE_COLUMN,
    AliasName,
    ApiModel,
    Condition,
    CrdInfo,
    ModelName,
    NameRule,
    PrinterColumn,
    SecretName,
    SemVer,
    cel,
    immutable,
    validations,
)

__all__ = [
    "RESERVED_ALIASES",
    "Artifact",
    "BenchmarkSpec",
    "BenchmarkState",
    "BenchmarkStatus",
    "ModelFormat",
    "ModelVersion",
    "ModelVersionPhase",
    "ModelVersionSpec",
    "ModelVersionStatus",
    "Source",
    "headline_metric",
]

RESERVED_ALIASES = frozenset({"latest"})
"""Aliases the operator keeps itself (status.latest); a spec may not claim them."""


class ModelFormat(StrEnum):
    """How the artifact is loaded."""

    ULTRALYTICS = "ultralytics"
    TORCH_STATE_DICT = "torch-state-dict"
    TORCHSCRIPT = "torchscript"
    ONNX = "onnx"
    TFLITE = "tflite"
    PIPELINE = "pipeline"


class Artifact(ApiModel):
    """The stored model: a forja-model.json manifest or a single model file."""

    uri: str = Field(pattern=r"^(s3|pvc|file)://.+", max_length=2048)
    """Where the artifact is: s3://bucket/key, pvc://claim/path or file:///path. For models
    trained by forja it is the forja-model.json manifest that lists every file with its digest."""
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    """Hex digest of the object at uri; checked against the store before the version is Ready
    and again by every server before it loads the model."""
    size: int | None = Field(default=None, ge=0)
    """Size in bytes."""
    credentials_secret: SecretName | None = None
    """A Secret with accessKey and secretKey for an s3:// artifact outside the operator's store."""


class Source(ApiModel):
    """Lineage: where the model came from."""

    training_job: str | None = Field(default=None, max_length=253)
    """The TrainingJob that produced it (empty for registered models)."""
    dataset_uri: str | None = Field(default=None, max_length=2048)
    """The dataset it was trained on."""
    dataset_digest: str | None = Field(default=None, max_length=128)
    """The dataset's digest, when known."""
    pretrained_uri: str | None = Field(default=None, max_length=2048)
    """The pretrained weights it was fine-tuned from."""
    pretrained_digest: str | None = Field(default=None, max_length=128)
    """Their sha256 as the trainer read them (computed when the job did not pin one)."""
    config: dict[str, Any] = Field(default_factory=dict)
    """The resolved training configuration (the job's spec with per-attempt overrides)."""


class BenchmarkSpec(ApiModel):
    """The benchmark a Ready version gets (informative: it never changes Ready)."""

    enabled: bool = True
    """false: no benchmark pod for this version. The operator's benchmark.enabled setting
    turns it off for every version."""


_NO_LATEST = "spec.aliases may not contain latest: the operator keeps latest itself"


def _aliases_rules() -> dict[str, Any]:
    return validations(
        cel(
            "!self.exists(a, a == 'latest')",
            _NO_LATEST,
        ),
        **{"x-kubernetes-list-type": "set"},
    )


class ModelVersionSpec(ApiModel):
    """One version of a model: the artifact, its digest, metrics and lineage."""

    immutable_fields: ClassVar[tuple[str, ...]] = ("model", "version", "format", "artifact")

    model: Annotated[ModelName, immutable("spec.model")]
    """The model series, e.g. smoke-detector."""
    version: Annotated[SemVer, immutable("spec.version")]
    """Semantic version, e.g. 1.2.0."""
    format: Annotated[ModelFormat, immutable("spec.format")]
    """How to load it: ultralytics, torch-state-dict, torchscript, onnx, tflite, pipeline."""
    task: str | None = Field(default=None, pattern=r"^[a-z][a-z0-9-]*$", max_length=63)
    """What it does: detection, verification, segmentation, anomaly, classification,
    restoration, multilabel."""
    artifact: Annotated[
        Artifact,
        immutable("spec.artifact", "spec.artifact is immutable: register a new version instead"),
    ]
    """The stored model and its digest."""
    metrics: dict[str, float] = Field(default_factory=dict)
    """Evaluation metrics, e.g. {"map50": 0.61, "val_loss": 0.12}."""
    headline_metric: str | None = Field(default=None, max_length=128)
    """The metric `kubectl get modelversions` shows. Unset: the job's promotion metric for a
    generated version, else the first metric by name that is no baseline_* or epochs_*."""
    source: Source = Field(default_factory=Source)
    """Lineage: training job, dataset and configuration."""
    aliases: list[AliasName] = Field(
        default_factory=list, max_length=16, json_schema_extra=_aliases_rules()
    )
    """Names such as production or staging. An alias is held by one version of a model at a
    time: setting it here moves it off the version that held it. latest is kept by the
    operator (status.latest) and may not be set."""
    description: str | None = Field(default=None, max_length=1024)
    """A note for people: what changed in this version."""
    benchmark: BenchmarkSpec = Field(default_factory=BenchmarkSpec)
    """Whether the version gets a benchmark once Ready (on unless turned off)."""

    @field_validator("aliases")
    @classmethod
    def _aliases_valid(cls, value: list[str]) -> list[str]:
        if RESERVED_ALIASES & set(value):
            raise ValueError(_NO_LATEST)
        if len(set(value)) != len(value):
            raise ValueError("spec.aliases must not repeat an alias")
        return value


NOT_HEADLINES = ("baseline_", "epochs_")


def headline_metric(spec: ModelVersionSpec) -> str | None:
    """``name=value`` for the printer column (status.headlineMetric), or None without metrics.

    Without ``spec.headlineMetric``: the first of the model's own metrics by name;
    trainers also report the trivial baseline they beat (``baseline_*``) and
    bookkeeping (``epochs_*``), which are no headline.
    """
    own = (m for m in spec.metrics if not m.startswith(NOT_HEADLINES))
    name = spec.headline_metric or next(own, None) or next(iter(spec.metrics), None)
    if name is None or name not in spec.metrics:
        return None
    return f"{name}={spec.metrics[name]:.4g}"


class ModelVersionPhase(StrEnum):
    """Where a ModelVersion is: Ready means its artifact was verified."""

    PENDING = "Pending"
    VERIFYING = "Verifying"
    READY = "Ready"
    FAILED = "Failed"


class BenchmarkState(StrEnum):
    RUNNING = "Running"
    RETRYING = "Retrying"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


class BenchmarkStatus(ApiModel):
    """The figures of the benchmark pod that ran the server image on this artifact."""

    state: BenchmarkState
    """Running, Retrying (after a failed pod, bounded), Succeeded or Failed (final)."""
    uri: str
    """The artifact measured; a version is benchmarked once per (uri, sha256)."""
    sha256: str
    """Its digest (the benchmark program checks it before loading, as the server does)."""
    p50_ms: float | None = None
    """Median latency of one forward pass at batch 1, milliseconds."""
    p99_ms: float | None = None
    """99th percentile latency at batch 1, milliseconds."""
    throughput: float | None = None
    """Samples per second at batch batchSize."""
    batch_size: int | None = None
    """The batch size throughput was measured at."""
    requests: int | None = None
    """Forward passes the latencies are taken over."""
    load_seconds: float | None = None
    """Fetch, digest checks and load of the artifact, seconds."""
    peak_memory_mib: float | None = None
    """Peak resident memory of the benchmark process, MiB."""
    runtime: str | None = None
    """The engine that ran the model (onnxruntime, litert)."""
    node: str | None = None
    """The node the benchmark pod ran on: figures compare on like hardware only."""
    image: str | None = None
    """The server image that ran it (the image ID when the kubelet reported one)."""
    started_at: str | None = None
    """When the current benchmark pod was created (RFC 3339)."""
    completed_at: str | None = None
    """When the figures (or the final failure) were recorded (RFC 3339)."""
    failures: int = 0
    """Benchmark pods of this artifact that failed so far."""
    message: str | None = None
    """Why the last benchmark pod failed."""


class ModelVersionStatus(ApiModel):
    """What the operator verified."""

    phase: ModelVersionPhase = ModelVersionPhase.PENDING
    """Pending, Verifying, Ready or Failed."""
    conditions: list[Condition] = Field(
        default_factory=list,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    """ArtifactVerified, Ready and Benchmarked (forja_api.conditions); Benchmarked is
    informative and never part of Ready."""
    latest: bool = False
    """This is the highest Ready version of its model (the latest alias)."""
    headline_metric: str | None = None
    """name=value of the headline metric, for kubectl get."""
    verified_at: str | None = None
    """When the artifact's digest was last checked (RFC 3339)."""
    observed_generation: int | None = None
    """The metadata.generation this status was computed from."""
    message: str | None = None
    """A person-readable summary, e.g. why verification failed."""
    benchmark: BenchmarkStatus | None = None
    """Latency, throughput, load time and memory measured once the version is Ready."""


_NAME = NameRule("it is the forja.dev/version label of its verify pod")


class ModelVersion(ApiModel):
    """One immutable, verifiable version of a model (forja.dev/v1alpha1)."""

    crd: ClassVar[CrdInfo] = CrdInfo(
        kind="ModelVersion",
        plural="modelversions",
        singular="modelversion",
        short_names=("mv", "fmv"),
        description=(
            "ModelVersion is one immutable, semantically versioned model artifact, verified by "
            "sha256 before it is Ready, with its metrics, lineage and aliases."
        ),
        root_rules=(_NAME.cel(),),
        columns=(
            PrinterColumn("Model", "string", ".spec.model", "The model series"),
            PrinterColumn("Version", "string", ".spec.version", "Semantic version"),
            PrinterColumn("Aliases", "string", ".spec.aliases", "Aliases this version holds"),
            PrinterColumn("Latest", "boolean", ".status.latest", "Highest Ready version", 1),
            PrinterColumn("Phase", "string", ".status.phase", "Pending, Verifying, Ready, Failed"),
            PrinterColumn("Metric", "string", ".status.headlineMetric", "Headline metric"),
            PrinterColumn("Format", "string", ".spec.format", "Artifact format", 1),
            PrinterColumn("Job", "string", ".spec.source.trainingJob", "Producing TrainingJob", 1),
            PrinterColumn("P50", "number", ".status.benchmark.p50Ms", "ms at batch 1", 1),
            PrinterColumn("P99", "number", ".status.benchmark.p99Ms", "ms at batch 1", 1),
            PrinterColumn(
                "Throughput", "number", ".status.benchmark.throughput", "Samples/s at max batch", 1
            ),
            AGE_COLUMN,
        ),
    )

    api_version: Literal["forja.dev/v1alpha1"] = "forja.dev/v1alpha1"
    kind: Literal["ModelVersion"] = "ModelVersion"
    metadata: dict[str, Any] = Field(default_factory=dict)
    _name_fits = _NAME.validator()
    spec: ModelVersionSpec
    status: ModelVersionStatus | None = None
