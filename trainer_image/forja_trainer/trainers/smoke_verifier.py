"""smoke-verifier: is there smoke in this short sequence of crops? (SmokeyNet-Lite)

Stage B of the two-stage smoke detector: the detector proposes a box, the
verifier looks at the crops of that box over a few frames and confirms or rejects.

Datasets:

* ``generated://smoke-sequences?n=96&frames=4&size=32``: rising, widening plumes vs
  landscapes with and without static clouds (see ``data.synthetic``).
* ``crop-sequences``: ``<root>/[train|val]/<label>/<sequence>/<frame>.png`` with two
  labels, ``smoke`` and ``no_smoke`` (also ``positive``/``negative``, ``1``/``0``).
  Every sequence needs the same number of frames. Without train/val folders the
  sequences are split by ``val_fraction``.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, ClassVar

import torch
from pydantic import Field
from torch import nn
from torch.utils.data import Dataset

import forja_architectures as architectures
from forja_api.artifact import Postprocessing, Preprocessing, TensorSpec
from forja_api.v1alpha1.trainingjob import DatasetFormat, TrainerName
from forja_trainer.artifacts import ArtifactWriter, export_onnx
from forja_trainer.config import BaseHyperparameters
from forja_trainer.data.images import list_images, load_image
from forja_trainer.data.split import stratified_split
from forja_trainer.data.synthetic import smoke_sequences
from forja_trainer.errors import InvalidDataset
from forja_trainer.trainers.base import TorchTrainer

__all__ = ["TRAINER", "SmokeVerifierHyperparameters", "SmokeVerifierTrainer"]

POSITIVE = ("smoke", "positive", "1")
NEGATIVE = ("no_smoke", "no-smoke", "not_smoke", "negative", "0")
CLASS_NAMES = ["no_smoke", "smoke"]
MEAN = 0.5
STD = 0.5


class SmokeVerifierHyperparameters(BaseHyperparameters):
    epochs: int = Field(default=12, ge=1, le=10_000)
    batch_size: int = Field(default=16, ge=1, le=4096)
    lr: float = Field(default=3e-3, gt=0, le=10)
    crop_size: int = Field(default=64, ge=8, le=512)
    """Crops are resized to crop_size x crop_size."""
    width: int = Field(default=16, ge=4, le=256)
    """Channels of the first conv block (doubling twice)."""
    hidden: int = Field(default=32, ge=4, le=1024)
    """GRU hidden size."""
    dropout: float = Field(default=0.1, ge=0, lt=1)
    threshold: float = Field(default=0.5, gt=0, lt=1)
    """Probability above which a sequence is called smoke."""
    augment: bool = True
    """Random horizontal flips of whole sequences."""
    motion: bool = True
    """Feed frame differences beside the frames (see SmokeyNetLite)."""


class SequenceDataset(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    def __init__(self, x: torch.Tensor, y: torch.Tensor, *, augment: bool) -> None:
        self.x = x
        self.y = y
        self.augment = augment

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        seq = self.x[i]
        if self.augment and bool(torch.rand(()) < 0.5):
            seq = seq.flip(-1)
        return (seq - MEAN) / STD, self.y[i]


def _label_of(name: str) -> float | None:
    low = name.lower()
    if low in POSITIVE:
        return 1.0
    if low in NEGATIVE:
        return 0.0
    return None


def read_crop_sequences(root: Path, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """All sequences under ``root/<label>/<sequence>/``; errors name the directory."""
    label_dirs = sorted(p for p in root.iterdir() if p.is_dir())
    if not label_dirs:
        raise InvalidDataset(f"{root} has no label directories (expected smoke/ and no_smoke/)")
    seqs: list[torch.Tensor] = []
    labels: list[float] = []
    frames: int | None = None
    for label_dir in label_dirs:
        label = _label_of(label_dir.name)
        if label is None:
            raise InvalidDataset(
                f"unknown label directory {label_dir}: use one of {POSITIVE + NEGATIVE}"
            )
        for seq_dir in sorted(p for p in label_dir.iterdir() if p.is_dir()):
            files = list_images(seq_dir)
            if not files:
                raise InvalidDataset(f"sequence {seq_dir} has no frames")
            if frames is None:
                frames = len(files)
            elif len(files) != frames:
                raise InvalidDataset(
                    f"sequence {seq_dir} has {len(files)} frames, the first one had {frames}"
                )
            seqs.append(torch.stack([load_image(f, size) for f in files]))
            labels.append(label)
    y = torch.tensor(labels)
    for value, name in ((1.0, "smoke"), (0.0, "no_smoke")):
        if not bool((y == value).any()):
            raise InvalidDataset(f"{root} has no {name} sequences; both classes are needed")
    return torch.stack(seqs), y


class SmokeVerifierTrainer(TorchTrainer[SmokeVerifierHyperparameters]):
    name: ClassVar[TrainerName] = TrainerName.SMOKE_VERIFIER
    task: ClassVar[str] = "verification"
    hyperparameters_model: ClassVar[type[BaseHyperparameters]] = SmokeVerifierHyperparameters
    dataset_formats: ClassVar[frozenset[DatasetFormat]] = frozenset({DatasetFormat.CROP_SEQUENCES})
    distributed: ClassVar[bool] = True

    frames: int = 0
    crop: int = 0
    _val_labels: torch.Tensor | None = None

    def build_datasets(self) -> tuple[Dataset[Any], Dataset[Any]]:
        hp = self.hp
        generated = self.ctx.generated_dataset()
        if generated is not None:
            if generated.kind != "smoke-sequences":
                raise InvalidDataset(
                    f"smoke-verifier generates 'smoke-sequences', not {generated.kind!r}",
                    field="spec.dataset.uri",
                )
            n = generated.int_param("n", 96, lo=8, hi=20_000)
            frames = generated.int_param("frames", 4, lo=1, hi=64)
            size = generated.int_param("size", hp.crop_size, lo=8, hi=512)
            x, y = smoke_sequences(n, frames, size, hp.seed)
            train_idx, val_idx = stratified_split(y, hp.val_fraction, hp.seed)
            xt, yt, xv, yv = x[train_idx], y[train_idx], x[val_idx], y[val_idx]
        else:
            root = self.ctx.fetch_dataset()
            if (root / "train").is_dir() and (root / "val").is_dir():
                xt, yt = read_crop_sequences(root / "train", hp.crop_size)
                xv, yv = read_crop_sequences(root / "val", hp.crop_size)
            else:
                x, y = read_crop_sequences(root, hp.crop_size)
                train_idx, val_idx = stratified_split(y, hp.val_fraction, hp.seed)
                xt, yt, xv, yv = x[train_idx], y[train_idx], x[val_idx], y[val_idx]
            if xt.shape[1] != xv.shape[1]:
                raise InvalidDataset(
                    f"train sequences have {xt.shape[1]} frames, val sequences {xv.shape[1]}"
                )
        if len(yv) == 0:
            raise InvalidDataset("no validation sequences: add more data or raise val_fraction")
        self.frames = int(xt.shape[1])
        self.crop = int(xt.shape[-1])
        self._val_labels = yv
        return SequenceDataset(xt, yt, augment=hp.augment), SequenceDataset(xv, yv, augment=False)

    def arch_config(self) -> dict[str, Any]:
        return {
            "in_channels": 3,
            "width": self.hp.width,
            "hidden": self.hp.hidden,
            "dropout": self.hp.dropout,
            "motion": self.hp.motion,
        }

    def build_model(self) -> nn.Module:
        return architectures.build("smokeynet-lite", self.arch_config())

    def training_step(self, model: nn.Module, batch: Any) -> torch.Tensor:
        x, y = batch
        loss: torch.Tensor = nn.functional.binary_cross_entropy_with_logits(model(x), y)
        return loss

    def evaluate(self, model: nn.Module, loader: Iterable[Any]) -> dict[str, float]:
        loss_sum, n = 0.0, 0
        tp = fp = fn = correct = 0
        for xb, yb in loader:
            x, y = xb.to(self.ctx.device), yb.to(self.ctx.device)
            logits = model(x)
            loss_sum += float(
                nn.functional.binary_cross_entropy_with_logits(logits, y, reduction="sum")
            )
            pred = (torch.sigmoid(logits) >= self.hp.threshold).float()
            n += len(y)
            correct += int((pred == y).sum())
            tp += int(((pred == 1) & (y == 1)).sum())
            fp += int(((pred == 1) & (y == 0)).sum())
            fn += int(((pred == 0) & (y == 1)).sum())
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        return {
            "val_loss": loss_sum / max(n, 1),
            "val_accuracy": correct / max(n, 1),
            "val_precision": precision,
            "val_recall": recall,
            "val_f1": f1,
        }

    def baseline_metrics(self) -> dict[str, float]:
        """Always answering the majority class."""
        y = self._val_labels
        if y is None or len(y) == 0:
            return {}
        share = float(y.mean())
        return {"baseline_accuracy": max(share, 1 - share)}

    def export(self, model: nn.Module, writer: ArtifactWriter) -> None:
        writer.save_state_dict(model)
        writer.architecture = "smokeynet-lite"
        writer.class_names = list(CLASS_NAMES)
        c = self.crop
        writer.inputs = [TensorSpec(name="crops", shape=[None, None, 3, c, c], layout="NTCHW")]
        writer.outputs = [TensorSpec(name="logits", shape=[None])]
        writer.preprocessing = Preprocessing(
            resize=[c, c], scale=1 / 255, mean=[MEAN] * 3, std=[STD] * 3, frames=self.frames
        )
        writer.postprocessing = Postprocessing(activation="sigmoid", threshold=self.hp.threshold)
        # The checkpoint the SAI pipeline loads today: a dict with these four keys.
        epoch = self.loop.state.epoch if self.loop else 0
        torch.save(
            {
                "model_state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                "epoch": epoch,
                "metrics": dict(writer.metrics),
                "config": {**self.hp.model_dump(mode="json"), "arch_config": self.arch_config()},
            },
            writer.add_file("checkpoint", "verifier_best.pt"),
        )
        example = torch.zeros(1, self.frames, 3, c, c)
        onnx_path = writer.path("model.onnx")
        if export_onnx(
            model,
            example,
            onnx_path,
            input_name="crops",
            output_names=["logits"],
            dynamic_axes={"crops": {0: "batch", 1: "frames"}, "logits": {0: "batch"}},
        ):
            writer.add_file("onnx", "model.onnx")


TRAINER = SmokeVerifierTrainer
