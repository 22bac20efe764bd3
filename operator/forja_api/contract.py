"""The contract between the operator and the pods it starts.

Both sides import this module: the operator to render attempt pods and read what
they report, the trainer and server images to find their inputs and report back.
It depends only on the standard library and pydantic.

How a training attempt runs
---------------------------
* The resolved TrainingJob spec arrives as JSON in the env var ``FORJA_SPEC``
  (a :class:`RenderedSpec`), so the trainer parses one typed object at start.
* Checkpoints go under ``FORJA_CHECKPOINT_URI`` (a prefix: ``last.pt``,
  ``best.pt``, ``epoch-0003.pt``...); artifacts under ``FORJA_ARTIFACT_URI``.
  A new attempt gets ``FORJA_RESUME_FROM`` when a checkpoint exists, and loads it
  only when it lies under its own job's checkpoint prefix (:func:`is_under_prefix`,
  asked by the operator before handing it on and by the trainer before loading).
* While running, the trainer patches its own pod's annotation
  :data:`PROGRESS_ANNOTATION` with a :class:`Progress` JSON, at most once every
  :data:`PROGRESS_MIN_INTERVAL_SECONDS` (cheap for the API server; the operator
  sees it through its pod watch, no polling).
* At the end it writes a :class:`Result` JSON to the termination message file
  (``/dev/termination-log``, at most 4096 bytes), and exits with one of the codes
  below. The operator reads it from ``containerStatuses[].state.terminated.message``.

Exit codes
----------
0 success; :data:`PERMANENT_EXIT_CODES` end the job Failed with no retry;
everything else (OOM kill 137, SIGTERM 143, :data:`EXIT_RETRYABLE`, a crash) is
retried from the last checkpoint while ``backoffLimit`` allows.

Errors
------
A pod of ours that ends on purpose raises a :class:`PodError`; its ``exit_code`` and
``reason`` (a constant of :mod:`forja_api.conditions`) are what the operator reads::

    PodError                     exit 1, Error: unexpected, retried
    +-- InvalidConfig            exit 2, permanent: a spec field or hyperparameter is wrong
    +-- InvalidDataset           exit 3, permanent: data missing, malformed, class mismatch
    +-- GpuUnavailable           exit 4, permanent: GPUs requested, none visible
    +-- IncompatiblePretrained   exit 5, permanent: pretrained weights unusable
    +-- RetryableError           exit 75: recoverable, in-process retries exhausted
    |   +-- OutOfMemory          CUDA OOM at the smallest batch size allowed
    +-- Terminated               exit 128+signal: checkpointed on SIGTERM/SIGINT

Both trainer images and the verify program (its own subclasses) raise these, and
write the :class:`Result` with :func:`write_termination_message`.
"""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import threading
from datetime import UTC, datetime
from enum import IntEnum
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from pydantic.alias_generators import to_camel

from forja_api import conditions as c

__all__ = [
    "ARTIFACT_URI_ENV",
    "ATTEMPT_ENV",
    "CHECKPOINT_URI_ENV",
    "EXIT_RETRYABLE",
    "GROUP_RANK_ENV",
    "JOB_NAME_ENV",
    "LOCAL_RANK_ENV",
    "LOCAL_WORLD_SIZE_ENV",
    "MASTER_ADDR_ENV",
    "MASTER_PORT_ENV",
    "MAX_TERMINATION_MESSAGE_BYTES",
    "NAMESPACE_ENV",
    "PERMANENT_EXIT_CODES",
    "POD_IP_ENV",
    "POD_NAME_ENV",
    "PROGRESS_ANNOTATION",
    "PROGRESS_MIN_INTERVAL_SECONDS",
    "RANK_ENV",
    "RANK_LABEL",
    "RENDEZVOUS_PORT",
    "RENDEZVOUS_SERVICE_PORT",
    "RESUME_FROM_ENV",
    "RESUME_SHA256_ENV",
    "S3_ENDPOINT_ENV",
    "SPEC_ENV",
    "TERMINATION_MESSAGE_PATH",
    "TERMINATION_PATH_ENV",
    "TF_CONFIG_ENV",
    "TF_WORKER_PORT_BASE",
    "TF_WORKER_SERVICE_PORT",
    "WORLD_SIZE_ENV",
    "WORLD_SIZE_LABEL",
    "ArtifactRef",
    "CheckpointRef",
    "ExitCode",
    "GpuUnavailable",
    "IncompatiblePretrained",
    "InvalidConfig",
    "InvalidDataset",
    "OutOfMemory",
    "PodError",
    "PretrainedRef",
    "Progress",
    "RenderedSpec",
    "Result",
    "RetryableError",
    "StopSignal",
    "Terminated",
    "is_permanent_exit",
    "is_under_prefix",
    "refuse_foreign_resume",
    "termination_path",
    "write_termination_message",
]

# --- environment handed to every forja pod ---------------------------------------
SPEC_ENV = "FORJA_SPEC"
ATTEMPT_ENV = "FORJA_ATTEMPT"
JOB_NAME_ENV = "FORJA_JOB_NAME"
NAMESPACE_ENV = "FORJA_NAMESPACE"
POD_NAME_ENV = "FORJA_POD_NAME"
POD_IP_ENV = "FORJA_POD_IP"
CHECKPOINT_URI_ENV = "FORJA_CHECKPOINT_URI"
ARTIFACT_URI_ENV = "FORJA_ARTIFACT_URI"
RESUME_FROM_ENV = "FORJA_RESUME_FROM"
# The sha256 the operator recorded for the checkpoint in FORJA_RESUME_FROM.
RESUME_SHA256_ENV = "FORJA_RESUME_SHA256"
# S3 credentials come from a Secret as the standard AWS_ACCESS_KEY_ID /
# AWS_SECRET_ACCESS_KEY env vars (secretKeyRef), never inline; the endpoint is not
# secret and is set directly.
S3_ENDPOINT_ENV = "FORJA_S3_ENDPOINT"
# A multi-worker attempt (spec.workers > 1): torch.distributed's env:// rendezvous,
# under the names torchrun sets, so a custom trainer can call init_process_group().
WORLD_SIZE_ENV = "WORLD_SIZE"
RANK_ENV = "RANK"
LOCAL_RANK_ENV = "LOCAL_RANK"
MASTER_ADDR_ENV = "MASTER_ADDR"
MASTER_PORT_ENV = "MASTER_PORT"
# resources.gpus > 1 in one pod: one process per GPU. The pod gets torchrun's node-level
# names (its group rank, processes per pod); forja_trainer's launcher starts the
# processes, each with its own RANK = GROUP_RANK * LOCAL_WORLD_SIZE + LOCAL_RANK.
GROUP_RANK_ENV = "GROUP_RANK"
LOCAL_WORLD_SIZE_ENV = "LOCAL_WORLD_SIZE"
RENDEZVOUS_PORT = 29500
"""Where rank 0's TCPStore listens in its pod (torch's default MASTER_PORT)."""
RENDEZVOUS_SERVICE_PORT = 29400
"""The rendezvous Service's port, forwarded to RENDEZVOUS_PORT on rank 0. Not the same
number: the local cluster's Service proxy listens on ClusterIP:port on the same host
as the pods, where rank 0 binds its port on every address."""
# A multi-worker distill-qat-tflite attempt: tf.distribute's cluster description.
TF_CONFIG_ENV = "TF_CONFIG"
TF_WORKER_PORT_BASE = 23000
"""Worker ``i``'s gRPC server listens on this plus ``i`` in its pod. One port per rank:
TensorFlow binds its server on every address, and the local cluster's pods share one
network namespace, where two workers on one port would collide."""
TF_WORKER_SERVICE_PORT = 2222
"""The port of each worker's Service (TensorFlow's customary one), forwarded to that
worker's TF_WORKER_PORT_BASE + rank; never one of those, for the reason of
RENDEZVOUS_SERVICE_PORT."""

# --- labels and annotations -------------------------------------------------------
GROUP = "forja.dev"
PROGRESS_ANNOTATION = f"{GROUP}/progress"
JOB_LABEL = f"{GROUP}/trainingjob"
ATTEMPT_LABEL = f"{GROUP}/attempt"
RANK_LABEL = f"{GROUP}/rank"
"""On the pods of a multi-worker attempt: the worker's torch.distributed rank."""
WORLD_SIZE_LABEL = f"{GROUP}/world-size"
MODEL_LABEL = f"{GROUP}/model"
VERSION_LABEL = f"{GROUP}/version"
ISVC_LABEL = f"{GROUP}/inferenceservice"
COMPONENT_LABEL = "app.kubernetes.io/component"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "forja"
KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
# Kueue's pod integration (plain pods admitted as a group): on a TrainingJob, the queue
# and priority-class labels opt it in; the operator puts them on every pod of an
# attempt with the group's name (the attempt's) and size, so the gang is one Workload.
KUEUE_PRIORITY_CLASS_LABEL = "kueue.x-k8s.io/priority-class"
KUEUE_POD_GROUP_LABEL = "kueue.x-k8s.io/pod-group-name"
KUEUE_POD_GROUP_TOTAL_COUNT_ANNOTATION = "kueue.x-k8s.io/pod-group-total-count"
KUEUE_RETRIABLE_IN_GROUP_ANNOTATION = "kueue.x-k8s.io/retriable-in-group"
"""``"false"``: a failed worker is never replaced inside its group (the operator starts
the next attempt as a new group), so Kueue finishes the Workload and frees its quota
once no pod of the group is running."""
KUEUE_ADMISSION_GATE = "kueue.x-k8s.io/admission"
"""The scheduling gate Kueue's webhook puts on a pod until its Workload is admitted."""
KUEUE_FINALIZER = "kueue.x-k8s.io/managed"
KUEUE_TERMINATION_TARGET = "TerminationTarget"
"""The pod condition Kueue sets (reason WorkloadEvicted, ...) before deleting a pod it stops."""

PROGRESS_MIN_INTERVAL_SECONDS = 5.0
TERMINATION_MESSAGE_PATH = "/dev/termination-log"
TERMINATION_PATH_ENV = "FORJA_TERMINATION_MESSAGE_PATH"
"""Local runs and tests write the termination message here instead."""
MAX_TERMINATION_MESSAGE_BYTES = 4096

# --- checkpoint names under FORJA_CHECKPOINT_URI ----------------------------------
LAST_CHECKPOINT = "last.pt"
BEST_CHECKPOINT = "best.pt"


class ExitCode(IntEnum):
    """Exit codes a trainer uses; the operator maps each to an attempt reason."""

    SUCCESS = 0
    INVALID_CONFIG = 2  # permanent: a hyperparameter or field is invalid
    INVALID_DATASET = 3  # permanent: dataset missing, malformed, class mismatch
    GPU_UNAVAILABLE = 4  # permanent: GPUs requested but none visible
    INCOMPATIBLE_PRETRAINED = 5  # permanent: pretrained weights unusable
    CHECKSUM_MISMATCH = 65  # EX_DATAERR: the verify program found another digest
    ARTIFACT_NOT_FOUND = 66  # EX_NOINPUT: the verify program found no artifact
    VERIFY_ERROR = 70  # EX_SOFTWARE: the verify program could not decide (retried)
    RETRYABLE = 75  # EX_TEMPFAIL: a recoverable error after bounded in-process retries
    KILLED = 137  # SIGKILL, usually the OOM killer or a forced preemption
    TERMINATED = 143  # SIGTERM: checkpointed, then exited (preemption, suspend)


EXIT_RETRYABLE = ExitCode.RETRYABLE
PERMANENT_EXIT_CODES: frozenset[int] = frozenset(
    {
        ExitCode.INVALID_CONFIG,
        ExitCode.INVALID_DATASET,
        ExitCode.GPU_UNAVAILABLE,
        ExitCode.INCOMPATIBLE_PRETRAINED,
    }
)

_log = logging.getLogger(__name__)

PERMANENT_REASONS: dict[int, str] = {
    ExitCode.INVALID_CONFIG: c.REASON_INVALID_CONFIG,
    ExitCode.INVALID_DATASET: c.REASON_INVALID_DATASET,
    ExitCode.GPU_UNAVAILABLE: c.REASON_GPU_UNAVAILABLE,
    ExitCode.INCOMPATIBLE_PRETRAINED: c.REASON_INCOMPATIBLE_PRETRAINED,
}


def is_permanent_exit(code: int) -> bool:
    return code in PERMANENT_EXIT_CODES


def _finite_only(value: Any) -> Any:
    """Drop NaN, infinite and null metrics: they have no JSON form and rank nothing.

    A diverged validation loss must not cost a finished job its Result (a NaN would
    be written as null, and the whole message would no longer parse).
    """
    if not isinstance(value, dict):
        return value
    return {
        k: v
        for k, v in value.items()
        if v is not None and not (isinstance(v, float) and not math.isfinite(v))
    }


Metrics = Annotated[dict[str, float], BeforeValidator(_finite_only)]
"""Metric name -> finite value."""


class _Wire(BaseModel):
    """Camel-case JSON on the wire, snake_case in Python."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    def to_json(self) -> str:
        return self.model_dump_json(by_alias=True, exclude_none=True)


class CheckpointRef(_Wire):
    uri: str
    epoch: int
    sha256: str | None = None


def is_under_prefix(uri: str, prefix: str) -> bool:
    """True when ``uri`` names something inside ``prefix`` (no ``..``/``.`` segments)."""
    base = prefix.rstrip("/") + "/"
    if uri.rstrip("/") == prefix.rstrip("/"):
        return True
    if not uri.startswith(base):
        return False
    return all(seg not in ("", ".", "..") for seg in uri[len(base) :].rstrip("/").split("/"))


def refuse_foreign_resume(uri: str, checkpoint_prefix: str) -> None:
    """InvalidConfig unless ``uri`` lies under this job's own ``checkpoint_prefix``."""
    if not is_under_prefix(uri, checkpoint_prefix):
        raise InvalidConfig(
            f"{uri} is outside this job's checkpoint prefix {checkpoint_prefix}; "
            "an attempt resumes only from its own job's checkpoints",
            field="resumeFrom",
        )


class ArtifactRef(_Wire):
    uri: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size: int = Field(ge=0)
    format: str
    task: str | None = None


class PretrainedRef(_Wire):
    """The pretrained weights an attempt loaded: the digest of the bytes it read, which
    is the only record of what it trained from when spec.pretrained.sha256 is unset."""

    uri: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class Progress(_Wire):
    """What a running trainer reports on its pod annotation."""

    epoch: int = 0
    total_epochs: int = 0
    step: str | None = None  # a named stage of a multi-step pipeline (TF trainer)
    metrics: Metrics = Field(default_factory=dict)
    eta_seconds: float | None = None
    checkpoint: CheckpointRef | None = None
    batch_size: int | None = None
    updated_at: str = Field(default_factory=lambda: datetime.now(UTC).isoformat())

    @property
    def percent(self) -> int:
        if self.total_epochs <= 0:
            return 0
        return min(100, int(100 * self.epoch / self.total_epochs))


class Result(_Wire):
    """What a trainer writes to its termination message when it ends."""

    ok: bool
    artifact: ArtifactRef | None = None
    metrics: Metrics = Field(default_factory=dict)
    checkpoint: CheckpointRef | None = None
    pretrained: PretrainedRef | None = None
    reason: str | None = None  # e.g. InvalidDataset
    message: str | None = None  # a person-readable line naming the field or file

    def to_termination_message(self) -> str:
        """Serialise within the kubelet's 4 KiB limit, dropping detail first."""
        text = self.to_json()
        if len(text.encode()) <= MAX_TERMINATION_MESSAGE_BYTES:
            return text
        slim = self.model_copy(update={"metrics": dict(list(self.metrics.items())[:20])})
        if slim.message and len(slim.message) > 1024:
            slim.message = slim.message[:1021] + "..."
        text = slim.to_json()
        if len(text.encode()) <= MAX_TERMINATION_MESSAGE_BYTES:
            return text
        return slim.model_copy(update={"metrics": {}}).to_json()

    @classmethod
    def from_termination_message(cls, text: str | None) -> Result | None:
        if not text:
            return None
        try:
            return cls.model_validate(json.loads(text))
        except (ValueError, TypeError):
            return None


class RenderedSpec(_Wire):
    """The resolved TrainingJob handed to the trainer in ``FORJA_SPEC``.

    ``spec`` is the TrainingJob spec as admitted (camelCase, defaults applied);
    ``overrides`` are hyperparameters the operator changed for this attempt
    (e.g. ``batch_size`` halved after an OOM kill) and win over the spec's.
    """

    name: str
    namespace: str
    uid: str = ""
    attempt: int = 0
    spec: dict[str, Any]
    overrides: dict[str, Any] = Field(default_factory=dict)
    checkpoint_uri: str
    artifact_uri: str
    resume_from: str | None = None
    resume_sha256: str | None = None
    """The digest recorded for ``resume_from``; the trainer checks it before loading."""


# --- errors a pod ends with ------------------------------------------------------------


class PodError(Exception):
    """The catchable base of every error a forja pod ends with on purpose (see above)."""

    exit_code: int = 1
    reason: str = c.REASON_ERROR

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field


class InvalidConfig(PodError):  # noqa: N818 - named for the reason it reports
    exit_code = ExitCode.INVALID_CONFIG
    reason = c.REASON_INVALID_CONFIG


class InvalidDataset(PodError):  # noqa: N818 - named for the reason it reports
    exit_code = ExitCode.INVALID_DATASET
    reason = c.REASON_INVALID_DATASET


class GpuUnavailable(PodError):  # noqa: N818 - named for the reason it reports
    exit_code = ExitCode.GPU_UNAVAILABLE
    reason = c.REASON_GPU_UNAVAILABLE


class IncompatiblePretrained(PodError):  # noqa: N818 - named for the reason it reports
    exit_code = ExitCode.INCOMPATIBLE_PRETRAINED
    reason = c.REASON_INCOMPATIBLE_PRETRAINED


class RetryableError(PodError):
    exit_code = ExitCode.RETRYABLE
    reason = c.REASON_RETRYABLE


class OutOfMemory(RetryableError):  # noqa: N818 - named for the reason it reports
    reason = c.REASON_OUT_OF_MEMORY


class Terminated(PodError):  # noqa: N818 - named for the reason it reports
    """Raised after the checkpoint on a stop signal; the process exits 128 + signal."""

    reason = c.REASON_TERMINATED

    def __init__(self, message: str | None = None, *, signum: int = signal.SIGTERM) -> None:
        name = signal.Signals(signum).name
        super().__init__(message or f"stopped by {name} after checkpointing")
        self.signum = signum
        self.exit_code = 128 + signum


class StopSignal:
    """Remembers a SIGTERM / SIGINT so a trainer checkpoints at its next step, then raises
    :class:`Terminated` (suspend and preemption give the pod its grace period for that).

    ``event`` is set too, for loops that wait on a threading.Event.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self.event = threading.Event()
        self._previous: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def request(self, signum: int = signal.SIGTERM) -> None:
        self.signum = signum
        self.event.set()

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C means now
        _log.warning("%s received: checkpointing at the next step", signal.Signals(signum).name)
        self.request(signum)

    def install(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._previous[sig] = signal.signal(sig, self._handle)

    def uninstall(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()


# --- the termination message ----------------------------------------------------------


def termination_path() -> Path:
    """Where the Result goes: the kubelet's file, or $FORJA_TERMINATION_MESSAGE_PATH."""
    return Path(os.environ.get(TERMINATION_PATH_ENV) or TERMINATION_MESSAGE_PATH)


def write_termination_message(result: Result, path: Path | None = None) -> Path | None:
    """Write ``result`` where the kubelet reads it; returns where, or None when the file
    cannot be written (logged with the result: outside a pod there may be no such file)."""
    target = path or termination_path()
    text = result.to_termination_message()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    except OSError as exc:
        _log.warning("cannot write the result to %s: %s; result: %s", target, exc, text)
        return None
    return target
