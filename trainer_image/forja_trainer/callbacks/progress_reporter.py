"""Report progress (epoch, metrics, ETA, checkpoint, batch size) after every epoch."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from forja_api.contract import Progress
from forja_trainer.callbacks.base import Callback
from forja_trainer.progress import ProgressReporter

if TYPE_CHECKING:
    from forja_trainer.loop import FitLoop

__all__ = ["ProgressCallback"]


class ProgressCallback(Callback):
    order = 200  # after checkpointing, so the report names the new checkpoint

    def __init__(self, reporter: ProgressReporter) -> None:
        self.reporter = reporter
        self._started = 0.0
        self._epochs_this_run = 0

    def on_fit_start(self, loop: FitLoop) -> None:
        self._started = time.monotonic()
        self._epochs_this_run = 0
        self.reporter.report(self._progress(loop, {}))

    def on_train_batch_end(self, loop: FitLoop, loss: float) -> None:
        self.reporter.step(
            loop.state.epoch, loop.total_epochs, loop.state.samples_seen, loop.train_size, loss
        )

    def on_train_epoch_end(self, loop: FitLoop, metrics: dict[str, float]) -> None:
        self._epochs_this_run += 1
        self.reporter.report(self._progress(loop, metrics))

    def _progress(self, loop: FitLoop, metrics: dict[str, float]) -> Progress:
        eta = None
        if self._epochs_this_run:
            per_epoch = (time.monotonic() - self._started) / self._epochs_this_run
            eta = round(per_epoch * max(loop.total_epochs - loop.state.epoch, 0), 1)
        return Progress(
            epoch=loop.state.epoch,
            total_epochs=loop.total_epochs,
            metrics=dict(metrics),
            eta_seconds=eta,
            checkpoint=loop.last_checkpoint,
            batch_size=loop.state.batch_size,
        )
