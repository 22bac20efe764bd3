"""This process's place in a multi-worker attempt, and torch.distributed's own setup.

A TrainingJob with ``spec.workers: N`` runs N pods; the operator gives each the env
torchrun would (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR``,
``MASTER_PORT``: forja_api.contract). :meth:`WorldInfo.from_env` reads them once and
:func:`init_process_group` hands them to torch's env:// rendezvous: rank 0 hosts the
TCPStore, gloo (CPU) or NCCL (GPU) carries the gradients. No communication of ours.

What the ranks agree on without talking: the model starts from the same seed (and
DistributedDataParallel broadcasts rank 0's weights anyway), every rank evaluates
the same validation set with the same weights, so early stopping and the best epoch
come out the same everywhere. Rank 0 alone writes checkpoints, progress and the
artifact (:attr:`WorldInfo.is_primary`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from forja_api.contract import (
    LOCAL_RANK_ENV,
    MASTER_ADDR_ENV,
    MASTER_PORT_ENV,
    RANK_ENV,
    WORLD_SIZE_ENV,
)
from forja_trainer.errors import InvalidConfig

__all__ = [
    "RENDEZVOUS_TIMEOUT_ENV",
    "WorldInfo",
    "all_sum",
    "destroy_process_group",
    "init_process_group",
]

log = logging.getLogger(__name__)

RENDEZVOUS_TIMEOUT_ENV = "FORJA_RENDEZVOUS_TIMEOUT_SECONDS"
DEFAULT_TIMEOUT_SECONDS = 600
"""How long a rank waits for the others (rendezvous and each collective): a peer that
never comes ends the attempt, and the operator starts the next."""


def _int_env(env: Mapping[str, str], name: str, default: int, lo: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidConfig(f"{name}={raw!r} is not an integer", field=name) from None
    if value < lo:
        raise InvalidConfig(f"{name}={value} must be at least {lo}", field=name)
    return value


@dataclass(frozen=True)
class WorldInfo:
    """The attempt's world as this process sees it; a single process is a world of one."""

    world_size: int = 1
    rank: int = 0
    local_rank: int = 0
    timeout_seconds: int = DEFAULT_TIMEOUT_SECONDS

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_primary(self) -> bool:
        """Rank 0: the one that writes checkpoints, progress and the artifact."""
        return self.rank == 0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> WorldInfo:
        env = os.environ if env is None else env
        world = _int_env(env, WORLD_SIZE_ENV, 1, 1)
        rank = _int_env(env, RANK_ENV, 0, 0)
        if rank >= world:
            raise InvalidConfig(
                f"{RANK_ENV}={rank} is outside a world of {world}", field=RANK_ENV
            )
        if world > 1:
            for name in (MASTER_ADDR_ENV, MASTER_PORT_ENV):
                if not env.get(name):
                    raise InvalidConfig(
                        f"{name} is required when {WORLD_SIZE_ENV}={world}", field=name
                    )
        return cls(
            world_size=world,
            rank=rank,
            local_rank=_int_env(env, LOCAL_RANK_ENV, 0, 0),
            timeout_seconds=_int_env(env, RENDEZVOUS_TIMEOUT_ENV, DEFAULT_TIMEOUT_SECONDS, 1),
        )


def init_process_group(world: WorldInfo, device: torch.device) -> None:
    """torch.distributed's env:// rendezvous: gloo on the CPU, NCCL on a GPU."""
    if not world.distributed or dist.is_initialized():
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    log.info(
        "joining a world of %d as rank %d (%s, store %s:%s)",
        world.world_size,
        world.rank,
        backend,
        os.environ.get(MASTER_ADDR_ENV),
        os.environ.get(MASTER_PORT_ENV),
    )
    dist.init_process_group(
        backend=backend,
        init_method="env://",
        world_size=world.world_size,
        rank=world.rank,
        timeout=timedelta(seconds=world.timeout_seconds),
    )


def destroy_process_group() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def all_sum(values: list[float], device: torch.device) -> list[float]:
    """The sums of ``values`` over every rank (the values themselves in a world of one)."""
    if not (dist.is_available() and dist.is_initialized()):
        return list(values)
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return [float(v) for v in tensor.tolist()]
