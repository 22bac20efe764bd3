"""The trainer's exceptions: the pod contract's, one vocabulary for every forja pod.

The hierarchy, exit codes and reasons are drawn in :mod:`forja_api.contract`;
:class:`~forja_api.contract.PodError` is the catchable base.
Trainers raise the permanent ones from validation with a message naming the field
or file; the runtime turns any of them into a Result and the exit code.
"""

from __future__ import annotations

from forja_api.contract import (
    GpuUnavailable,
    IncompatiblePretrained,
    InvalidConfig,
    InvalidDataset,
    OutOfMemory,
    RetryableError,
    Terminated,
)

__all__ = [
    "GpuUnavailable",
    "IncompatiblePretrained",
    "InvalidConfig",
    "InvalidDataset",
    "OutOfMemory",
    "RetryableError",
    "Terminated",
]
