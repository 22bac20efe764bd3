"""Steps 6 and 9: multi-label metrics and the per-class threshold search (numpy only).

The search first finds the one global threshold on the grid that maximises macro
F1 on validation; then, per class, the grid threshold that maximises that class's
F1. A class keeps its own threshold only when its F1 gains more than
``min_improvement`` over the global threshold (small gains on a small validation
set are noise and would not transfer to test).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "ThresholdSearchResult",
    "multilabel_metrics",
    "per_class_f1",
    "search_thresholds",
    "threshold_grid",
]

FloatArray = npt.NDArray[np.float32] | npt.NDArray[np.float64]


def threshold_grid(start: float, stop: float, step: float) -> npt.NDArray[np.float64]:
    # Rounded so 0.05 + k * 0.01 prints and compares as the team writes it.
    count = int(np.floor((stop - start) / step + 1e-9)) + 1
    return np.round(start + step * np.arange(count), 6)


def _counts(
    y_true: FloatArray, pred: npt.NDArray[np.bool_]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    truth = y_true > 0.5
    tp = np.sum(truth & pred, axis=0).astype(np.float64)
    fp = np.sum(~truth & pred, axis=0).astype(np.float64)
    fn = np.sum(truth & ~pred, axis=0).astype(np.float64)
    return tp, fp, fn


def per_class_f1(
    y_true: FloatArray, scores: FloatArray, thresholds: FloatArray | float
) -> npt.NDArray[np.float64]:
    tp, fp, fn = _counts(y_true, scores >= np.asarray(thresholds))
    denom = 2 * tp + fp + fn
    # A class absent from truth and never predicted is perfectly handled: F1 1.
    return np.where(denom > 0, 2 * tp / np.maximum(denom, 1e-12), 1.0)


def multilabel_metrics(
    y_true: FloatArray, scores: FloatArray, thresholds: FloatArray | float
) -> dict[str, float]:
    """F1 macro/micro, precision and recall (macro and micro) at the thresholds."""
    tp, fp, fn = _counts(y_true, scores >= np.asarray(thresholds))
    precision_c = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1e-12), 0.0)
    recall_c = np.where(tp + fn > 0, tp / np.maximum(tp + fn, 1e-12), 0.0)
    f1_c = per_class_f1(y_true, scores, thresholds)
    stp, sfp, sfn = tp.sum(), fp.sum(), fn.sum()
    micro_p = stp / (stp + sfp) if stp + sfp > 0 else 0.0
    micro_r = stp / (stp + sfn) if stp + sfn > 0 else 0.0
    micro_f1 = 2 * stp / (2 * stp + sfp + sfn) if stp + sfp + sfn > 0 else 1.0
    return {
        "f1_macro": float(f1_c.mean()),
        "f1_micro": float(micro_f1),
        "precision_macro": float(precision_c.mean()),
        "recall_macro": float(recall_c.mean()),
        "precision_micro": float(micro_p),
        "recall_micro": float(micro_r),
    }


@dataclass(frozen=True)
class ThresholdSearchResult:
    global_threshold: float
    thresholds: list[float]
    """One per class: the class's own threshold where kept, else the global one."""
    kept_per_class: list[bool]
    f1_at_global: list[float]
    f1_at_own: list[float]
    own_thresholds: list[float]
    val_f1_macro_global: float
    val_f1_macro: float

    def recommendation(self, class_names: list[str], objective: str) -> dict[str, Any]:
        """The ``threshold_recommendation.json`` document."""
        return {
            "objective": objective,
            "global_threshold": self.global_threshold,
            "val_f1_macro_at_global": round(self.val_f1_macro_global, 6),
            "val_f1_macro": round(self.val_f1_macro, 6),
            "classes": {
                name: {
                    "threshold": self.thresholds[i],
                    "per_class_kept": self.kept_per_class[i],
                    "best_own_threshold": self.own_thresholds[i],
                    "val_f1_at_global": round(self.f1_at_global[i], 6),
                    "val_f1_at_own": round(self.f1_at_own[i], 6),
                }
                for i, name in enumerate(class_names)
            },
        }


def search_thresholds(
    y_true: FloatArray,
    scores: FloatArray,
    grid: npt.NDArray[np.float64],
    min_improvement: float,
) -> ThresholdSearchResult:
    """Global macro-F1 threshold, then per-class ones kept only when clearly better."""
    # f1[g, c]: F1 of class c at grid threshold g.
    f1 = np.stack([per_class_f1(y_true, scores, t) for t in grid])
    macro = f1.mean(axis=1)
    g_best = int(np.argmax(macro))  # first maximum: the lowest threshold among ties
    global_t = float(grid[g_best])
    own_idx = np.argmax(f1, axis=0)
    own_t = grid[own_idx]
    f1_global = f1[g_best]
    f1_own = f1[own_idx, np.arange(f1.shape[1])]
    kept = (f1_own - f1_global) > min_improvement
    thresholds = np.where(kept, own_t, global_t)
    final = per_class_f1(y_true, scores, thresholds).mean()
    return ThresholdSearchResult(
        global_threshold=global_t,
        thresholds=[float(t) for t in thresholds],
        kept_per_class=[bool(k) for k in kept],
        f1_at_global=[float(v) for v in f1_global],
        f1_at_own=[float(v) for v in f1_own],
        own_thresholds=[float(t) for t in own_t],
        val_f1_macro_global=float(macro[g_best]),
        val_f1_macro=float(final),
    )
