"""unet-segmentation and autoencoder-anomaly, run through the runtime on generated 5-band scenes.

Margins stated: U-Net foreground IoU of the tiled prediction >= 0.4 where the
all-background baseline scores 0; autoencoder recall of anomalous pixels >= 0.7
with precision at least 5x their prevalence (lift 5; random flagging has lift 1).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
import torch

import forja_architectures as architectures
from forja_trainer.geo.synthetic import make_geotiff_dataset
from forja_trainer.trainers.unet_segmentation import segmentation_scores

FAST = {"epochs": 3, "patch": 32, "stride": 16, "batch_size": 16}


def _same_georeferencing(a: Path, b: Path) -> None:
    with rasterio.open(a) as x, rasterio.open(b) as y:
        assert x.crs == y.crs and x.crs is not None
        assert x.transform == y.transform
        assert (x.height, x.width) == (y.height, y.width)


def _rebuild(run: Any) -> torch.nn.Module:
    manifest = run.manifest
    model = architectures.build(manifest.architecture, manifest.arch_config)
    model.load_state_dict(torch.load(run.file("weights"), weights_only=True))
    return model


def test_segmentation_scores() -> None:
    scores = segmentation_scores(np.array([[90, 0], [5, 5]]))
    assert scores["iou"] == pytest.approx(0.5) and scores["dice"] == pytest.approx(2 / 3)
    assert scores["pixel_accuracy"] == pytest.approx(0.95)


@pytest.mark.slow
def test_unet_beats_all_background_and_keeps_georeferencing(
    tmp_path: Path, run_trainer: Any
) -> None:
    root = make_geotiff_dataset(tmp_path / "ds", scenes=2, size=(128, 128))
    run = run_trainer("unet-segmentation", root.as_uri(), "geotiff", FAST)
    assert run.code == 0, run.result
    m = run.result.metrics
    assert m["tiled_iou"] >= m["baseline_iou"] + 0.4, m
    assert m["tiled_dice"] > m["tiled_iou"] and m["val_iou"] > 0.3
    manifest = run.manifest
    assert manifest.task == "segmentation"
    assert {"weights", "onnx", "prediction"} <= set(manifest.files)
    assert len(manifest.preprocessing.mean) == 5
    _same_georeferencing(run.file("prediction"), root / "val" / "images" / "val0.tif")
    model = _rebuild(run).eval()
    with torch.no_grad():
        assert model(torch.zeros(1, 5, 32, 32)).shape == (1, 2, 32, 32)


def test_unet_refuses_mask_classes_beyond_num_classes(tmp_path: Path, run_trainer: Any) -> None:
    root = make_geotiff_dataset(tmp_path / "ds", scenes=2, size=(32, 32), val_scenes=0)
    with rasterio.open(root / "masks" / "scene1.tif", "r+") as m:
        m.write(np.full((1, 32, 32), 4, dtype="uint8"))
    run = run_trainer("unet-segmentation", root.as_uri(), "geotiff", {"patch": 32, "stride": 32})
    assert run.code == 3 and run.result.reason == "InvalidDataset"
    assert "masks/scene1.tif: class ids [4] outside 0..1" in (run.result.message or "")


def test_unet_refuses_val_scenes_with_other_bands(tmp_path: Path, run_trainer: Any) -> None:
    root = make_geotiff_dataset(tmp_path / "ds", scenes=1, size=(32, 32), val_scenes=1)
    val = root / "val" / "images" / "val0.tif"
    with rasterio.open(val) as src:
        profile = {**src.profile, "count": 4}
        data = src.read()[:4]
    with rasterio.open(val, "w", **profile) as dst:
        dst.write(data)
    run = run_trainer("unet-segmentation", root.as_uri(), "geotiff", {"patch": 32, "stride": 32})
    assert run.code == 3 and run.result.reason == "InvalidDataset"
    assert "same band count, found [4, 5]" in (run.result.message or "")


@pytest.mark.slow
def test_autoencoder_finds_injected_anomalies(run_trainer: Any) -> None:
    run = run_trainer(
        "autoencoder-anomaly",
        "generated://geotiff-scenes?scenes=2&size=128&anomalies=12",
        "generated",
        FAST,
    )
    assert run.code == 0, run.result
    m = run.result.metrics
    assert m["threshold"] > 0 and run.manifest.postprocessing.threshold == m["threshold"]
    assert m["anomaly_recall"] >= 0.7, m
    assert m["anomaly_lift"] >= 5 * m["baseline_anomaly_lift"], m
    assert 0 < m["anomaly_share"] < 0.2
    heatmap = run.file("heatmap")
    data = run.artifact_dir.parent.parent / "work-0" / "data" / "generated" / "eval"
    _same_georeferencing(heatmap, data / "images" / "eval0.tif")
    with rasterio.open(heatmap) as h, rasterio.open(data / "anomalies" / "eval0.tif") as t:
        errors, truth = h.read(1), t.read(1) > 0
    assert errors[truth].mean() > 5 * errors[~truth].mean()
    assert "onnx" in run.manifest.files


@pytest.mark.slow
def test_autoencoder_checkpoints_on_sigterm_and_resumes(run_trainer: Any) -> None:
    uri = "generated://geotiff-scenes?scenes=1&size=64"
    hp = {**FAST, "epochs": 3}
    stopped = run_trainer("autoencoder-anomaly", uri, "generated", hp, stop_after_epochs=1)
    assert stopped.code == 143 and stopped.result.reason == "Terminated"
    assert stopped.result.checkpoint is not None and stopped.result.checkpoint.epoch == 1
    resumed = run_trainer(
        "autoencoder-anomaly", uri, "generated", hp, resume_from=stopped.result.checkpoint.uri
    )
    assert resumed.code == 0, resumed.result
    assert resumed.result.metrics["epochs_trained"] == 3
