"""The trainer's exceptions, each carrying the exit code and reason the operator reads.

::

    TrainerError                   base; ``exit_code`` and ``reason`` per the pod contract
    +-- InvalidConfig              exit 2, permanent: a spec field or hyperparameter is wrong
    +-- InvalidDataset             exit 3, permanent: data missing, malformed, class mismatch
    +-- GpuUnavailable             exit 4, permanent: GPUs requested, none visible
    +-- IncompatiblePretrained     exit 5, permanent: pretrained weights unusable
    +-- RetryableError             exit 75: recoverable, in-process retries exhausted
    |   +-- OutOfMemory            CUDA OOM at the smallest batch size allowed
    +-- Terminated                 exit 128+signal: checkpointed on SIGTERM/SIGINT

Trainers raise the permanent ones from validation with a message naming the field
or file; the runtime turns any of them into a Result and the exit code.
"""

from __future__ import annotations

import signal

from forja_api.contract import ExitCode

__all__ = [
    "GpuUnavailable",
    "IncompatiblePretrained",
    "InvalidConfig",
    "InvalidDataset",
    "OutOfMemory",
    "RetryableError",
    "Terminated",
    "TrainerError",
]


class TrainerError(Exception):
    exit_code: int = 1
    reason: str = "Error"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field


class InvalidConfig(TrainerError):  # noqa: N818 - named for the reason it reports
    exit_code = ExitCode.INVALID_CONFIG
    reason = "InvalidConfig"


class InvalidDataset(TrainerError):  # noqa: N818 - named for the reason it reports
    exit_code = ExitCode.INVALID_DATASET
    reason = "InvalidDataset"


class GpuUnavailable(TrainerError):  # noqa: N818 - named for the reason it reports
    exit_code = ExitCode.GPU_UNAVAILABLE
    reason = "GPUUnavailable"


class IncompatiblePretrained(TrainerError):  # noqa: N818 - named for the reason it reports
    exit_code = ExitCode.INCOMPATIBLE_PRETRAINED
    reason = "IncompatiblePretrained"


class RetryableError(TrainerError):
    exit_code = ExitCode.RETRYABLE
    reason = "Retryable"


class OutOfMemory(RetryableError):  # noqa: N818 - named for the reason it reports
    reason = "OutOfMemory"


class Terminated(TrainerError):  # noqa: N818 - named for the reason it reports
    """Raised after the checkpoint on a stop signal; the process exits 128 + signal."""

    reason = "Terminated"

    def __init__(self, signum: int = signal.SIGTERM) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name} after checkpointing")
        self.signum = signum
        self.exit_code = 128 + signum
