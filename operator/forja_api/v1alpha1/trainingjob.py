"""TrainingJob: one training run, retried from checkpoints until it yields a ModelVersion.

Kueue: a TrainingJob takes part in Kueue's admission through the standard
``kueue.x-k8s.io/queue-name`` label (Kueue's contract for every workload). The
operator copies that label (or ``spec.scheduling.queueName`` when the label is
absent) onto each attempt, where Kueue's own integration gates and admits it;
``spec.suspend`` is the switch Kueue-style tooling flips to hold or release a job.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal

from pydantic import ConfigDict, Field, model_validator

from forja_api.v1alpha1.common import (
    AGE_COLUMN,
    AliasName,
    ApiModel,
    Condition,
    CrdInfo,
    ModelName,
    Name,
    NameRule,
    PrinterColumn,
    Resources,
    Scheduling,
    SecretName,
    SemVer,
    cel,
    immutable,
    validations,
)

__all__ = [
    "DISTRIBUTED_TRAINERS",
    "KUEUE_QUEUE_LABEL",
    "MAX_WORKERS",
    "Attempt",
    "Bump",
    "CheckpointStatus",
    "Checkpointing",
    "Dataset",
    "DatasetFormat",
    "OnOOM",
    "Output",
    "Phase",
    "Pretrained",
    "PretrainedStatus",
    "ProgressStatus",
    "Promotion",
    "RestartPolicy",
    "TrainerName",
    "TrainingJob",
    "TrainingJobSpec",
    "TrainingJobStatus",
    "TrainingScheduling",
    "Versioning",
    "WorkerStatus",
    "queue_name",
    "workers_refusal",
]

KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"

_STORE_URI = r"^(s3|pvc|file)://.+"
_DATA_URI = r"^(s3|pvc|file|generated)://.+"
_SHA256 = r"^[0-9a-f]{64}$"


class TrainerName(StrEnum):
    """The built-in trainers (WORKLOADS.md), or `custom` with spec.command."""

    YOLO_DETECTOR = "yolo-detector"
    SMOKE_VERIFIER = "smoke-verifier"
    UNET_SEGMENTATION = "unet-segmentation"
    AUTOENCODER_ANOMALY = "autoencoder-anomaly"
    IMAGE_CLASSIFIER = "image-classifier"
    RESTORATION_FINETUNE = "restoration-finetune"
    DISTILL_QAT_TFLITE = "distill-qat-tflite"
    CUSTOM = "custom"


DISTRIBUTED_TRAINERS: tuple[TrainerName, ...] = (
    TrainerName.SMOKE_VERIFIER,
    TrainerName.IMAGE_CLASSIFIER,
    TrainerName.UNET_SEGMENTATION,
    TrainerName.AUTOENCODER_ANOMALY,
    TrainerName.RESTORATION_FINETUNE,
    TrainerName.DISTILL_QAT_TFLITE,
)
"""Trainers that run data-parallel across pods, so accept workers > 1: the PyTorch
trainers of forja's own loop on torch.distributed, and distill-qat-tflite on
TensorFlow's MultiWorkerMirroredStrategy. The others train in one process: Ultralytics
drives its own loop (and its own multi-GPU launcher), and a custom command is the
user's own."""
MAX_WORKERS = 64


def workers_refusal(trainer: TrainerName) -> str:
    """What the CRD and the pydantic type say when ``trainer`` is given workers > 1."""
    names = ", ".join(t.value for t in DISTRIBUTED_TRAINERS)
    return (
        f"spec.workers must be 1 for trainer {trainer.value}: it runs on one worker only; "
        f"workers > 1 needs one of: {names}"
    )


def _workers_rules() -> list[dict[str, str]]:
    # One rule per trainer with a static message naming it: a messageExpression
    # concatenating self.trainer costs more than the API server's CEL budget allows.
    return [
        cel(
            f"self.trainer != '{t.value}' || !has(self.workers) || self.workers <= 1",
            workers_refusal(t),
            field_path=".workers",
        )
        for t in TrainerName
        if t not in DISTRIBUTED_TRAINERS
    ]


class DatasetFormat(StrEnum):
    """How a dataset is laid out on disk."""

    YOLO = "yolo"
    CROP_SEQUENCES = "crop-sequences"
    GEOTIFF = "geotiff"
    IMAGE_FOLDER = "image-folder"
    IMAGE_PAIRS = "image-pairs"
    MULTILABEL_CSV = "multilabel-csv"
    GENERATED = "generated"


class Dataset(ApiModel):
    """Where the training data is and how it is laid out."""

    uri: str = Field(pattern=_DATA_URI, max_length=2048)
    """s3://bucket/prefix, pvc://claim/path, file:///path, or generated://<kind> for a small
    synthetic set the trainer generates itself (tests, demos)."""
    format: DatasetFormat
    """The layout the trainer reads: yolo (images/ + labels/ + data.yaml), crop-sequences,
    geotiff (image + mask .tif), image-folder (one folder per class), image-pairs
    (degraded/ + clean/), multilabel-csv (images/ + *_labels.csv), or generated."""
    digest: str | None = Field(default=None, pattern=_SHA256)
    """Optional sha256 of the dataset's manifest, recorded in the ModelVersion's lineage."""


class Pretrained(ApiModel):
    """Weights to start from instead of random initialisation."""

    uri: str = Field(pattern=_STORE_URI, max_length=2048)
    """Where the weights are: s3:// (read with the job's store credentials), pvc:// or file://."""
    sha256: str | None = Field(default=None, pattern=_SHA256)
    """Expected digest; the trainer refuses weights that do not match. Unset, the digest
    of the file read is recorded in status.pretrained and the version's lineage."""
    freeze_backbone: bool = False
    """Train only the head; the backbone's weights stay as loaded."""
    backbone_lr_factor: float = Field(default=0.1, gt=0, le=1)
    """Backbone learning rate as a fraction of the head's (partial transfer, WORKLOADS.md #4)."""


class Checkpointing(ApiModel):
    """How often the trainer saves a resumable checkpoint."""

    interval_epochs: int = Field(default=1, ge=1, le=1000)
    """Write `last` every N epochs (and always on SIGTERM)."""
    keep: int = Field(default=3, ge=1, le=100)
    """How many rotating epoch checkpoints to keep besides `last` and `best`."""


class OnOOM(StrEnum):
    """What a new attempt does after the previous one was OOM-killed."""

    HALVE_BATCH = "HalveBatch"
    RETRY = "Retry"
    FAIL = "Fail"


class RestartPolicy(ApiModel):
    """How failed attempts are retried. A retry resumes from the last checkpoint."""

    backoff_limit: int = Field(default=3, ge=0, le=100)
    """Failures of the job's own (OOMKilled, Error) allowed before the job fails."""
    preemption_limit: int = Field(default=10, ge=0, le=1000)
    """Endings the job did not cause (Evicted, Preempted: a drain, a higher priority, a
    deleted pod) allowed before it fails; they do not count against backoffLimit."""
    backoff_seconds: int = Field(default=10, ge=0, le=3600)
    """Delay before the first retry; doubles each retry, capped at 5 minutes."""
    on_oom: OnOOM = Field(default=OnOOM.HALVE_BATCH, alias="onOOM")
    """On an OOM kill: HalveBatch resumes with half the batch size, Retry resumes as is, Fail
    stops."""
    min_batch_size: int = Field(default=1, ge=1, le=65536)
    """HalveBatch never goes below this; an OOM kill at the floor fails the job."""


class Bump(StrEnum):
    """Which part of a semantic version to increase."""

    MAJOR = "major"
    MINOR = "minor"
    PATCH = "patch"


class Promotion(ApiModel):
    """Give the new version an alias when a metric passes a threshold."""

    alias: AliasName
    """The alias to give, e.g. staging or production; it moves off the version holding it."""
    metric: str = Field(min_length=1, max_length=128)
    """A metric the trainer reports, e.g. map50 or val_accuracy."""
    threshold: float
    """The value the metric must reach."""
    direction: Literal["min", "max"] = "max"
    """max: promote when metric >= threshold; min: when metric <= threshold."""


def _no_schema_default(schema: dict[str, Any]) -> None:
    # The CRD must not fill bump in: has(self.bump) tells a written bump from none, so
    # "bump and version" can be refused. pydantic still defaults it (to minor).
    schema.pop("default", None)


class Versioning(ApiModel):
    """How the produced ModelVersion is numbered and promoted."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "!(has(self.bump) && has(self.version))",
                "set versioning.bump or versioning.version, not both",
                field_path=".version",
            )
        )
    )

    bump: Bump = Field(default=Bump.MINOR, json_schema_extra=_no_schema_default)
    """Which part of the model's highest version to increase; minor when unset. The operator
    takes the next free version, so concurrent jobs of one model never share one."""
    version: SemVer | None = None
    """An explicit version instead of a bump; the job fails if the model already has it."""
    promotion: Promotion | None = None
    """Alias the new version when a metric passes a threshold."""

    @model_validator(mode="after")
    def _bump_or_version(self) -> Versioning:
        # Like has() in the CEL rule: only a bump the user wrote counts.
        if "bump" in self.model_fields_set and self.version is not None:
            raise ValueError("set versioning.bump or versioning.version, not both")
        return self

    @property
    def effective_bump(self) -> Bump:
        """The bump to apply when no explicit version is set (kept for callers; = bump)."""
        return self.bump


class Output(ApiModel):
    """Where checkpoints and artifacts go; defaults to the operator's artifact store."""

    uri: str | None = Field(default=None, pattern=_STORE_URI, max_length=2048)
    """A prefix: s3://bucket/prefix, pvc://claim/path or file:///path."""
    credentials_secret: SecretName | None = None
    """A Secret with accessKey and secretKey for s3:// (credentials are never inline)."""


class TrainingScheduling(Scheduling):
    """Where and when attempts may run."""

    queue_name: Name | None = None
    """A Kueue LocalQueue. The kueue.x-k8s.io/queue-name label on the TrainingJob is Kueue's
    standard way to say the same and wins when both are set; the operator copies the
    queue onto each attempt."""
    one_worker_per_node: bool = False
    """With workers > 1: no two workers of an attempt on the same node (a required pod
    anti-affinity on kubernetes.io/hostname), e.g. one worker per multi-GPU node. A gang
    that cannot be spread stays Pending."""


class TrainingJobSpec(ApiModel):
    """What to train, on what, with which resources, and how to version the result."""

    immutable_fields: ClassVar[tuple[str, ...]] = ("model", "trainer")

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "has(self.command) == (self.trainer == 'custom')",
                "spec.command is required when spec.trainer is custom, and only then",
                field_path=".command",
            ),
            *_workers_rules(),
        )
    )

    model: Annotated[ModelName, immutable("spec.model")]
    """The model series the result belongs to; the ModelVersion is named <model>-v<version>."""
    trainer: Annotated[TrainerName, immutable("spec.trainer")]
    """A built-in trainer (WORKLOADS.md), or custom with spec.command."""
    image: str | None = Field(default=None, min_length=1, max_length=512)
    """Container image; defaults to the operator's trainer image (its TensorFlow image for
    distill-qat-tflite)."""
    command: list[str] | None = Field(default=None, min_length=1, max_length=64)
    """Entry point for trainer custom; it must follow forja's pod contract (forja_api.contract)."""
    dataset: Dataset
    """The training data."""
    hyperparameters: dict[str, Any] = Field(default_factory=dict)
    """Trainer-specific settings (epochs, batch_size, lr, ...). The trainer validates them and
    fails the job with InvalidConfig naming the key."""
    pretrained: Pretrained | None = None
    """Weights to start from (fine-tuning, partial transfer)."""
    workers: int = Field(default=1, ge=1, le=MAX_WORKERS)
    """Pods per attempt, trained data-parallel as one gang (torch.distributed
    DistributedDataParallel, or TensorFlow's MultiWorkerMirroredStrategy): rank 0 alone
    writes checkpoints, progress and the artifact; if any worker ends, the whole attempt
    ends and the next resumes every worker from the last checkpoint. More than 1 only for
    trainers that run distributed (smoke-verifier, image-classifier, unet-segmentation,
    autoencoder-anomaly, restoration-finetune, distill-qat-tflite)."""
    resources: Resources = Field(default_factory=Resources)
    """CPU, memory and GPUs (nvidia.com/gpu limits) for each pod of an attempt (per worker)."""
    scheduling: TrainingScheduling = Field(default_factory=TrainingScheduling)
    """Node selection, tolerations, priority and the Kueue queue."""
    checkpoint: Checkpointing = Field(default_factory=Checkpointing)
    """Checkpoint interval and rotation."""
    restart_policy: RestartPolicy = Field(default_factory=RestartPolicy)
    """Retries, backoff and the OOM policy."""
    versioning: Versioning = Field(default_factory=Versioning)
    """Version numbering and promotion of the produced ModelVersion."""
    output: Output = Field(default_factory=Output)
    """Where checkpoints and artifacts go."""
    suspend: bool = False
    """true stops the running attempt (it checkpoints on SIGTERM) and starts none; false resumes
    from the last checkpoint. Kueue holds a job through this field."""
    active_deadline_seconds: int | None = Field(default=None, ge=1)
    """Wall time for the whole job across attempts; then it fails with DeadlineExceeded."""
    ttl_seconds_after_finished: int | None = Field(default=None, ge=0)
    """Delete the finished TrainingJob (never its ModelVersion) this many seconds after it ends."""

    @model_validator(mode="after")
    def _command_iff_custom(self) -> TrainingJobSpec:
        if (self.command is not None) != (self.trainer == TrainerName.CUSTOM):
            raise ValueError("spec.command is required when spec.trainer is custom, and only then")
        return self

    @model_validator(mode="after")
    def _workers_need_distributed_trainer(self) -> TrainingJobSpec:
        if self.workers > 1 and self.trainer not in DISTRIBUTED_TRAINERS:
            raise ValueError(workers_refusal(self.trainer))
        return self


class Phase(StrEnum):
    """Where a TrainingJob is in its life."""

    PENDING = "Pending"
    RUNNING = "Running"
    RESTARTING = "Restarting"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    SUSPENDED = "Suspended"


class Attempt(ApiModel):
    """One try at the job: one pod (or batch Job) and why it ended."""

    index: int = Field(ge=0)
    """0 for the first attempt."""
    pod: str | None = None
    """The pod (or Job) that ran it."""
    start_time: str | None = None
    """When it started (RFC 3339)."""
    end_time: str | None = None
    """When it ended (RFC 3339)."""
    reason: str | None = None
    """Why it ended: Completed, OOMKilled, Evicted, Preempted, DeadlineExceeded,
    Unschedulable, Error, ... (Unschedulable also while open and waiting for a node)."""
    exit_code: int | None = None
    """The trainer's exit code (forja_api.contract.ExitCode)."""
    message: str | None = None
    """The trainer's last words, from its termination message."""
    overrides: dict[str, Any] = Field(default_factory=dict)
    """Hyperparameters changed for this attempt (e.g. batch_size after an OOM kill)."""
    resumed_from: str | None = None
    """The checkpoint it resumed from."""
    unschedulable_since: str | None = None
    """Since when (RFC 3339) one of its pods has been one the scheduler cannot place
    (gated pods waiting for Kueue's admission do not count); past the operator's
    unschedulableSeconds the attempt ends with reason Unschedulable and is retried."""


class WorkerStatus(ApiModel):
    """One pod of the current attempt's gang."""

    rank: int = Field(ge=0)
    """Its torch.distributed rank; rank 0 writes checkpoints, progress and the artifact."""
    pod: str
    """The pod: <attempt>-w<rank> (the attempt's name itself when workers is 1)."""
    node: str | None = None
    """The node it was scheduled to."""
    phase: str
    """The pod's phase (Pending, Running, Succeeded, Failed), or Missing once deleted."""


class ProgressStatus(ApiModel):
    """Training progress as the trainer last reported it."""

    epoch: int = Field(default=0, ge=0)
    """Epochs finished."""
    total_epochs: int = Field(default=0, ge=0)
    """Epochs planned."""
    percent: int = Field(default=0, ge=0, le=100)
    """epoch / totalEpochs, in percent."""
    step: str | None = None
    """A named step of a multi-step pipeline (e.g. teacher, student, qat, export)."""
    metrics: dict[str, float] = Field(default_factory=dict)
    """The latest metrics (loss, val_accuracy, map50, ...)."""
    eta_seconds: float | None = None
    """Estimated seconds to the end."""
    updated_at: str | None = None
    """When the trainer reported this (RFC 3339)."""


class CheckpointStatus(ApiModel):
    """The checkpoint a new attempt would resume from."""

    uri: str
    """Where it is."""
    epoch: int = Field(ge=0)
    """The epoch it was written after."""
    sha256: str | None = None
    """Its digest."""


class PretrainedStatus(ApiModel):
    """The pretrained weights the job trained from, as the trainer read them."""

    uri: str
    """spec.pretrained.uri."""
    sha256: str = Field(pattern=_SHA256)
    """The digest of the bytes loaded: spec.pretrained.sha256 when pinned, else computed."""
    pinned: bool = False
    """spec.pretrained.sha256 was set (so no other file could have been loaded)."""


class TrainingJobStatus(ApiModel):
    """What the operator observed; computed whole on each reconcile."""

    phase: Phase = Phase.PENDING
    """Pending, Running, Restarting, Succeeded, Failed or Suspended."""
    conditions: list[Condition] = Field(
        default_factory=list,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    """Created, Running, Restarting, Succeeded, Failed, Suspended, Versioned
    (forja_api.conditions)."""
    attempts: list[Attempt] = Field(default_factory=list)
    """Every attempt so far, oldest first, with why each ended."""
    workers: list[WorkerStatus] = Field(default_factory=list)
    """The pods of the current attempt, by rank."""
    progress: ProgressStatus | None = None
    """The running attempt's progress."""
    last_checkpoint: CheckpointStatus | None = None
    """The checkpoint the next attempt resumes from."""
    pretrained: PretrainedStatus | None = None
    """The pretrained weights the succeeded attempt loaded, with their digest."""
    model_version: str | None = None
    """The ModelVersion object this job produced."""
    version: str | None = None
    """Its semantic version."""
    start_time: str | None = None
    """When the first attempt started (RFC 3339)."""
    completion_time: str | None = None
    """When the job succeeded or failed (RFC 3339)."""
    observed_generation: int | None = None
    """The metadata.generation this status was computed from."""
    message: str | None = None
    """A person-readable summary of the current phase."""


_NAME = NameRule("it is the forja.dev/job label of the job's pods and versions")


class TrainingJob(ApiModel):
    """A training run that becomes a versioned, verified model (forja.dev/v1alpha1)."""

    crd: ClassVar[CrdInfo] = CrdInfo(
        kind="TrainingJob",
        plural="trainingjobs",
        singular="trainingjob",
        short_names=("tj", "ftj"),
        description=(
            "TrainingJob trains a model with a built-in or custom trainer, resumes from "
            "checkpoints after OOM kills and preemption, and registers the result as a "
            "ModelVersion."
        ),
        root_rules=(_NAME.cel(),),
        columns=(
            PrinterColumn("Phase", "string", ".status.phase", "Where the job is in its life"),
            PrinterColumn("Progress", "integer", ".status.progress.percent", "Percent done"),
            PrinterColumn("Epoch", "integer", ".status.progress.epoch", "Epochs finished"),
            PrinterColumn("Epochs", "integer", ".status.progress.totalEpochs", "Epochs planned", 1),
            PrinterColumn("Model", "string", ".spec.model", "The model series"),
            PrinterColumn("Version", "string", ".status.version", "The version this job produced"),
            PrinterColumn("Trainer", "string", ".spec.trainer", "The trainer", 1),
            PrinterColumn("Workers", "integer", ".spec.workers", "World size: pods per attempt", 1),
            AGE_COLUMN,
        ),
    )

    api_version: Literal["forja.dev/v1alpha1"] = "forja.dev/v1alpha1"
    kind: Literal["TrainingJob"] = "TrainingJob"
    metadata: dict[str, Any] = Field(default_factory=dict)
    _name_fits = _NAME.validator()
    spec: TrainingJobSpec
    status: TrainingJobStatus | None = None


def queue_name(job: TrainingJob) -> str | None:
    """The Kueue queue of a job: the label if present (Kueue's contract), else the spec field."""
    labels = job.metadata.get("labels") or {}
    label = labels.get(KUEUE_QUEUE_LABEL)
    if isinstance(label, str) and label:
        return label
    return job.spec.scheduling.queue_name
