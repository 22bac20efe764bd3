"""image-classifier: a small CNN with the RobustTrainer loop and BalancedAugmentation.

Datasets:

* ``generated://shapes?classes=4&per_class=40&size=32&imbalance=50``: coloured shapes
  (disk, square, bars, ring, cross) on noisy backgrounds; ``imbalance`` (percent)
  makes the last class that share of the first, the others in between.
* ``image-folder``: ``<root>/[train|val]/<class>/<image>``; without train/val folders
  each class is split by ``val_fraction``. ``class_names`` (optional) must match the
  folders: a mismatch fails with "expected X classes, found Y".

The training set is balanced to ``target_per_class`` (default: the largest class)
with augmented copies (``augmentation``: light / medium / aggressive), optionally
capped by ``max_synthetic_fraction``, with optional mixup.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any, ClassVar

import torch
from pydantic import Field
from torch import nn
from torch.utils.data import Dataset, TensorDataset

import forja_architectures as architectures
from forja_api.artifact import Postprocessing, Preprocessing, TensorSpec
from forja_api.v1alpha1.trainingjob import DatasetFormat, TrainerName
from forja_trainer.artifacts import ArtifactWriter, export_onnx
from forja_trainer.config import BaseHyperparameters
from forja_trainer.data.balanced import AugmentStrategy, BalancedDataset, BalancePlan, plan_balance
from forja_trainer.data.images import list_images, load_image
from forja_trainer.data.split import stratified_split
from forja_trainer.data.synthetic import SHAPE_CLASSES, shapes
from forja_trainer.errors import InvalidDataset
from forja_trainer.trainers.base import TorchTrainer

__all__ = ["TRAINER", "ImageClassifierHyperparameters", "ImageClassifierTrainer"]

log = logging.getLogger(__name__)
MEAN = 0.5
STD = 0.5


class ImageClassifierHyperparameters(BaseHyperparameters):
    epochs: int = Field(default=15, ge=1, le=10_000)
    lr: float = Field(default=3e-3, gt=0, le=10)
    image_size: int = Field(default=32, ge=8, le=1024)
    width: int = Field(default=16, ge=4, le=512)
    depth: int = Field(default=3, ge=1, le=6)
    dropout: float = Field(default=0.2, ge=0, lt=1)
    class_names: list[str] | None = None
    """Expected classes; the dataset must have exactly these."""
    target_per_class: int | None = Field(default=None, ge=1, le=1_000_000)
    """BalancedAugmentation target (None: the largest class's count)."""
    augmentation: AugmentStrategy = AugmentStrategy.MEDIUM
    max_synthetic_fraction: float | None = Field(default=None, gt=0, lt=1)
    """Cap on the synthetic share per class (0.3 keeps classes >= 70% real)."""
    mixup_alpha: float = Field(default=0.0, ge=0, le=10)
    """Mixup Beta(alpha, alpha); 0 disables it."""
    label_smoothing: float = Field(default=0.0, ge=0, lt=1)


def read_image_folder(root: Path, size: int) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(class_dirs) < 2:
        raise InvalidDataset(
            f"{root} needs one folder per class, at least two; found {len(class_dirs)}"
        )
    images: list[torch.Tensor] = []
    labels: list[int] = []
    for idx, class_dir in enumerate(class_dirs):
        files = list_images(class_dir)
        if not files:
            raise InvalidDataset(f"class folder {class_dir} has no images")
        images += [load_image(f, size) for f in files]
        labels += [idx] * len(files)
    return torch.stack(images), torch.tensor(labels), [p.name for p in class_dirs]


class ImageClassifierTrainer(TorchTrainer[ImageClassifierHyperparameters]):
    name: ClassVar[TrainerName] = TrainerName.IMAGE_CLASSIFIER
    task: ClassVar[str] = "classification"
    hyperparameters_model: ClassVar[type[BaseHyperparameters]] = ImageClassifierHyperparameters
    dataset_formats: ClassVar[frozenset[DatasetFormat]] = frozenset({DatasetFormat.IMAGE_FOLDER})
    distributed: ClassVar[bool] = True

    class_names: list[str]
    plan: BalancePlan | None = None
    _val_labels: torch.Tensor | None = None
    image_size: int = 0

    def _load(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, list[str]]:
        hp = self.hp
        generated = self.ctx.generated_dataset()
        if generated is not None:
            if generated.kind != "shapes":
                raise InvalidDataset(
                    f"image-classifier generates 'shapes', not {generated.kind!r}",
                    field="spec.dataset.uri",
                )
            k = generated.int_param("classes", 4, lo=2, hi=len(SHAPE_CLASSES))
            per = generated.int_param("per_class", 40, lo=2, hi=100_000)
            size = generated.int_param("size", hp.image_size, lo=8, hi=512)
            imbalance = generated.int_param("imbalance", 100, lo=1, hi=100) / 100
            counts = [max(2, round(per * (1 - (1 - imbalance) * c / (k - 1)))) for c in range(k)]
            x, y, names = shapes(counts, size, hp.seed)
            tr, va = stratified_split(y, hp.val_fraction, hp.seed)
            return x[tr], y[tr], x[va], y[va], names
        root = self.ctx.fetch_dataset()
        if (root / "train").is_dir() and (root / "val").is_dir():
            xt, yt, names = read_image_folder(root / "train", hp.image_size)
            xv, yv, val_names = read_image_folder(root / "val", hp.image_size)
            if val_names != names:
                raise InvalidDataset(
                    f"{root}/val classes {val_names} differ from {root}/train classes {names}"
                )
            return xt, yt, xv, yv, names
        x, y, names = read_image_folder(root, hp.image_size)
        tr, va = stratified_split(y, hp.val_fraction, hp.seed)
        return x[tr], y[tr], x[va], y[va], names

    def build_datasets(self) -> tuple[Dataset[Any], Dataset[Any]]:
        hp = self.hp
        xt, yt, xv, yv, names = self._load()
        if hp.class_names is not None and list(hp.class_names) != names:
            raise InvalidDataset(
                f"expected {len(hp.class_names)} classes {hp.class_names}, "
                f"found {len(names)} {names}",
                field="spec.hyperparameters.class_names",
            )
        if len(yv) == 0:
            raise InvalidDataset("no validation images: add more data or raise val_fraction")
        self.class_names = names
        self.image_size = int(xt.shape[-1])
        self.plan = plan_balance(yt, len(names), hp.target_per_class, hp.max_synthetic_fraction)
        log.info("balanced training set: %s", self.plan.summary(names))
        self._val_labels = yv
        train = BalancedDataset(xt, yt, self.plan, hp.augmentation, mean=MEAN, std=STD)
        val = TensorDataset((xv - MEAN) / STD, yv)
        return train, val

    def arch_config(self) -> dict[str, Any]:
        return {
            "num_classes": len(self.class_names),
            "in_channels": 3,
            "width": self.hp.width,
            "depth": self.hp.depth,
            "dropout": self.hp.dropout,
        }

    def build_model(self) -> nn.Module:
        return architectures.build("small-cnn", self.arch_config())

    def training_step(self, model: nn.Module, batch: Any) -> torch.Tensor:
        x, y = batch
        smoothing = self.hp.label_smoothing
        if self.hp.mixup_alpha > 0 and len(y) > 1:
            dist = torch.distributions.Beta(self.hp.mixup_alpha, self.hp.mixup_alpha)
            lam = float(dist.sample())
            perm = torch.randperm(len(y)).to(x.device)
            logits = model(lam * x + (1 - lam) * x[perm])
            ce = nn.functional.cross_entropy
            loss: torch.Tensor = lam * ce(logits, y, label_smoothing=smoothing) + (1 - lam) * ce(
                logits, y[perm], label_smoothing=smoothing
            )
            return loss
        return nn.functional.cross_entropy(model(x), y, label_smoothing=smoothing)

    def evaluate(self, model: nn.Module, loader: Iterable[Any]) -> dict[str, float]:
        k = len(self.class_names)
        confusion = torch.zeros(k, k, dtype=torch.long)
        loss_sum, n = 0.0, 0
        for xb, yb in loader:
            x, y = xb.to(self.ctx.device), yb.to(self.ctx.device)
            logits = model(x)
            loss_sum += float(nn.functional.cross_entropy(logits, y, reduction="sum"))
            pred = logits.argmax(1)
            n += len(y)
            for t, p in zip(y.tolist(), pred.tolist(), strict=True):
                confusion[t, p] += 1
        support = confusion.sum(1).clamp(min=1)
        recall = confusion.diag().float() / support
        predicted = confusion.sum(0).clamp(min=1)
        precision = confusion.diag().float() / predicted
        f1 = torch.where(
            precision + recall > 0, 2 * precision * recall / (precision + recall), torch.zeros(k)
        )
        return {
            "val_loss": loss_sum / max(n, 1),
            "val_accuracy": float(confusion.diag().sum()) / max(n, 1),
            "val_balanced_accuracy": float(recall.mean()),
            "val_macro_f1": float(f1.mean()),
        }

    def baseline_metrics(self) -> dict[str, float]:
        y = self._val_labels
        if y is None or len(y) == 0:
            return {}
        return {"baseline_accuracy": float(torch.bincount(y).max()) / len(y)}

    def export(self, model: nn.Module, writer: ArtifactWriter) -> None:
        writer.save_state_dict(model)
        writer.architecture = "small-cnn"
        writer.write_labels(self.class_names)
        s = self.image_size
        writer.inputs = [TensorSpec(name="input", shape=[None, 3, s, s], layout="NCHW")]
        writer.outputs = [TensorSpec(name="logits", shape=[None, len(self.class_names)])]
        writer.preprocessing = Preprocessing(
            resize=[s, s], scale=1 / 255, mean=[MEAN] * 3, std=[STD] * 3
        )
        writer.postprocessing = Postprocessing(activation="softmax")
        if self.plan is not None:
            writer.write_json("balance", "balance.json", self.plan.summary(self.class_names))
        if export_onnx(
            model, torch.zeros(1, 3, s, s), writer.path("model.onnx"), output_names=["logits"]
        ):
            writer.add_file("onnx", "model.onnx")


TRAINER = ImageClassifierTrainer
