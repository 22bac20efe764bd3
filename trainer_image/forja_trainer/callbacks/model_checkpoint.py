"""Rotating checkpoints plus ``last`` and ``best``, written locally then uploaded.

Under the checkpoint prefix (``FORJA_CHECKPOINT_URI``)::

    last.pt           the newest state; every attempt resumes from it
    best.pt           the state with the best monitored metric so far
    epoch-0003.pt     every ``interval_epochs``; only the newest ``keep`` are kept

Each file is written to a temporary name and renamed, then uploaded; a reader never
sees half a checkpoint. The sha256 of ``last`` is reported with the progress.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

import forja_storage as storage
from forja_api.contract import BEST_CHECKPOINT, LAST_CHECKPOINT, CheckpointRef
from forja_storage.checkpoints import write_pointer
from forja_trainer.callbacks.base import Callback
from forja_trainer.context import STORAGE_ERRORS, is_transient
from forja_trainer.errors import InvalidConfig
from forja_trainer.retry import with_retries

if TYPE_CHECKING:
    from forja_trainer.loop import FitLoop

__all__ = ["ModelCheckpoint", "epoch_checkpoint_name", "load_checkpoint"]

log = logging.getLogger(__name__)


def epoch_checkpoint_name(epoch: int) -> str:
    return f"epoch-{epoch:04d}.pt"


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Only plain tensors and Python values: never unpickle arbitrary objects."""
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or "model_state_dict" not in payload:
        raise ValueError(f"{path} is not a forja checkpoint (no model_state_dict)")
    return payload


class ModelCheckpoint(Callback):
    order = 100

    def __init__(
        self,
        local_dir: Path,
        uri: str,
        *,
        monitor: str,
        mode: str = "min",
        interval_epochs: int = 1,
        keep: int = 3,
        upload_attempts: int = 3,
    ) -> None:
        self.local_dir = Path(local_dir)
        self.uri = uri
        self.monitor = monitor
        self.mode = mode
        self.interval_epochs = interval_epochs
        self.keep = keep
        self.upload_attempts = upload_attempts
        self.best_score: float | None = None
        self.best_epoch: int | None = None
        self.kept: list[int] = []
        self.last_ref: CheckpointRef | None = None

    # --- decisions ------------------------------------------------------------------

    def _is_better(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        if self.best_score is None:
            return True
        return value < self.best_score if self.mode == "min" else value > self.best_score

    # --- hooks ----------------------------------------------------------------------

    def on_train_epoch_end(self, loop: FitLoop, metrics: dict[str, float]) -> None:
        if self.monitor not in metrics:
            raise InvalidConfig(
                f"metric {self.monitor!r} is not produced by this trainer; "
                f"choose one of {sorted(metrics)}",
                field="spec.hyperparameters.monitor",
            )
        epoch = loop.state.epoch
        is_best = self._is_better(metrics[self.monitor])
        if is_best:
            self.best_score = metrics[self.monitor]
            self.best_epoch = epoch
        periodic = epoch % self.interval_epochs == 0
        final = epoch >= loop.total_epochs or loop.should_stop
        if not (periodic or final or is_best):
            return
        if periodic:
            self.kept.append(epoch)
        stale = self.kept[: -self.keep] if len(self.kept) > self.keep else []
        self.kept = self.kept[-self.keep :]
        path = self._write(loop)  # captures the state above, so resume knows the best
        names = [LAST_CHECKPOINT]
        if periodic:
            names.append(epoch_checkpoint_name(epoch))
        if is_best:
            names.append(BEST_CHECKPOINT)
            shutil.copyfile(path, self.local_dir / BEST_CHECKPOINT)
        for name in names:
            self._upload(path, name)
        self._point()
        for old in stale:
            self._delete(epoch_checkpoint_name(old))

    def on_interrupt(self, loop: FitLoop) -> None:
        path = self._write(loop)
        self._upload(path, LAST_CHECKPOINT)
        self._point()

    # --- io -------------------------------------------------------------------------

    def _write(self, loop: FitLoop) -> Path:
        self.local_dir.mkdir(parents=True, exist_ok=True)
        target = self.local_dir / LAST_CHECKPOINT
        tmp = target.with_suffix(".tmp")
        torch.save(loop.checkpoint_payload(), tmp)
        os.replace(tmp, target)
        sha = storage.sha256_file(target)
        self.last_ref = CheckpointRef(
            uri=storage.join(self.uri, LAST_CHECKPOINT), epoch=loop.state.epoch, sha256=sha
        )
        loop.last_checkpoint = self.last_ref
        return target

    def _upload(self, path: Path, name: str) -> None:
        uri = storage.join(self.uri, name)
        if storage.local_path(uri) == path.resolve():
            return  # the local dir is the store (local runs)
        with_retries(
            lambda: storage.upload(path, uri),
            what=f"uploading checkpoint {uri}",
            errors=STORAGE_ERRORS,
            retry_if=is_transient,
            attempts=self.upload_attempts,
        )

    def _point(self) -> None:
        """Name the uploaded ``last`` and its digest in the pointer the next attempt checks."""
        ref = self.last_ref
        if ref is None:
            return
        with_retries(
            lambda: write_pointer(self.uri, ref),
            what="writing the checkpoint pointer",
            errors=STORAGE_ERRORS,
            retry_if=is_transient,
            attempts=self.upload_attempts,
        )

    def _delete(self, name: str) -> None:
        try:
            storage.delete(storage.join(self.uri, name))
        except storage.StorageError as exc:  # an extra old file costs space, not correctness
            log.warning("could not delete old checkpoint %s: %s", name, exc)

    def best_state_dict(self) -> dict[str, torch.Tensor] | None:
        """The model weights of ``best`` (local copy, else from the store), or None."""
        local = self.local_dir / BEST_CHECKPOINT
        if not local.is_file():
            uri = storage.join(self.uri, BEST_CHECKPOINT)
            try:
                storage.download(uri, local)
            except storage.ObjectNotFound:
                return None
        state: dict[str, torch.Tensor] = load_checkpoint(local)["model_state_dict"]
        return state

    def state_dict(self) -> dict[str, Any]:
        return {
            "best_score": self.best_score,
            "best_epoch": self.best_epoch,
            "kept": list(self.kept),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best_score = state.get("best_score")
        self.best_epoch = state.get("best_epoch")
        self.kept = [int(e) for e in state.get("kept", [])]
