"""``unet-segmentation``: a U-Net on multispectral GeoTIFF patches, read lazily.

Dataset (format ``geotiff``): ``images/*.tif`` with ``masks/*.tif`` (class ids,
0 = background), and optionally ``val/images`` + ``val/masks`` (else the last
training scene is held out). Or ``generated://geotiff-scenes?scenes=2&size=128``.

Training reads patches (``patch`` px every ``stride`` px) on demand. At export
the tiled, overlap-averaged inference a server would run maps each validation
scene to a class-map GeoTIFF with the input's CRS and transform; IoU and Dice
of the foreground classes are counted from that map while it is written
(``tiled_iou``/``tiled_dice``), beside the all-background baseline's (0, 0).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
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
from forja_trainer.artifacts import ArtifactWriter, export_onnx
from forja_trainer.config import BaseHyperparameters
from forja_trainer.errors import InvalidDataset
from forja_trainer.geo import (
    GeoDatasetError,
    Scene,
    TileSpec,
    check_mask_classes,
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

__all__ = ["TRAINER", "UNetHyperparameters", "UNetSegmentationTrainer", "segmentation_scores"]

log = logging.getLogger(__name__)


class UNetHyperparameters(GeoHyperparameters):
    num_classes: int = Field(default=2, ge=2, le=255)
    """Including background (class 0)."""
    class_names: list[str] | None = None


def segmentation_scores(confusion: np.ndarray, prefix: str = "") -> dict[str, float]:
    """Mean foreground IoU, Dice and pixel accuracy from a ``(K, K)`` truth x prediction matrix."""
    tp = np.diag(confusion).astype(np.float64)
    fp = confusion.sum(axis=0) - tp
    fn = confusion.sum(axis=1) - tp
    fg = slice(1, None)
    present = (tp + fn)[fg] > 0
    iou = tp[fg] / np.maximum(tp[fg] + fp[fg] + fn[fg], 1)
    dice = 2 * tp[fg] / np.maximum(2 * tp[fg] + fp[fg] + fn[fg], 1)
    total = max(int(confusion.sum()), 1)
    return {
        f"{prefix}iou": float(iou[present].mean()) if present.any() else 0.0,
        f"{prefix}dice": float(dice[present].mean()) if present.any() else 0.0,
        f"{prefix}pixel_accuracy": float(tp.sum() / total),
    }


def _confusion(truth: np.ndarray, pred: np.ndarray, k: int) -> np.ndarray:
    idx = truth.astype(np.int64).ravel() * k + pred.astype(np.int64).ravel()
    return np.bincount(idx, minlength=k * k).reshape(k, k)


class UNetSegmentationTrainer(TorchTrainer[UNetHyperparameters]):
    name: ClassVar[TrainerName] = TrainerName.UNET_SEGMENTATION
    task: ClassVar[str] = "segmentation"
    hyperparameters_model: ClassVar[type[BaseHyperparameters]] = UNetHyperparameters
    dataset_formats: ClassVar[frozenset[DatasetFormat]] = frozenset({DatasetFormat.GEOTIFF})
    distributed: ClassVar[bool] = True

    bands: int = 0
    mean: list[float]
    std: list[float]
    eval_scenes: list[Scene]
    background_share: float = 0.0

    def build_datasets(self) -> tuple[Dataset[Any], Dataset[Any]]:
        hp = self.hp
        root = dataset_root(self.ctx, masks=True)
        try:
            scenes = discover_scenes(root, require_masks=True)
            val = val_scenes(root, require_masks=True)
            for scene in scenes + val:
                check_mask_classes(scene, hp.num_classes)
        except GeoDatasetError as exc:
            raise InvalidDataset(str(exc), field="spec.dataset.uri") from exc
        if not val:
            if len(scenes) < 2:
                raise InvalidDataset(
                    "one scene and no val/ folder: add val/images + val/masks or a second scene",
                    field="spec.dataset.uri",
                )
            scenes, val = scenes[:-1], scenes[-1:]
        if hp.class_names is not None and len(hp.class_names) != hp.num_classes:
            raise InvalidDataset(
                f"expected {hp.num_classes} class names, found {len(hp.class_names)}",
                field="spec.hyperparameters.class_names",
            )
        self.eval_scenes = val
        data = patch_data(hp, scenes, val, with_masks=True)
        self.bands, self.mean, self.std = data.bands, data.mean, data.std
        return data.train, data.valid

    def arch_config(self) -> dict[str, Any]:
        return {
            "in_channels": self.bands,
            "num_classes": self.hp.num_classes,
            "base_channels": self.hp.base_channels,
            "depth": self.hp.depth,
        }

    def build_model(self) -> nn.Module:
        return architectures.build("unet", self.arch_config())

    def training_step(self, model: nn.Module, batch: Any) -> torch.Tensor:
        x, y = batch
        loss: torch.Tensor = nn.functional.cross_entropy(model(x), y)
        return loss

    def evaluate(self, model: nn.Module, loader: Iterable[Any]) -> dict[str, float]:
        k = self.hp.num_classes
        confusion = np.zeros((k, k), dtype=np.int64)
        loss_sum, n = 0.0, 0
        for xb, yb in loader:
            x, y = xb.to(self.ctx.device), yb.to(self.ctx.device)
            logits = model(x)
            loss_sum += float(nn.functional.cross_entropy(logits, y, reduction="sum"))
            n += y.numel()
            confusion += _confusion(y.cpu().numpy(), logits.argmax(1).cpu().numpy(), k)
        self.background_share = float(confusion[0].sum() / max(confusion.sum(), 1))
        return {"val_loss": loss_sum / max(n, 1), **segmentation_scores(confusion, "val_")}

    def baseline_metrics(self) -> dict[str, float]:
        """Predicting background everywhere: no foreground pixel right."""
        return {
            "baseline_iou": 0.0,
            "baseline_dice": 0.0,
            "baseline_pixel_accuracy": self.background_share,
        }

    def export(self, model: nn.Module, writer: ArtifactWriter) -> None:
        hp = self.hp
        writer.save_state_dict(model)
        writer.architecture = "unet"
        writer.class_names = hp.class_names or [
            "background",
            *(f"class{i}" for i in range(1, hp.num_classes)),
        ]
        writer.inputs = [
            TensorSpec(name="input", shape=[None, self.bands, None, None], layout="NCHW")
        ]
        writer.outputs = [
            TensorSpec(name="logits", shape=[None, hp.num_classes, None, None], layout="NCHW")
        ]
        writer.preprocessing = tile_preprocessing(hp, self.mean, self.std)
        writer.postprocessing = Postprocessing(activation="softmax")  # answered as argmax classes
        example = torch.zeros(1, self.bands, hp.patch, hp.patch)
        if export_onnx(
            model,
            example,
            writer.path("model.onnx"),
            output_names=["logits"],
            dynamic_axes={
                "input": {0: "batch", 2: "height", 3: "width"},
                "logits": {0: "batch", 2: "height", 3: "width"},
            },
        ):
            writer.add_file("onnx", "model.onnx")
        writer.metrics.update(self.predict_scenes(model, writer))

    def predict_scenes(self, model: nn.Module, writer: ArtifactWriter) -> dict[str, float]:
        """Tiled inference over the evaluation scenes; the first map ships as ``prediction``."""
        hp = self.hp
        k = hp.num_classes
        confusion = np.zeros((k, k), dtype=np.int64)
        predict = torch_predictor(model, lambda _x, y: y.softmax(dim=1))
        spec = TileSpec(tile=hp.patch, stride=hp.inference_stride, batch_size=hp.batch_size)
        for i, scene in enumerate(self.eval_scenes):
            assert scene.mask is not None
            name = f"prediction-{scene.image.stem}.tif"
            target = writer.add_file("prediction", name) if i == 0 else writer.path(name)
            with rasterio.open(scene.mask) as truth:

                def count(block: np.ndarray, window: Window, src: Any = truth) -> None:
                    confusion[:] += _confusion(src.read(1, window=window), block[0], k)

                predict_tiled(
                    scene.image,
                    target,
                    predict,
                    spec=spec,
                    mean=self.mean,
                    std=self.std,
                    out_count=1,
                    out_dtype="uint8",
                    finalize=lambda probs: probs.argmax(axis=0)[None],
                    on_block=count,
                )
        return segmentation_scores(confusion, "tiled_")


TRAINER = UNetSegmentationTrainer
