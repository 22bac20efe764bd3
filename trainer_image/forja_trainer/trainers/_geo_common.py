"""What the two GeoTIFF trainers share: hyperparameters, dataset resolution, inference glue.

Both are :class:`~forja_trainer.trainers.base.TorchTrainer` subclasses, so the
shared loop gives them checkpoints, resume, SIGTERM handling and early stopping;
this module only knows about scenes and patches.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import Field, model_validator
from torch import nn

from forja_trainer.config import BaseHyperparameters
from forja_trainer.context import TrainingContext
from forja_trainer.errors import InvalidDataset
from forja_trainer.geo import Scene, discover_scenes
from forja_trainer.geo.synthetic import make_geotiff_dataset

__all__ = [
    "GENERATED_KIND",
    "GeoHyperparameters",
    "dataset_root",
    "torch_predictor",
    "val_scenes",
]

log = logging.getLogger(__name__)

GENERATED_KIND = "geotiff-scenes"
"""``generated://geotiff-scenes?scenes=2&size=128&anomalies=12``."""


class GeoHyperparameters(BaseHyperparameters):
    epochs: int = Field(default=3, ge=1, le=100_000)
    batch_size: int = Field(default=16, ge=1, le=65_536)
    lr: float = Field(default=2e-3, gt=0, le=10)
    weight_decay: float = Field(default=1e-4, ge=0, le=1)
    patch: int = Field(default=64, ge=8, le=2048)
    """Side of the square training patches (and inference tiles), px."""
    stride: int = Field(default=32, ge=1, le=2048)
    """Step between training patches, px."""
    tile_stride: int | None = Field(default=None, ge=1)
    """Step between inference tiles; default half a patch (50% overlap, averaged)."""
    base_channels: int = Field(default=16, ge=1, le=256)
    depth: int = Field(default=2, ge=1, le=6)

    @model_validator(mode="after")
    def _patch_fits(self) -> GeoHyperparameters:
        if self.patch % (2**self.depth):
            raise ValueError(f"patch ({self.patch}) must divide by 2**depth ({2**self.depth})")
        if self.stride > self.patch:
            raise ValueError(f"stride ({self.stride}) exceeds patch ({self.patch}): pixels skipped")
        return self

    @property
    def inference_stride(self) -> int:
        return self.tile_stride or max(1, self.patch // 2)


def dataset_root(ctx: TrainingContext[Any], *, masks: bool) -> Path:
    """The local dataset folder: generated on the spot for ``generated://geotiff-scenes``."""
    generated = ctx.generated_dataset()
    if generated is None:
        return ctx.fetch_dataset()
    if generated.kind != GENERATED_KIND:
        raise InvalidDataset(
            f"GeoTIFF trainers generate {GENERATED_KIND!r}, not {generated.kind!r}",
            field="spec.dataset.uri",
        )
    size = generated.int_param("size", 128, lo=16, hi=8192)
    return make_geotiff_dataset(
        ctx.data_dir / "generated",
        scenes=generated.int_param("scenes", 2, lo=1, hi=100),
        size=(size, size),
        bands=generated.int_param("bands", 5, lo=1, hi=64),
        seed=ctx.seed,
        masks=masks,
        eval_anomalies=generated.int_param("anomalies", 0, lo=0, hi=10_000),
    )


def val_scenes(root: Path, *, require_masks: bool) -> list[Scene]:
    """Scenes under ``root/val`` if the dataset has them, else none."""
    if not (root / "val" / "images").is_dir():
        return []
    return discover_scenes(root / "val", require_masks=require_masks)


def torch_predictor(
    model: nn.Module, transform: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
) -> Callable[[np.ndarray], np.ndarray]:
    """Adapt a model to :func:`forja_trainer.geo.predict_tiled`: numpy in, numpy out, no grad.

    ``transform(x, y)`` turns the model's raw output ``y`` for input ``x`` into
    the channels to average (class probabilities, a reconstruction error...).
    """
    model.eval()

    def predict(batch: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            x = torch.from_numpy(batch)
            out: np.ndarray = transform(x, model(x)).numpy()
            return out

    return predict
