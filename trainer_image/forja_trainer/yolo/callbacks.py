"""Ultralytics callbacks mapped onto forja's progress, checkpoint and stop hooks.

Ultralytics runs its own loop; forja only listens: after each fitted epoch it
reports the metrics, after each save it hands over ``last.pt``/``best.pt`` to
the checkpoint store (as a tensors-only file, :mod:`forja_trainer.yolo.weights`),
and between batches it turns a stop request (SIGTERM)
into Ultralytics' own ``trainer.stop`` so the run ends at a clean boundary.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from forja_trainer.yolo.weights import save_tensor_checkpoint

__all__ = ["CheckpointHook", "EpochHook", "StopCheck", "attach", "forja_metrics"]

EpochHook = Callable[[int, int, dict[str, float]], None]
CheckpointHook = Callable[[Path, Path | None, int, bool], None]
"""(the tensors-only checkpoint, the same file when best else None, epoch, is best)."""
StopCheck = Callable[[], bool]

_RENAMES = {
    "metrics/precision(B)": "precision",
    "metrics/recall(B)": "recall",
    "metrics/mAP50(B)": "mAP50",
    "metrics/mAP50-95(B)": "mAP50_95",
}


def forja_metrics(raw: dict[str, Any]) -> dict[str, float]:
    """``metrics/mAP50(B)`` -> ``mAP50``, ``val/box_loss`` -> ``val_box_loss``; numbers only."""
    out: dict[str, float] = {}
    for key, value in raw.items():
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue
        out[_RENAMES.get(key, key.replace("/", "_").replace("-", "_"))] = number
    return out


def _epoch_metrics(trainer: Any) -> dict[str, float]:
    metrics = forja_metrics(dict(trainer.metrics or {}))
    if getattr(trainer, "tloss", None) is not None:
        metrics.update(forja_metrics(trainer.label_loss_items(trainer.tloss, prefix="train")))
    if trainer.fitness is not None:
        metrics["fitness"] = float(trainer.fitness)
    return metrics


def attach(
    model: Any,
    *,
    on_epoch: EpochHook | None = None,
    on_checkpoint: CheckpointHook | None = None,
    should_stop: StopCheck | None = None,
) -> None:
    """Register the hooks on an ``ultralytics.YOLO`` model before ``train()``."""
    if on_epoch is not None:
        hook = on_epoch
        counts = {"trained": 0, "reported": 0}

        def train_epoch_end(_trainer: Any) -> None:
            counts["trained"] += 1

        def fit_epoch_end(trainer: Any) -> None:
            # Ultralytics fires on_fit_epoch_end once more after the loop, for its final
            # validation of best.pt (with epoch bumped by one): that is not an epoch.
            if counts["reported"] >= counts["trained"]:
                return
            counts["reported"] += 1
            hook(trainer.epoch + 1, trainer.epochs, _epoch_metrics(trainer))

        model.add_callback("on_train_epoch_end", train_epoch_end)
        model.add_callback("on_fit_epoch_end", fit_epoch_end)
    if on_checkpoint is not None:
        save = on_checkpoint

        def model_save(trainer: Any) -> None:
            # Ultralytics' own last.pt pickles modules; what leaves the pod is tensors.
            tensors = save_tensor_checkpoint(trainer, Path(trainer.last).with_name("forja-last.pt"))
            is_best = trainer.fitness is not None and trainer.best_fitness == trainer.fitness
            save(tensors, tensors if is_best else None, trainer.epoch + 1, bool(is_best))

        model.add_callback("on_model_save", model_save)
    if should_stop is not None:
        check = should_stop

        def batch_end(trainer: Any) -> None:
            if check():
                trainer.stop = True

        # Between batches (a stop mid-epoch ends that epoch early, as Ultralytics' own
        # cancellation does) and after each fitted epoch, before its loop decides to go on.
        model.add_callback("on_train_batch_end", batch_end)
        model.add_callback("on_fit_epoch_end", batch_end)
