"""yolo-detector through the runtime: SIGTERM at epoch 2 checkpoints, a new attempt
resumes from the tensors-only checkpoint (forja_trainer.yolo.weights), and the result
beats the untrained baseline.

Margin: val mAP50 must beat the same architecture with random weights (the
trivial baseline, mAP50 0.0 here) by at least 0.15.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from forja_trainer.yolo import offline
from forja_trainer.yolo.synthetic import make_yolo_dataset

MARGIN = 0.15


@pytest.fixture(autouse=True)
def _ultralytics_config(yolo_config_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Ultralytics binds its config dir once per process; every run here shares it.
    monkeypatch.setattr(
        "forja_trainer.trainers.yolo_detector.import_ultralytics",
        _shared_import(yolo_config_dir),
    )


def _shared_import(config: Path) -> Any:
    return lambda _dir: offline.import_ultralytics(config)


@pytest.mark.slow
def test_sigterm_resume_and_beat_untrained_baseline(run_trainer: Any) -> None:
    # From scratch, yolov8n needs ~100 optimiser steps before boxes appear: 12 epochs
    # of 16 steps leave room for the margin.
    uri = "generated://yolo-boxes?train=128&val=16&size=64"
    hp = {"epochs": 12, "imgsz": 64, "batch_size": 8}
    stopped = run_trainer("yolo-detector", uri, "generated", hp, stop_after_epochs=2)
    assert stopped.code == 143, stopped.result
    # The runtime puts only TorchTrainer checkpoints in the Result; the file is in the store.
    assert (stopped.checkpoint_dir / "last.pt").is_file()

    resumed = run_trainer(
        "yolo-detector", uri, "generated", hp, resume_from=stopped.checkpoint_dir.as_uri()
    )
    assert resumed.code == 0, resumed.result
    m = resumed.result.metrics
    assert m["epochs_trained"] == 10  # epochs 3..12 in this attempt
    assert m["mAP50"] >= m["baseline_mAP50"] + MARGIN, m
    manifest = resumed.manifest
    assert manifest.format == "ultralytics" and manifest.task == "detection"
    assert {"weights", "onnx", "labels", "history"} <= set(manifest.files)
    assert manifest.class_names == ["box"]


def test_bad_label_fails_with_the_file_and_line(tmp_path: Path, run_trainer: Any) -> None:
    root = make_yolo_dataset(tmp_path / "ds", train=2, val=2, size=64)
    label = root / "labels" / "train" / "0001.txt"
    label.write_text("0 0.5 0.5 0.2 1.7\n")
    run = run_trainer("yolo-detector", root.as_uri(), "yolo", {"epochs": 1, "imgsz": 64})
    assert run.code == 3 and run.result.reason == "InvalidDataset"
    assert f"{label}:1: h=1.7 is not normalised to 0..1" in (run.result.message or "")


def test_pretrained_weights_with_a_wrong_digest_are_refused(
    tmp_path: Path, run_trainer: Any
) -> None:
    weights = tmp_path / "pretrained.pt"
    weights.write_bytes(b"not the weights you are looking for")
    run = run_trainer(
        "yolo-detector",
        "generated://yolo-boxes?train=2&val=2&size=64",
        "generated",
        {"epochs": 1, "imgsz": 64},
        pretrained={"uri": weights.as_uri(), "sha256": "0" * 64},
    )
    assert run.code == 5 and run.result.reason == "IncompatiblePretrained"
    assert "sha256" in (run.result.message or "")


def test_pretrained_weights_without_a_digest_are_never_unpickled(
    tmp_path: Path, run_trainer: Any
) -> None:
    marker = tmp_path / "ran"
    weights = tmp_path / "pretrained.pt"
    weights.write_bytes(b"\x80\x04cos\nsystem\n(Vtouch " + str(marker).encode() + b"\ntR.")
    run = run_trainer(
        "yolo-detector",
        "generated://yolo-boxes?train=2&val=2&size=64",
        "generated",
        {"epochs": 1, "imgsz": 64},
        pretrained={"uri": weights.as_uri()},
    )
    # Unpinned, the file is still read as tensors only: the pickle is refused unrun.
    assert run.code == 5 and run.result.reason == "IncompatiblePretrained"
    assert "the pretrained weights" in (run.result.message or "")
    assert not marker.exists()
