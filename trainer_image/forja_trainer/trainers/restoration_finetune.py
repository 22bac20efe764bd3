"""restoration-finetune: fine-tune SimpleNAFNet on degraded -> clean pairs.

Starts from ``spec.pretrained`` when given: the checkpoint is fetched from the
store (``s3://models/pretrained_models/...``), verified against its sha256 and
cached locally; the tensors whose name and shape match move into the model, and the
report of what moved and what did not is logged and shipped (``transfer.json``).
The backbone learns at ``pretrained.backbone_lr_factor`` x lr (or is frozen with
``freeze_backbone``); the head (``ending``) at lr.

Datasets:

* ``generated://restoration-pairs?n=64&size=32&noise_pct=10``: smooth textures with
  Gaussian noise.
* ``image-pairs``: ``<root>/[train|val]/degraded/<name>`` and ``.../clean/<name>``
  with the same file names (128x128 by default, ``image_size`` resizes).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any, ClassVar

import torch
from pydantic import Field
from torch import nn
from torch.utils.data import Dataset, TensorDataset

import forja_architectures as architectures
from forja_api.artifact import Preprocessing, TensorSpec
from forja_api.v1alpha1.trainingjob import DatasetFormat, TrainerName
from forja_trainer.artifacts import ArtifactWriter, export_onnx
from forja_trainer.config import BaseHyperparameters
from forja_trainer.data.images import list_images, load_image
from forja_trainer.data.synthetic import restoration_pairs
from forja_trainer.errors import IncompatiblePretrained, InvalidDataset
from forja_trainer.trainers.base import TorchTrainer
from forja_trainer.transfer import TransferReport, load_pretrained_state, transfer_compatible

__all__ = ["TRAINER", "RestorationHyperparameters", "RestorationTrainer", "psnr"]

log = logging.getLogger(__name__)
HEAD_PREFIXES = ("ending.",)


class RestorationHyperparameters(BaseHyperparameters):
    epochs: int = Field(default=10, ge=1, le=10_000)
    batch_size: int = Field(default=8, ge=1, le=4096)
    lr: float = Field(default=2e-3, gt=0, le=10)
    weight_decay: float = Field(default=0.0, ge=0, le=1)
    image_size: int = Field(default=128, ge=8, le=2048)
    width: int = Field(default=16, ge=4, le=256)
    enc_blocks: int = Field(default=1, ge=1, le=32)
    middle_blocks: int = Field(default=1, ge=1, le=32)
    dec_blocks: int = Field(default=1, ge=1, le=32)
    loss: str = Field(default="l1", pattern="^(l1|mse)$")
    monitor: str = "val_psnr"
    monitor_mode: str = Field(default="max", pattern="^(min|max)$")  # type: ignore[assignment]


def psnr(mse: float) -> float:
    return 10 * math.log10(1.0 / max(mse, 1e-12))


def read_pairs(root: Path, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    degraded_dir, clean_dir = root / "degraded", root / "clean"
    for d in (degraded_dir, clean_dir):
        if not d.is_dir():
            raise InvalidDataset(f"{d} is missing: image-pairs needs degraded/ and clean/")
    degraded_files = list_images(degraded_dir)
    if not degraded_files:
        raise InvalidDataset(f"{degraded_dir} has no images")
    clean_names = {p.name for p in list_images(clean_dir)}
    missing = [p.name for p in degraded_files if p.name not in clean_names]
    if missing:
        raise InvalidDataset(
            f"{len(missing)} degraded images have no clean partner in {clean_dir}, "
            f"e.g. {missing[0]}"
        )
    xs = torch.stack([load_image(p, size) for p in degraded_files])
    ys = torch.stack([load_image(clean_dir / p.name, size) for p in degraded_files])
    return xs, ys


class RestorationTrainer(TorchTrainer[RestorationHyperparameters]):
    name: ClassVar[TrainerName] = TrainerName.RESTORATION_FINETUNE
    task: ClassVar[str] = "restoration"
    hyperparameters_model: ClassVar[type[BaseHyperparameters]] = RestorationHyperparameters
    dataset_formats: ClassVar[frozenset[DatasetFormat]] = frozenset({DatasetFormat.IMAGE_PAIRS})
    distributed: ClassVar[bool] = True

    image_size: int = 0
    transfer_report: TransferReport | None = None
    _val_pairs: tuple[torch.Tensor, torch.Tensor] | None = None

    def build_datasets(self) -> tuple[Dataset[Any], Dataset[Any]]:
        hp = self.hp
        generated = self.ctx.generated_dataset()
        if generated is not None:
            if generated.kind != "restoration-pairs":
                raise InvalidDataset(
                    f"restoration-finetune generates 'restoration-pairs', not {generated.kind!r}",
                    field="spec.dataset.uri",
                )
            n = generated.int_param("n", 64, lo=4, hi=100_000)
            size = generated.int_param("size", hp.image_size, lo=8, hi=1024)
            noise = generated.int_param("noise_pct", 10, lo=1, hi=100) / 100
            x, y = restoration_pairs(n, size, hp.seed, noise)
            k = max(1, round(n * hp.val_fraction))
            xt, yt, xv, yv = x[k:], y[k:], x[:k], y[:k]
        else:
            root = self.ctx.fetch_dataset()
            if (root / "train").is_dir() and (root / "val").is_dir():
                xt, yt = read_pairs(root / "train", hp.image_size)
                xv, yv = read_pairs(root / "val", hp.image_size)
            else:
                x, y = read_pairs(root, hp.image_size)
                if len(x) < 2:
                    raise InvalidDataset(f"{root} has {len(x)} pair(s); at least 2 are needed")
                k = max(1, round(len(x) * hp.val_fraction))
                xt, yt, xv, yv = x[k:], y[k:], x[:k], y[:k]
        self.image_size = int(xt.shape[-1])
        self._val_pairs = (xv, yv)
        return TensorDataset(xt, yt), TensorDataset(xv, yv)

    def arch_config(self) -> dict[str, Any]:
        return {
            "in_channels": 3,
            "width": self.hp.width,
            "enc_blocks": self.hp.enc_blocks,
            "middle_blocks": self.hp.middle_blocks,
            "dec_blocks": self.hp.dec_blocks,
        }

    def build_model(self) -> nn.Module:
        model = architectures.build("simple-nafnet", self.arch_config())
        pretrained = self.ctx.config.pretrained
        if pretrained is None:
            return model
        state = load_pretrained_state(self.ctx.fetch_pretrained())
        report = transfer_compatible(model, state)
        if not report.transferred:
            raise IncompatiblePretrained(
                f"no tensor of {pretrained.uri} matches the model by name and shape "
                f"({report.pretrained_tensors} tensors checked)",
                field="spec.pretrained.uri",
            )
        self.transfer_report = report
        if pretrained.freeze_backbone:
            for name, param in model.named_parameters():
                if not name.startswith(HEAD_PREFIXES):
                    param.requires_grad_(False)
        return model

    def param_groups(self, model: nn.Module) -> list[dict[str, Any]]:
        pretrained = self.ctx.config.pretrained
        head = [p for n, p in model.named_parameters() if n.startswith(HEAD_PREFIXES)]
        backbone = [
            p
            for n, p in model.named_parameters()
            if not n.startswith(HEAD_PREFIXES) and p.requires_grad
        ]
        if pretrained is None:
            return [{"params": backbone + head}]
        groups = [{"params": head, "lr": self.hp.lr, "name": "head"}]
        if backbone:
            groups.insert(
                0,
                {
                    "params": backbone,
                    "lr": self.hp.lr * pretrained.backbone_lr_factor,
                    "name": "backbone",
                },
            )
        return groups

    def training_step(self, model: nn.Module, batch: Any) -> torch.Tensor:
        x, y = batch
        out = model(x)
        if self.hp.loss == "mse":
            return nn.functional.mse_loss(out, y)
        return nn.functional.l1_loss(out, y)

    def evaluate(self, model: nn.Module, loader: Iterable[Any]) -> dict[str, float]:
        l1_sum = mse_sum = psnr_sum = 0.0
        n = 0
        for xb, yb in loader:
            x, y = xb.to(self.ctx.device), yb.to(self.ctx.device)
            out = model(x).clamp(0, 1)
            per_image = ((out - y) ** 2).flatten(1).mean(1)
            mse_sum += float(per_image.sum())
            l1_sum += float((out - y).abs().flatten(1).mean(1).sum())
            psnr_sum += sum(psnr(float(m)) for m in per_image)
            n += len(y)
        loss = l1_sum if self.hp.loss == "l1" else mse_sum
        return {
            "val_loss": loss / max(n, 1),
            "val_mse": mse_sum / max(n, 1),
            "val_psnr": psnr_sum / max(n, 1),
        }

    def baseline_metrics(self) -> dict[str, float]:
        """The identity: returning the degraded image unchanged."""
        if self._val_pairs is None:
            return {}
        x, y = self._val_pairs
        per_image = ((x - y) ** 2).flatten(1).mean(1)
        return {"baseline_psnr": sum(psnr(float(m)) for m in per_image) / len(per_image)}

    def export(self, model: nn.Module, writer: ArtifactWriter) -> None:
        writer.save_state_dict(model)
        writer.architecture = "simple-nafnet"
        s = self.image_size
        writer.inputs = [TensorSpec(name="input", shape=[None, 3, s, s], layout="NCHW")]
        writer.outputs = [TensorSpec(name="output", shape=[None, 3, s, s], layout="NCHW")]
        writer.preprocessing = Preprocessing(resize=[s, s], scale=1 / 255)
        # The server clips the restored image to [0, 1] itself; nothing to say here.
        if self.transfer_report is not None:
            writer.write_json("transfer", "transfer.json", self.transfer_report.as_dict())
        if export_onnx(
            model, torch.zeros(1, 3, s, s), writer.path("model.onnx"), output_names=["output"]
        ):
            writer.add_file("onnx", "model.onnx")


TRAINER = RestorationTrainer
