"""Stop when the monitored metric stops improving or turns non-finite.

Like Lightning's, it only sets ``loop.should_stop`` and records why, as an enum the
history and the Result carry.
"""

from __future__ import annotations

import math
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from forja_trainer.callbacks.base import Callback

if TYPE_CHECKING:
    from forja_trainer.loop import FitLoop

__all__ = ["EarlyStopping", "StopReason"]


class StopReason(StrEnum):
    NOT_STOPPED = "not-stopped"
    PATIENCE_EXHAUSTED = "patience-exhausted"
    NON_FINITE_METRIC = "non-finite-metric"


class EarlyStopping(Callback):
    order = 50

    def __init__(
        self,
        monitor: str,
        mode: str = "min",
        patience: int | None = None,
        min_delta: float = 0.0,
        check_finite: bool = True,
    ) -> None:
        self.monitor = monitor
        self.mode = mode
        self.patience = patience
        self.min_delta = min_delta
        self.check_finite = check_finite
        self.best: float | None = None
        self.wait = 0
        self.stopped_epoch: int | None = None
        self.reason = StopReason.NOT_STOPPED

    def _improved(self, value: float) -> bool:
        if self.best is None:
            return True
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def on_train_epoch_end(self, loop: FitLoop, metrics: dict[str, float]) -> None:
        value = metrics.get(self.monitor)
        if value is None:
            return
        if self.check_finite and not math.isfinite(value):
            self._stop(loop, StopReason.NON_FINITE_METRIC)
            return
        if self._improved(value):
            self.best = value
            self.wait = 0
            return
        self.wait += 1
        if self.patience is not None and self.wait >= self.patience:
            self._stop(loop, StopReason.PATIENCE_EXHAUSTED)

    def _stop(self, loop: FitLoop, reason: StopReason) -> None:
        self.reason = reason
        self.stopped_epoch = loop.state.epoch
        loop.request_stop(f"early-stopping:{reason.value}")

    def state_dict(self) -> dict[str, Any]:
        return {
            "best": self.best,
            "wait": self.wait,
            "stopped_epoch": self.stopped_epoch,
            "reason": self.reason.value,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best = state.get("best")
        self.wait = int(state.get("wait", 0))
        self.stopped_epoch = state.get("stopped_epoch")
        self.reason = StopReason(state.get("reason", StopReason.NOT_STOPPED.value))
