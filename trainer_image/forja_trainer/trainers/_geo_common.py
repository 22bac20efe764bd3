"""What the two GeoTIFF trainers share: hyperparameters, dataset resolution, inference glue.

Both are :class:`~forja_trainer.trainers.base.TorchTrainer` subclasses, so the
shared loop gives them checkpoints, resume, SIGTERM handling and early stopping;
this module only knows about scenes and patches.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import Field, model_validator
from torch import nn

from forja_api.artifact import Preprocessing
from forja_trainer.config import BaseHyperparameters
from forja_trainer.context import TrainingContext
from forja_trainer.errors import InvalidDataset
from forja_trainer.geo import GeoPatchDataset, Scene, band_stats, discover_scenes
from forja_trainer.geo.synthetic import make_geotiff_dataset

__all__ = [
    "GENERATED_KIND",
    "GeoHyperparameters",
    "PatchData",
    "dataset_root",
    "patch_data",
    "tile_preprocessing",
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


@dataclass(frozen=True)
class PatchData:
    """Training and validation patches with the band statistics that normalise them."""

    bands: int
    mean: list[float]
    std: list[float]
    train: GeoPatchDataset
    valid: GeoPatchDataset


def patch_data(
    hp: GeoHyperparameters,
    train: list[Scene],
    valid: list[Scene],
    *,
    with_masks: bool,
    also: Sequence[Scene] = (),
) -> PatchData:
    """Patches over ``train`` (every ``stride`` px) and ``valid`` (non-overlapping).

    Statistics come from the training scenes only. Every scene, ``also`` included
    (e.g. scenes mapped at export), must have the same band count.
    """
    counts = {s.count for s in [*train, *valid, *also]}
    if len(counts) > 1:
        raise InvalidDataset(
            f"train, val and eval scenes must have the same band count, found {sorted(counts)}",
            field="spec.dataset.uri",
        )
    mean, std = band_stats(train)

    def patches(scenes: list[Scene], stride: int) -> GeoPatchDataset:
        return GeoPatchDataset(
            scenes, patch=hp.patch, stride=stride, mean=mean, std=std, with_masks=with_masks
        )

    return PatchData(
        bands=train[0].count,
        mean=mean,
        std=std,
        train=patches(train, hp.stride),
        valid=patches(valid, hp.patch),
    )


def tile_preprocessing(
    hp: GeoHyperparameters, mean: list[float], std: list[float]
) -> Preprocessing:
    """The manifest's preprocessing: how the server normalises and tiles a scene."""
    return Preprocessing(
        mean=mean,
        std=std,
        tile=hp.patch,
        tile_stride=hp.inference_stride,
        multiple_of=2**hp.depth,
    )


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
