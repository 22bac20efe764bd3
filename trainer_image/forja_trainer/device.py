"""Where to train: the GPU the job asked for, or the CPU when it asked for none.

A job that requested GPUs never falls back to the CPU silently (it would run for
hours at a fraction of the speed and look healthy): it fails fast with
:class:`GpuUnavailable`, a permanent exit the operator reports as GPUUnavailable.
"""

from __future__ import annotations

import math
import os

import torch

from forja_trainer.errors import GpuUnavailable

__all__ = ["THREADS_ENV", "configure_threads", "cpu_quantity", "select_device"]

THREADS_ENV = "FORJA_TORCH_THREADS"


def select_device(gpus_requested: int, local_rank: int = 0) -> torch.device:
    """The CPU, or GPU ``local_rank`` (one process per GPU, as torchrun starts them)."""
    if gpus_requested <= 0:
        return torch.device("cpu")
    visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if visible == 0:
        cvd = os.environ.get("CUDA_VISIBLE_DEVICES")
        hint = f" (CUDA_VISIBLE_DEVICES={cvd!r})" if cvd is not None else ""
        raise GpuUnavailable(
            f"{gpus_requested} GPU(s) requested but torch sees none{hint}; "
            "refusing to fall back to the CPU",
            field="spec.resources.gpus",
        )
    if visible < gpus_requested:
        raise GpuUnavailable(
            f"{gpus_requested} GPU(s) requested but only {visible} visible",
            field="spec.resources.gpus",
        )
    if local_rank >= visible:
        raise GpuUnavailable(
            f"LOCAL_RANK {local_rank} needs GPU {local_rank} but only {visible} visible",
            field="spec.resources.gpus",
        )
    return torch.device("cuda", local_rank)


def cpu_quantity(text: str | None) -> float | None:
    """A Kubernetes CPU quantity ("2", "500m", "1.5") in cores."""
    if not text:
        return None
    try:
        return float(text[:-1]) / 1000 if text.endswith("m") else float(text)
    except ValueError:
        return None


def configure_threads(cpu: str | None) -> int:
    """Intra-op threads = the pod's CPU limit (or FORJA_TORCH_THREADS).

    torch defaults to every core of the node; inside a CPU-limited pod (or on a
    shared machine) the extra threads spin against the quota and a step can get
    tens of times slower.
    """
    env = os.environ.get(THREADS_ENV)
    threads: int | None = None
    if env and env.isdigit() and int(env) > 0:
        threads = int(env)
    else:
        cores = cpu_quantity(cpu)
        if cores is not None:
            threads = max(1, math.floor(cores))
    if threads is not None:
        torch.set_num_threads(threads)
    return torch.get_num_threads()
