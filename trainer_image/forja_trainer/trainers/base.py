"""What a trainer is: :class:`Trainer` (any training procedure) and :class:`TorchTrainer`
(a model, data and a loss, trained by the shared loop and callbacks).

A trainer that drives its own loop (Ultralytics) subclasses :class:`Trainer` and
implements :meth:`Trainer.run` with the context's services (progress, checkpoint
URIs, artifact writer). Most subclass :class:`TorchTrainer` and only say how to
build their data, model, loss, metrics and artifact.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, TypeVar

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

import forja_storage as storage
from forja_api.contract import ArtifactRef, CheckpointRef, refuse_foreign_resume
from forja_api.v1alpha1.trainingjob import DatasetFormat, TrainerName
from forja_storage.checkpoints import verify_resume
from forja_trainer.artifacts import ArtifactWriter
from forja_trainer.callbacks import (
    Callback,
    EarlyStopping,
    GradientClipping,
    MetricsHistory,
    ModelCheckpoint,
    ProgressCallback,
)
from forja_trainer.callbacks.model_checkpoint import load_checkpoint
from forja_trainer.config import BaseHyperparameters
from forja_trainer.context import STORAGE_ERRORS, TrainingContext, is_transient
from forja_trainer.errors import InvalidConfig
from forja_trainer.loop import FitLoop
from forja_trainer.optim import build_optimizer, build_scheduler
from forja_trainer.retry import with_retries

__all__ = ["TorchTrainer", "Trainer", "TrainingOutcome"]

log = logging.getLogger(__name__)
H = TypeVar("H", bound=BaseHyperparameters)

Batch = Any


@dataclass
class TrainingOutcome:
    artifact: ArtifactRef | None
    """None on the ranks other than 0 of a multi-worker attempt: rank 0 publishes."""
    metrics: dict[str, float] = field(default_factory=dict)
    checkpoint: CheckpointRef | None = None
    stop_reason: str = "completed"


class Trainer(ABC, Generic[H]):
    """One built-in trainer. Subclasses set the class attributes and implement run()."""

    name: ClassVar[TrainerName]
    task: ClassVar[str]
    """The manifest's task: verification, classification, restoration, detection..."""
    hyperparameters_model: ClassVar[type[BaseHyperparameters]] = BaseHyperparameters
    dataset_formats: ClassVar[frozenset[DatasetFormat]] = frozenset()
    """Accepted spec.dataset.format values besides ``generated``."""
    artifact_format: ClassVar[str] = "torch-state-dict"
    distributed: ClassVar[bool] = False
    """Runs data-parallel across the pods of a multi-worker attempt (WORLD_SIZE > 1);
    forja_api's DISTRIBUTED_TRAINERS lists the same trainers for the CRD."""

    def __init__(self, ctx: TrainingContext[H]) -> None:
        self.ctx = ctx
        self.hp: H = ctx.hp

    @abstractmethod
    def run(self) -> TrainingOutcome:
        """Train, write the artifact, and say what came of it."""

    def artifact_writer(self) -> ArtifactWriter:
        return ArtifactWriter(
            self.ctx.artifact_dir,
            self.ctx.config.artifact_uri,
            format=self.artifact_format,
            task=self.task,
            trainer=str(self.name),
        )

    def publish(self, writer: ArtifactWriter) -> ArtifactRef:
        return with_retries(
            writer.publish,
            what="uploading the model artifact",
            errors=STORAGE_ERRORS,
            retry_if=is_transient,
            attempts=self.hp.max_recoverable_retries + 1,
        )


class TorchTrainer(Trainer[H]):
    """A model trained by :class:`FitLoop`. Implement the abstract hooks below."""

    recoverable_errors: ClassVar[tuple[type[BaseException], ...]] = (
        storage.StorageError,
        ConnectionError,
        TimeoutError,
    )
    """Errors inside an epoch worth retrying in-process (e.g. a dataset read from a store)."""

    def __init__(self, ctx: TrainingContext[H]) -> None:
        super().__init__(ctx)
        self._train: Dataset[Any] | None = None
        self._val: Dataset[Any] | None = None
        self.loop: FitLoop | None = None
        self.checkpoint: ModelCheckpoint | None = None
        self.history: MetricsHistory | None = None

    # --- what a trainer says ----------------------------------------------------------

    @abstractmethod
    def build_datasets(self) -> tuple[Dataset[Any], Dataset[Any]]:
        """Validate and load (or generate) the data: (train, validation).
        Raise :class:`InvalidDataset` naming the file or field on bad data."""

    @abstractmethod
    def build_model(self) -> nn.Module:
        """The architecture (from ``forja_architectures``), randomly initialised."""

    @abstractmethod
    def training_step(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        """The loss of one batch (already on the device)."""

    @abstractmethod
    def evaluate(self, model: nn.Module, loader: Iterable[Batch]) -> dict[str, float]:
        """Validation metrics over the loader, named ``val_*`` (``val_loss`` at least).
        Runs under ``torch.no_grad()`` with the model in eval mode."""

    @abstractmethod
    def export(self, model: nn.Module, writer: ArtifactWriter) -> None:
        """Write the weights (and ONNX when exact) and fill the manifest fields."""

    def arch_config(self) -> dict[str, Any]:
        """Constructor arguments of the architecture (saved in checkpoints and the manifest)."""
        return {}

    def baseline_metrics(self) -> dict[str, float]:
        """What a trivial predictor scores on the validation set (``baseline_*``)."""
        return {}

    def param_groups(self, model: nn.Module) -> list[dict[str, Any]]:
        return [{"params": [p for p in model.parameters() if p.requires_grad]}]

    def configure_callbacks(self) -> list[Callback]:
        hp = self.hp
        ctx = self.ctx
        if ctx.world.is_primary:  # rank 0 alone writes checkpoints
            self.checkpoint = ModelCheckpoint(
                ctx.checkpoint_dir,
                ctx.config.checkpoint_uri,
                monitor=hp.monitor,
                mode=hp.monitor_mode,
                interval_epochs=ctx.config.checkpointing.interval_epochs,
                keep=ctx.config.checkpointing.keep,
                upload_attempts=hp.max_recoverable_retries + 1,
            )
        self.history = MetricsHistory(
            ctx.workdir / "history", title=f"{self.name} {ctx.config.name}"
        )
        callbacks: list[Callback] = [
            self.history,
            EarlyStopping(
                hp.monitor,
                hp.monitor_mode,
                patience=hp.early_stopping_patience,
                min_delta=hp.early_stopping_min_delta,
            ),
            *([self.checkpoint] if self.checkpoint is not None else []),
            ProgressCallback(ctx.progress),
        ]
        if hp.grad_clip_norm is not None:
            callbacks.append(GradientClipping(hp.grad_clip_norm))
        return callbacks

    # --- data plumbing (override when a batch is not a tensor or tuple of tensors) ---

    def collate_fn(self) -> Any:
        return None

    def train_dataset(self) -> Dataset[Any]:
        if self._train is None:
            raise RuntimeError("build_datasets() has not run")
        return self._train

    def val_dataset(self) -> Dataset[Any]:
        if self._val is None:
            raise RuntimeError("build_datasets() has not run")
        return self._val

    def sample_groups(self) -> np.ndarray | None:
        """A group id per training sample that each epoch's order keeps together (see
        :class:`~forja_trainer.loop.EpochSampler`), or None for a plain permutation:
        the training dataset's own ``sample_groups()`` where it has one (GeoTIFF
        patches group by the raster block they read)."""
        groups = getattr(self.train_dataset(), "sample_groups", None)
        return groups() if callable(groups) else None

    def train_loader(self, sampler: Sampler[int], batch_size: int) -> DataLoader[Any]:
        gen = torch.Generator().manual_seed(self.hp.seed)
        return DataLoader(
            self.train_dataset(),
            batch_size=batch_size,
            sampler=sampler,
            num_workers=self.hp.num_workers,
            collate_fn=self.collate_fn(),
            generator=gen,
            pin_memory=self.ctx.device.type == "cuda",
        )

    def val_loader(self, batch_size: int) -> DataLoader[Any]:
        return DataLoader(
            self.val_dataset(),
            batch_size=max(batch_size, 1),
            shuffle=False,
            num_workers=self.hp.num_workers,
            collate_fn=self.collate_fn(),
        )

    def transfer(self, batch: Batch, device: torch.device) -> Batch:
        if isinstance(batch, torch.Tensor):
            return batch.to(device, non_blocking=True)
        if isinstance(batch, Mapping):
            return {k: self.transfer(v, device) for k, v in batch.items()}
        if isinstance(batch, Sequence) and not isinstance(batch, str):
            return type(batch)(self.transfer(v, device) for v in batch)  # type: ignore[call-arg]
        return batch

    def batch_length(self, batch: Batch) -> int:
        if isinstance(batch, torch.Tensor):
            return int(batch.shape[0])
        if isinstance(batch, Mapping):
            return self.batch_length(next(iter(batch.values())))
        return self.batch_length(batch[0])

    # --- the procedure ------------------------------------------------------------------

    def run(self) -> TrainingOutcome:
        ctx = self.ctx
        self._train, self._val = self.build_datasets()
        model = self.build_model().to(ctx.device)
        optimizer = build_optimizer(self.param_groups(model), self.hp)
        scheduler = build_scheduler(optimizer, self.hp)
        loop = FitLoop(self, model, optimizer, scheduler, self.configure_callbacks())
        self.loop = loop
        if ctx.config.resume_from:
            # Every rank loads the same checkpoint, verified against the same digest.
            loop.restore(self._fetch_resume(ctx.config.resume_from))
        loop.run()
        if not ctx.world.is_primary:
            log.info("rank %d done; rank 0 publishes the artifact", ctx.world.rank)
            return TrainingOutcome(
                artifact=None, metrics=dict(loop.state.last_metrics), stop_reason=loop.stop_reason
            )
        best = self.checkpoint.best_state_dict() if self.checkpoint else None
        if best is not None:
            model.load_state_dict(best)
        model.eval()
        with torch.no_grad():
            metrics = {
                k: float(v)
                for k, v in self.evaluate(model, self.val_loader(self.hp.batch_size)).items()
            }
        metrics.update(self.baseline_metrics())
        if self.checkpoint and self.checkpoint.best_epoch is not None:
            metrics["best_epoch"] = float(self.checkpoint.best_epoch)
        metrics["epochs_trained"] = float(loop.state.epoch)
        writer = self.artifact_writer()
        writer.arch_config = self.arch_config()
        writer.metrics = metrics
        if self.history is not None:
            for role, path in (
                ("history", self.history.history_path),
                ("curve", self.history.curve_path),
            ):
                if path.is_file():
                    target = writer.add_file(role, path.name)
                    target.write_bytes(path.read_bytes())
        self.export(model.cpu(), writer)
        artifact = self.publish(writer)
        return TrainingOutcome(
            artifact=artifact,
            metrics=metrics,
            checkpoint=loop.last_checkpoint,
            stop_reason=loop.stop_reason,
        )

    def _fetch_resume(self, uri: str) -> dict[str, Any]:
        if not uri.endswith(".pt"):
            uri = storage.join(uri, "last.pt")
        refuse_foreign_resume(uri, self.ctx.config.checkpoint_uri)
        local = self.ctx.checkpoint_dir / "resume.pt"
        with_retries(
            lambda: storage.download(uri, local),
            what=f"downloading the checkpoint {uri}",
            errors=STORAGE_ERRORS,
            retry_if=is_transient,
            attempts=self.hp.max_recoverable_retries + 1,
        )
        # Before any unpickling: only this job's checkpoint, with the digest it was written with.
        verify_resume(local, uri, self.ctx.config.resume_sha256, self.ctx.config.checkpoint_uri)
        try:
            payload = load_checkpoint(local)
        except Exception as exc:
            raise InvalidConfig(f"cannot resume from {uri}: {exc}", field="resumeFrom") from exc
        if payload.get("trainer") not in (None, str(self.name)):
            raise InvalidConfig(
                f"checkpoint {uri} was written by trainer {payload.get('trainer')!r}",
                field="resumeFrom",
            )
        return payload
