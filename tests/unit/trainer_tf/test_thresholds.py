"""Per-class threshold search and multi-label metrics."""

from __future__ import annotations

import numpy as np

from forja_trainer_tf.thresholds import multilabel_metrics, search_thresholds, threshold_grid


def test_grid_is_the_teams() -> None:
    grid = threshold_grid(0.05, 0.95, 0.01)
    assert len(grid) == 91
    assert grid[0] == 0.05 and grid[-1] == 0.95 and grid[40] == 0.45


def test_metrics_by_hand() -> None:
    y = np.array([[1, 0], [1, 1], [0, 0], [0, 1]], dtype=np.float32)
    p = np.array([[0.9, 0.1], [0.2, 0.8], [0.7, 0.1], [0.1, 0.9]], dtype=np.float32)
    m = multilabel_metrics(y, p, 0.5)
    # class 0: tp1 fp1 fn1 -> F1 0.5; class 1: tp2 -> F1 1.0
    assert m["f1_macro"] == 0.75
    assert abs(m["f1_micro"] - 2 * 3 / (2 * 3 + 1 + 1)) < 1e-9
    assert m["precision_micro"] == 0.75 and m["recall_micro"] == 0.75


def test_per_class_threshold_kept_only_when_clearly_better() -> None:
    rng = np.random.default_rng(0)
    y = (rng.random((400, 2)) < 0.5).astype(np.float32)
    # class 0 is calibrated around 0.5; class 1's positives sit at 0.3 (needs a low threshold)
    p0 = np.where(y[:, 0] > 0, 0.7, 0.3) + rng.normal(0, 0.05, 400)
    p1 = np.where(y[:, 1] > 0, 0.3, 0.1) + rng.normal(0, 0.03, 400)
    scores = np.stack([p0, p1], axis=1)
    res = search_thresholds(y, scores, threshold_grid(0.05, 0.95, 0.01), 0.005)
    # No one threshold suits both: the global one fits one class, the other keeps its own.
    assert sorted(res.kept_per_class) == [False, True]
    kept = res.kept_per_class.index(True)
    assert res.thresholds[1 - kept] == res.global_threshold
    assert res.thresholds[kept] == res.own_thresholds[kept] != res.global_threshold
    assert (0.12 < res.thresholds[1] < 0.28) and (0.35 < res.thresholds[0] < 0.65)
    assert res.val_f1_macro > res.val_f1_macro_global
    assert res.val_f1_macro > 0.98


def test_small_gain_is_not_kept() -> None:
    y = np.array([[1], [0], [1], [0]], dtype=np.float32)
    p = np.array([[0.8], [0.2], [0.7], [0.3]], dtype=np.float32)
    res = search_thresholds(y, p, threshold_grid(0.05, 0.95, 0.01), 0.005)
    assert res.kept_per_class == [False]
    assert res.val_f1_macro == 1.0
    rec = res.recommendation(["a"], "macro_f1")
    assert rec["classes"]["a"]["per_class_kept"] is False
