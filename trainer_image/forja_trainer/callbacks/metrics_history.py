"""Per-epoch metrics as ``history.json`` and a training-curve PNG.

The history is part of the checkpoint, so a resumed run's history is complete.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from forja_trainer.callbacks.base import Callback

if TYPE_CHECKING:
    from forja_trainer.loop import FitLoop

__all__ = ["MetricsHistory", "plot_curves"]

HISTORY_NAME = "history.json"
CURVE_NAME = "training_curve.png"


def plot_curves(history: list[dict[str, Any]], target: Path, title: str = "") -> None:
    """Losses on the left, the other validation metrics on the right."""
    import matplotlib  # noqa: PLC0415 - heavy; only at the end of training

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    epochs = [int(row["epoch"]) for row in history]
    keys = sorted({k for row in history for k, v in row.items() if isinstance(v, int | float)})
    losses = [k for k in keys if k.endswith("loss")]
    others = [k for k in keys if k.startswith("val_") and not k.endswith("loss")]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for key in losses:
        left.plot(epochs, [row.get(key, float("nan")) for row in history], marker="o", label=key)
    left.set_xlabel("epoch")
    left.set_title("loss")
    left.legend()
    for key in others:
        right.plot(epochs, [row.get(key, float("nan")) for row in history], marker="o", label=key)
    right.set_xlabel("epoch")
    right.set_title("validation")
    if others:
        right.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(target, dpi=80)
    plt.close(fig)


class MetricsHistory(Callback):
    order = 10

    def __init__(self, directory: Path, title: str = "") -> None:
        self.directory = Path(directory)
        self.title = title
        self.history: list[dict[str, Any]] = []
        self.stop_reason = "completed"
        self._epoch_started = 0.0

    @property
    def history_path(self) -> Path:
        return self.directory / HISTORY_NAME

    @property
    def curve_path(self) -> Path:
        return self.directory / CURVE_NAME

    def on_train_epoch_start(self, loop: FitLoop) -> None:
        self._epoch_started = time.monotonic()

    def on_train_epoch_end(self, loop: FitLoop, metrics: dict[str, float]) -> None:
        row: dict[str, Any] = {"epoch": loop.state.epoch, **metrics}
        row["batch_size"] = loop.state.batch_size
        row["seconds"] = round(time.monotonic() - self._epoch_started, 3)
        self.history.append(row)
        self._write()

    def on_fit_end(self, loop: FitLoop) -> None:
        self.stop_reason = loop.stop_reason
        self._write()
        if self.history:
            plot_curves(self.history, self.curve_path, self.title)

    def _write(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        doc = {"epochs": self.history, "stop_reason": self.stop_reason}
        self.history_path.write_text(json.dumps(doc, indent=2), encoding="utf-8")

    def state_dict(self) -> dict[str, Any]:
        return {"history": [dict(row) for row in self.history]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.history = [dict(row) for row in state.get("history", [])]
