"""The training loop: epochs of batches, validation, and hooks for the callbacks.

The loop owns what must be exact for a resume to reproduce an uninterrupted run:
the epoch's sample order (a permutation seeded by ``(seed, epoch)``, so a resumed
epoch skips exactly the samples already seen), the running train-loss sums, the
RNG states and every callback's state. It also absorbs failures that need not end
the attempt:

* ``torch.cuda.OutOfMemoryError``: the failed batch and the rest of the epoch are
  retried with half the batch size (bounded by ``max_oom_retries`` and
  ``min_batch_size``; then :class:`OutOfMemory`, exit 75, and the operator's
  HalveBatch takes over);
* the trainer's declared ``recoverable_errors``: retried from the current position
  after a backoff, at most ``max_recoverable_retries`` times, then a checkpoint and
  :class:`RetryableError`;
* a stop signal (SIGTERM/SIGINT): checkpoint at the next batch boundary, then
  :class:`Terminated`.

In a multi-worker attempt (``ctx.world``) the model trains wrapped in
DistributedDataParallel and each rank reads its share of the epoch
(:class:`ShardSampler`, torch's DistributedSampler); rank 0's BatchNorm statistics
are broadcast before validation and the stop decision is agreed by all ranks, so no
rank waits in a collective the others left. An OOM or a recoverable error is not
retried in-process there (one rank halving its batch alone would desynchronise the
gang): the attempt ends and the operator restarts every worker.

Everything else is a callback.
"""

from __future__ import annotations

import gc
import itertools
import logging
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim import Optimizer
from torch.optim.lr_scheduler import CosineAnnealingLR, LRScheduler
from torch.utils.data import Dataset, DistributedSampler, Sampler

from forja_api.contract import CheckpointRef
from forja_trainer.callbacks.base import Callback
from forja_trainer.distributed import all_sum
from forja_trainer.errors import OutOfMemory, RetryableError, Terminated
from forja_trainer.seeding import capture_rng_state, restore_rng_state

if TYPE_CHECKING:
    from forja_trainer.trainers.base import TorchTrainer

__all__ = ["CHECKPOINT_FORMAT_VERSION", "EpochSampler", "FitLoop", "LoopState", "ShardSampler"]

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT_VERSION = 1


class EpochSampler(Sampler[int]):
    """A permutation fixed by ``(seed, epoch)``, starting ``start`` samples in.

    With ``groups`` (a group id per sample, e.g. the raster block a patch lies in) the
    permutation visits the groups in a random order and each group's samples in a
    random order, one group after another: every sample once per epoch, as before,
    but reads that share a group come together, so a small cache of what the last
    reads decoded serves the next ones (torchgeo's ``RandomBatchGeoSampler`` draws a
    batch from one tile for the same reason).
    """

    def __init__(
        self,
        size: int,
        seed: int,
        epoch: int,
        *,
        start: int = 0,
        shuffle: bool = True,
        groups: np.ndarray | None = None,
    ):
        if groups is not None and groups.shape != (size,):
            raise ValueError(f"groups has shape {tuple(groups.shape)}, expected ({size},)")
        self.size = size
        self.seed = seed
        self.epoch = epoch
        self.start = start
        self.shuffle = shuffle
        self.groups = groups

    def order(self) -> list[int]:
        if not self.shuffle:
            return list(range(self.size))
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        perm = torch.randperm(self.size, generator=gen)
        if self.groups is None:
            return perm.tolist()
        # A random rank per group; a stable sort by rank keeps the random order within.
        # In numpy: torch's unique and sort would page in 8 MiB of kernels for this alone.
        ids, dense = np.unique(self.groups, return_inverse=True)
        rank = torch.randperm(len(ids), generator=gen).numpy()
        order = perm.numpy()
        grouped: list[int] = order[np.argsort(rank[dense[order]], kind="stable")].tolist()
        return grouped

    def __iter__(self) -> Iterator[int]:
        return iter(self.order()[self.start :])

    def __len__(self) -> int:
        return max(self.size - self.start, 0)


class ShardSampler(Sampler[int]):
    """This rank's share of an epoch, starting ``start`` samples into the share.

    torch's DistributedSampler seeded by ``seed`` and set to ``epoch``: every rank
    draws the same permutation and takes every ``world``-th index of it (padded so the
    shares are equal, hence the ranks step in lock-step and share ``samples_seen``).
    With ``groups`` the permutation is :class:`EpochSampler`'s grouped one, sharded
    the same way: each rank still reads a group's samples one after another (GeoTIFF
    patches of one raster block), only every ``world``-th of them.
    """

    def __init__(
        self,
        dataset: Dataset[Any],
        seed: int,
        epoch: int,
        *,
        rank: int,
        world: int,
        start: int = 0,
        groups: np.ndarray | None = None,
    ) -> None:
        self.inner: DistributedSampler[Any] = DistributedSampler(
            dataset, num_replicas=world, rank=rank, shuffle=True, seed=seed, drop_last=False
        )
        self.inner.set_epoch(epoch)
        self.start = start
        self.grouped: EpochSampler | None = None
        if groups is not None:
            self.grouped = EpochSampler(len(groups), seed, epoch, groups=groups)
        self.rank, self.world = rank, world

    def _share(self) -> Iterator[int]:
        if self.grouped is None:
            return iter(self.inner)
        order = self.grouped.order()
        total = len(self.inner) * self.world
        order += order[: total - len(order)]  # padded as DistributedSampler pads
        return iter(order[self.rank : total : self.world])

    def __iter__(self) -> Iterator[int]:
        return itertools.islice(self._share(), self.start, None)

    def __len__(self) -> int:
        return max(len(self.inner) - self.start, 0)


@dataclass
class LoopState:
    epoch: int = 0
    """Completed epochs."""
    samples_seen: int = 0
    """Samples of the current epoch already trained on (non-zero only mid-epoch)."""
    loss_sum: float = 0.0
    global_step: int = 0
    batch_size: int = 32
    oom_retries: int = 0
    recoverable_retries: int = 0
    last_metrics: dict[str, float] = field(default_factory=dict)


class FitLoop:
    def __init__(
        self,
        trainer: TorchTrainer[Any],
        model: nn.Module,
        optimizer: Optimizer,
        scheduler: LRScheduler,
        callbacks: list[Callback],
    ) -> None:
        self.trainer = trainer
        self.ctx = trainer.ctx
        self.hp = trainer.ctx.hp
        self.world = trainer.ctx.world
        self.model = model
        """The plain module: checkpoints, evaluation and export use it."""
        self.train_model: nn.Module = model
        """What the training step calls: the module, or its DistributedDataParallel wrapper."""
        if self.world.distributed:
            device = trainer.ctx.device
            self.train_model = DistributedDataParallel(
                model, device_ids=[device.index] if device.type == "cuda" else None
            )
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.callbacks = sorted(callbacks, key=lambda cb: cb.order)
        self.state = LoopState(batch_size=self.hp.batch_size)
        self.total_epochs = self.hp.epochs
        self.should_stop = False
        self.stop_reason = "completed"
        self.last_checkpoint: CheckpointRef | None = None
        self.dataset_size = len(trainer.train_dataset())  # type: ignore[arg-type]
        self.train_size = self.dataset_size
        """Samples this rank trains on per epoch (its share in a multi-worker attempt)."""
        if self.world.distributed:
            self.train_size = -(-self.dataset_size // self.world.world_size)  # as the sampler pads
        self.sample_groups = trainer.sample_groups()

    # --- control --------------------------------------------------------------------

    def request_stop(self, reason: str) -> None:
        self.should_stop = True
        self.stop_reason = reason

    # --- checkpoint state -----------------------------------------------------------

    def checkpoint_payload(self) -> dict[str, Any]:
        """Everything a resume needs, as tensors and plain values (weights_only-loadable)."""
        return {
            "format_version": CHECKPOINT_FORMAT_VERSION,
            "trainer": str(self.ctx.config.trainer),
            "model_state_dict": self.model.state_dict(),
            "optimizer_state_dict": self.optimizer.state_dict(),
            "scheduler_state_dict": self.scheduler.state_dict(),
            "epoch": self.state.epoch,
            "loop": asdict(self.state),
            "metrics": dict(self.state.last_metrics),
            "config": self.ctx.config.hyperparameters.model_dump(mode="json"),
            "arch_config": self.trainer.arch_config(),
            "callbacks": {cb.state_key: cb.state_dict() for cb in self.callbacks},
            "rng": capture_rng_state(),
            "date": datetime.now(UTC).isoformat(),
            "job": {"name": self.ctx.config.name, "attempt": self.ctx.config.attempt},
        }

    def restore(self, payload: dict[str, Any]) -> None:
        self.model.load_state_dict(payload["model_state_dict"])
        self.optimizer.load_state_dict(payload["optimizer_state_dict"])
        self.scheduler.load_state_dict(payload["scheduler_state_dict"])
        if isinstance(self.scheduler, CosineAnnealingLR):
            # a resumed job may have been given more (or fewer) epochs
            self.scheduler.T_max = self.hp.epochs
        saved = LoopState(**payload["loop"])
        if "batch_size" not in self.ctx.config.overrides:
            # an in-process OOM halving carries over unless the operator says otherwise
            saved.batch_size = min(saved.batch_size, self.hp.batch_size)
        else:
            saved.batch_size = self.hp.batch_size
        saved.oom_retries = 0
        saved.recoverable_retries = 0
        self.state = saved
        states = payload.get("callbacks", {})
        for cb in self.callbacks:
            if cb.state_key in states:
                cb.load_state_dict(states[cb.state_key])
        restore_rng_state(payload["rng"])
        log.info(
            "resumed at epoch %d (+%d samples), batch size %d",
            saved.epoch,
            saved.samples_seen,
            saved.batch_size,
        )

    # --- the loop -------------------------------------------------------------------

    def run(self) -> None:
        for cb in self.callbacks:
            cb.on_fit_start(self)
        while self.state.epoch < self.total_epochs and not self.should_stop:
            self._check_stop_signal()
            for cb in self.callbacks:
                cb.on_train_epoch_start(self)
            train_metrics = self._train_epoch()
            val_metrics = self._validate()
            lr = float(self.optimizer.param_groups[-1]["lr"])
            self.scheduler.step()
            self.state.epoch += 1
            self.state.samples_seen = 0
            self.state.loss_sum = 0.0
            metrics = {**train_metrics, **val_metrics, "lr": lr}
            self.state.last_metrics = metrics
            for cb in self.callbacks:
                cb.on_train_epoch_end(self, metrics)
            self._agree_on_stop()
        for cb in self.callbacks:
            cb.on_fit_end(self)

    def _agree_on_stop(self) -> None:
        """Every rank stops after the same epoch: if one wants to, all do."""
        if not self.world.distributed:
            return
        wanted = all_sum([1.0 if self.should_stop else 0.0], self.ctx.device)[0]
        if wanted > 0 and not self.should_stop:
            self.request_stop("stopped-by-another-rank")

    def _sampler(self, epoch: int, start: int) -> Sampler[int]:
        if self.world.distributed:
            return ShardSampler(
                self.trainer.train_dataset(),
                self.hp.seed,
                epoch,
                rank=self.world.rank,
                world=self.world.world_size,
                start=start,
                groups=self.sample_groups,
            )
        return EpochSampler(
            self.dataset_size, self.hp.seed, epoch, start=start, groups=self.sample_groups
        )

    def _check_stop_signal(self) -> None:
        """Stop at this batch boundary if a signal came; across ranks, if one came to any.

        Every rank passes the same boundaries, but their SIGTERMs do not arrive at the
        same step: a rank that stopped alone would leave the others blocked in the next
        step's all-reduce until gloo fails them, and the attempt would end as an Error
        without the checkpoint. One scalar all-reduce a step is small beside DDP's own.
        """
        requested = self.ctx.stop.requested
        if self.world.distributed:
            requested = all_sum([1.0 if requested else 0.0], self.ctx.device)[0] > 0
        if requested:
            self._interrupt()
            raise Terminated(signum=self.ctx.stop.signum or 15)

    def _interrupt(self) -> None:
        for cb in self.callbacks:
            cb.on_interrupt(self)

    def _train_epoch(self) -> dict[str, float]:
        self.model.train()
        while True:
            try:
                self._run_batches()
                break
            except torch.cuda.OutOfMemoryError as exc:
                self._handle_oom(exc)
            except self.trainer.recoverable_errors as exc:
                self._handle_recoverable(exc)
        loss_sum, seen = all_sum([self.state.loss_sum, float(self.train_size)], self.ctx.device)
        return {"train_loss": loss_sum / max(seen, 1.0)}

    def _run_batches(self) -> None:
        trainer = self.trainer
        sampler = self._sampler(self.state.epoch, self.state.samples_seen)
        loader = trainer.train_loader(sampler, self.state.batch_size)
        for raw in loader:
            batch = trainer.transfer(raw, self.ctx.device)
            self.optimizer.zero_grad(set_to_none=True)
            loss = trainer.training_step(self.train_model, batch)
            loss.backward()  # type: ignore[no-untyped-call]
            for cb in self.callbacks:
                cb.on_before_optimizer_step(self, self.optimizer)
            self.optimizer.step()
            n = trainer.batch_length(batch)
            value = float(loss.detach())
            self.state.samples_seen += n
            self.state.loss_sum += value * n
            self.state.global_step += 1
            for cb in self.callbacks:
                cb.on_train_batch_end(self, value)
            # Checked after a step and before the next fetch: fetching consumes the RNG
            # (augmentation), and a resume must find it exactly as the step left it.
            self._check_stop_signal()

    def _handle_oom(self, exc: BaseException) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        floor = self.hp.min_batch_size
        if (
            self.world.distributed
            or self.state.oom_retries >= self.hp.max_oom_retries
            or self.state.batch_size <= floor
        ):
            self._interrupt()
            raise OutOfMemory(
                f"CUDA out of memory at batch size {self.state.batch_size} after "
                f"{self.state.oom_retries} in-process retries: {exc}"
            ) from exc
        self.state.oom_retries += 1
        new = max(floor, self.state.batch_size // 2)
        log.warning(
            "CUDA out of memory at batch size %d; retrying the epoch from sample %d with %d",
            self.state.batch_size,
            self.state.samples_seen,
            new,
        )
        self.state.batch_size = new

    def _handle_recoverable(self, exc: BaseException) -> None:
        if self.world.distributed or (
            self.state.recoverable_retries >= self.hp.max_recoverable_retries
        ):
            self._interrupt()
            raise RetryableError(
                f"{type(exc).__name__} persisted after {self.state.recoverable_retries} "
                f"retries: {exc}"
            ) from exc
        self.state.recoverable_retries += 1
        delay = min(30.0, 0.5 * 2 ** (self.state.recoverable_retries - 1))
        log.warning(
            "recoverable %s (%s); retry %d/%d from sample %d in %.1fs",
            type(exc).__name__,
            exc,
            self.state.recoverable_retries,
            self.hp.max_recoverable_retries,
            self.state.samples_seen,
            delay,
        )
        time.sleep(delay)

    def _validate(self) -> dict[str, float]:
        if self.world.distributed:
            # DDP keeps rank 0's buffers only at each forward; after it every rank has
            # updated its BatchNorm statistics with its own batch. Rank 0's win, so
            # every rank validates the same model and reaches the same decisions.
            for buffer in self.model.buffers():
                dist.broadcast(buffer, src=0)
        self.model.eval()
        with torch.no_grad():
            metrics = self.trainer.evaluate(
                self.model, self.trainer.val_loader(self.state.batch_size)
            )
        self.model.train()
        return {k: float(v) for k, v in metrics.items()}
