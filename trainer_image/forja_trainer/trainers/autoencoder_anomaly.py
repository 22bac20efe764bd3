"""``autoencoder-anomaly``: a conv autoencoder on GeoTIFF patches; anomaly = high error.

Dataset (format ``geotiff``): ``images/*.tif`` of normal scenes to learn from;
optionally ``val/images`` (validation loss; else a non-overlapping pass over the
training scenes) and ``eval/images/*.tif`` to map, with ``eval/anomalies/*.tif``
ground truth (1 = anomalous) to score against. Or
``generated://geotiff-scenes?scenes=2&size=128&anomalies=12``.

The threshold is learned from the training data: the ``threshold_percentile``
of per-pixel reconstruction errors over a bounded sample of training patches,
so about ``100 - percentile`` % of normal pixels exceed it. Each mapped scene
yields a float32 heat map GeoTIFF (the error, with the input's CRS and
transform) and the share of pixels above the threshold (``anomaly_share``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import rasterio
import torch
from pydantic import Field
from rasterio.windows import Window
from torch import nn
from torch.utils.data import Dataset

import forja_architectures as architectures
from forja_api.artifact import Postprocessing, TensorSpec
from forja_api.v1alpha1.trainingjob import DatasetFormat, TrainerName
from forja_architectures.autoencoder import pixel_error
from forja_trainer.artifacts import ArtifactWriter, export_onnx
from forja_trainer.config import BaseHyperparameters
from forja_trainer.errors import InvalidDataset
from forja_trainer.geo import (
    GeoDatasetError,
    GeoPatchDataset,
    Scene,
    TileSpec,
    discover_scenes,
    predict_tiled,
)
from forja_trainer.trainers._geo_common import (
    GeoHyperparameters,
    dataset_root,
    patch_data,
    tile_preprocessing,
    torch_predictor,
    val_scenes,
)
from forja_trainer.trainers.base import TorchTrainer

__all__ = [
    "TRAINER",
    "AutoencoderAnomalyTrainer",
    "AutoencoderHyperparameters",
    "learn_threshold",
]

log = logging.getLogger(__name__)

THRESHOLD_SAMPLE_PIXELS = 2_000_000
"""Errors kept for the percentile: 8 MB of float32 however large the training set."""


class AutoencoderHyperparameters(GeoHyperparameters):
    latent_channels: int = Field(default=8, ge=1, le=512)
    threshold_percentile: float = Field(default=99.5, gt=50, lt=100)


def learn_threshold(
    model: nn.Module, dataset: GeoPatchDataset, percentile: float, batch_size: int, seed: int
) -> float:
    """The ``percentile`` of per-pixel training errors, from a bounded random sample of patches."""
    per_patch = dataset.patch * dataset.patch
    n = min(len(dataset), max(1, THRESHOLD_SAMPLE_PIXELS // per_patch))
    order = np.random.default_rng(seed).permutation(len(dataset))[:n]
    errors: list[np.ndarray] = []
    model.eval()
    with torch.no_grad():
        for i in range(0, n, batch_size):
            items = [dataset[int(j)] for j in order[i : i + batch_size]]
            x = torch.stack([t for t in items if isinstance(t, torch.Tensor)])
            errors.append(pixel_error(x, model(x)).numpy().ravel())
    return float(np.percentile(np.concatenate(errors), percentile))


class AutoencoderAnomalyTrainer(TorchTrainer[AutoencoderHyperparameters]):
    name: ClassVar[TrainerName] = TrainerName.AUTOENCODER_ANOMALY
    task: ClassVar[str] = "anomaly"
    hyperparameters_model: ClassVar[type[BaseHyperparameters]] = AutoencoderHyperparameters
    dataset_formats: ClassVar[frozenset[DatasetFormat]] = frozenset({DatasetFormat.GEOTIFF})
    distributed: ClassVar[bool] = True

    bands: int = 0
    mean: list[float]
    std: list[float]
    map_scenes: list[Scene]

    def build_datasets(self) -> tuple[Dataset[Any], Dataset[Any]]:
        hp = self.hp
        root = dataset_root(self.ctx, masks=False)
        try:
            scenes = discover_scenes(root, masks=None)
            val = val_scenes(root, require_masks=False) or scenes
            has_eval = (root / "eval" / "images").is_dir()
            self.map_scenes = (
                discover_scenes(root / "eval", masks="anomalies") if has_eval else scenes[:1]
            )
        except GeoDatasetError as exc:
            raise InvalidDataset(str(exc), field="spec.dataset.uri") from exc
        data = patch_data(hp, scenes, val, with_masks=False, also=self.map_scenes)
        self.bands, self.mean, self.std = data.bands, data.mean, data.std
        return data.train, data.valid

    def arch_config(self) -> dict[str, Any]:
        return {
            "in_channels": self.bands,
            "base_channels": self.hp.base_channels,
            "depth": self.hp.depth,
            "latent_channels": self.hp.latent_channels,
        }

    def build_model(self) -> nn.Module:
        return architectures.build("conv-autoencoder", self.arch_config())

    def training_step(self, model: nn.Module, batch: Any) -> torch.Tensor:
        loss: torch.Tensor = nn.functional.mse_loss(model(batch), batch)
        return loss

    def batch_length(self, batch: Any) -> int:
        return int(batch.shape[0])

    def evaluate(self, model: nn.Module, loader: Iterable[Any]) -> dict[str, float]:
        total, n = 0.0, 0
        for batch in loader:
            x = batch.to(self.ctx.device)
            total += float(nn.functional.mse_loss(model(x), x, reduction="sum"))
            n += x.numel()
        return {"val_loss": total / max(n, 1)}

    def export(self, model: nn.Module, writer: ArtifactWriter) -> None:
        hp = self.hp
        train = self.train_dataset()
        assert isinstance(train, GeoPatchDataset)
        threshold = learn_threshold(model, train, hp.threshold_percentile, hp.batch_size, hp.seed)
        writer.save_state_dict(model)
        writer.architecture = "conv-autoencoder"
        writer.inputs = [
            TensorSpec(name="input", shape=[None, self.bands, None, None], layout="NCHW")
        ]
        writer.outputs = [
            TensorSpec(name="reconstruction", shape=[None, self.bands, None, None], layout="NCHW")
        ]
        writer.preprocessing = tile_preprocessing(hp, self.mean, self.std)
        # The score is the per-pixel squared error averaged over bands (normalised units).
        writer.postprocessing = Postprocessing(threshold=threshold)
        example = torch.zeros(1, self.bands, hp.patch, hp.patch)
        if export_onnx(
            model,
            example,
            writer.path("model.onnx"),
            output_names=["reconstruction"],
            dynamic_axes={
                "input": {0: "batch", 2: "height", 3: "width"},
                "reconstruction": {0: "batch", 2: "height", 3: "width"},
            },
        ):
            writer.add_file("onnx", "model.onnx")
        writer.metrics["threshold"] = threshold
        writer.metrics.update(self.map_anomalies(model, writer, threshold))

    def map_anomalies(
        self, model: nn.Module, writer: ArtifactWriter, threshold: float
    ) -> dict[str, float]:
        """Heat maps of the scenes to map (the first ships as ``heatmap``) and their statistics."""
        hp = self.hp
        predict = torch_predictor(model, pixel_error)
        spec = TileSpec(tile=hp.patch, stride=hp.inference_stride, batch_size=hp.batch_size)
        above = total = tp = fp = fn = 0
        for i, scene in enumerate(self.map_scenes):
            truth = rasterio.open(scene.mask) if scene.mask is not None else None

            def tally(block: np.ndarray, window: Window, src: Any = truth) -> None:
                nonlocal above, total, tp, fp, fn
                flagged = block[0] > threshold
                above += int(flagged.sum())
                total += flagged.size
                if src is not None:
                    actual = src.read(1, window=window) > 0
                    tp += int((flagged & actual).sum())
                    fp += int((flagged & ~actual).sum())
                    fn += int((~flagged & actual).sum())

            name = f"heatmap-{scene.image.stem}.tif"
            target: Path = writer.add_file("heatmap", name) if i == 0 else writer.path(name)
            try:
                predict_tiled(
                    scene.image,
                    target,
                    predict,
                    spec=spec,
                    mean=self.mean,
                    std=self.std,
                    out_count=1,
                    out_dtype="float32",
                    on_block=tally,
                )
            finally:
                if truth is not None:
                    truth.close()
        metrics = {"anomaly_share": above / max(total, 1)}
        if tp + fn > 0:
            precision = tp / max(tp + fp, 1)
            prevalence = (tp + fn) / max(total, 1)
            metrics.update(
                anomaly_recall=tp / (tp + fn),
                anomaly_precision=precision,
                anomaly_iou=tp / max(tp + fp + fn, 1),
                # Flagging pixels at random has precision == prevalence: lift 1.
                anomaly_lift=precision / prevalence,
                baseline_anomaly_lift=1.0,
            )
        return metrics


TRAINER = AutoencoderAnomalyTrainer
