"""The TF trainer's exceptions, each mapped to one exit code of the pod contract.

    TrainerError                 (catchable base; exit EXIT_RETRYABLE)
    +-- ConfigError              invalid hyperparameter; names the field (exit 2)
    +-- DatasetError             missing file, unknown label, class mismatch (exit 3)
    +-- GPUUnavailableError      GPUs requested, none visible (exit 4)
    +-- PretrainedError          pretrained weights unusable or digest mismatch (exit 5)
    +-- TerminatedError          SIGTERM received; checkpoint written (exit 143)
"""

from __future__ import annotations

from forja_api.contract import ExitCode

__all__ = [
    "ConfigError",
    "DatasetError",
    "GPUUnavailableError",
    "PretrainedError",
    "TerminatedError",
    "TrainerError",
]


class TrainerError(Exception):
    """Base of every error the TF trainer raises on purpose."""

    exit_code: ExitCode = ExitCode.RETRYABLE
    reason: str = "Error"


class ConfigError(TrainerError):
    exit_code = ExitCode.INVALID_CONFIG
    reason = "InvalidConfig"


class DatasetError(TrainerError):
    exit_code = ExitCode.INVALID_DATASET
    reason = "InvalidDataset"


class GPUUnavailableError(TrainerError):
    exit_code = ExitCode.GPU_UNAVAILABLE
    reason = "GPUUnavailable"


class PretrainedError(TrainerError):
    exit_code = ExitCode.INCOMPATIBLE_PRETRAINED
    reason = "IncompatiblePretrained"


class TerminatedError(TrainerError):
    exit_code = ExitCode.TERMINATED
    reason = "Terminated"
