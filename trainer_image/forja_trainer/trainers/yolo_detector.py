"""``yolo-detector``: Ultralytics YOLO detection trained from a model yaml, offline.

Dataset (format ``yolo``): see :mod:`forja_trainer.yolo.dataset`. The model is
built from ``model`` (an Ultralytics model yaml such as ``yolov8n.yaml``,
default) with random weights; a pretrained state dict (already fetched and
sha256-verified by the runtime; a digest is required) is transferred into it by
name and shape.

Nothing from outside the process is unpickled: pretrained weights and resume
checkpoints are read with ``torch.load(weights_only=True)`` into the model the
yaml builds (:mod:`forja_trainer.yolo.weights`); a pickled Ultralytics ``.pt`` is
refused with how to convert it. Checkpoints are written in that tensors-only form.
The artifact's ``best.pt`` is Ultralytics' own (for Ultralytics users); the
server loads the ONNX export.
"""

from __future__ import annotations

import importlib.util
import shutil
import signal
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator

import forja_storage as storage
from forja_api.artifact import Postprocessing, Preprocessing, TensorSpec
from forja_api.contract import (
    BEST_CHECKPOINT,
    LAST_CHECKPOINT,
    CheckpointRef,
    Progress,
    refuse_foreign_resume,
)
from forja_api.v1alpha1.trainingjob import DatasetFormat, TrainerName
from forja_storage.checkpoints import verify_resume, write_pointer
from forja_trainer.config import BaseHyperparameters
from forja_trainer.context import STORAGE_ERRORS, is_transient
from forja_trainer.errors import IncompatiblePretrained, InvalidConfig, InvalidDataset, Terminated
from forja_trainer.retry import with_retries
from forja_trainer.trainers.base import Trainer, TrainingOutcome
from forja_trainer.yolo.callbacks import CheckpointHook, EpochHook, StopCheck, attach, forja_metrics
from forja_trainer.yolo.dataset import YoloDataset, YoloDatasetError, validate_dataset
from forja_trainer.yolo.offline import import_ultralytics
from forja_trainer.yolo.synthetic import CLASS_COLOURS, make_yolo_dataset
from forja_trainer.yolo.weights import (
    NotTensorsOnlyError,
    load_tensors,
    restore,
    resume_state,
    state_dict_of,
    transfer,
)

__all__ = [
    "GENERATED_KIND",
    "TRAINER",
    "YoloDetectorTrainer",
    "YoloHyperparameters",
    "YoloOutcome",
    "evaluate_untrained",
    "train_yolo",
]

GENERATED_KIND = "yolo-boxes"


class YoloHyperparameters(BaseHyperparameters):
    """Ultralytics' own loop runs this trainer: of the shared settings it uses epochs,
    batch_size, seed, lr (as ``lr0``, only when set) and early_stopping_patience."""

    model: str = Field(default="yolov8n.yaml", pattern=r"^[A-Za-z0-9_.-]+\.yaml$")
    """An Ultralytics model yaml shipped with the package (trained from scratch)."""
    epochs: int = Field(default=10, ge=1, le=10_000)
    batch_size: int = Field(default=8, ge=1, le=1024)
    imgsz: int = Field(default=128, ge=32, le=4096)
    optimizer: Literal["auto", "SGD", "Adam", "AdamW"] = "auto"
    warmup_epochs: float = Field(default=1.0, ge=0, le=100)
    mosaic: float = Field(default=0.0, ge=0, le=1)
    """Off by default: on small datasets mosaic slows the first epochs' learning."""
    export_onnx: bool = True
    baseline: bool = True
    """Also validate the untrained architecture, the trivial baseline (``baseline_*``)."""

    @field_validator("imgsz")
    @classmethod
    def _stride_multiple(cls, v: int) -> int:
        if v % 32:
            raise ValueError(f"imgsz must be a multiple of 32 (YOLO's max stride), got {v}")
        return v

    def train_args(self) -> dict[str, Any]:
        """Ultralytics ``train()`` arguments: forja's offline and CPU-friendly defaults."""
        args: dict[str, Any] = {
            "epochs": self.epochs,
            "batch": self.batch_size,
            "imgsz": self.imgsz,
            "optimizer": self.optimizer,
            "warmup_epochs": self.warmup_epochs,
            "mosaic": self.mosaic,
            "close_mosaic": 0,
            "patience": self.early_stopping_patience or self.epochs + 1,
            "seed": self.seed,
            "deterministic": self.deterministic,
            "pretrained": False,  # never fetch default weights
            "amp": False,  # the AMP check downloads a model
            "plots": False,  # plotting checks fonts online
            "workers": 0,
            "verbose": False,
        }
        if "lr" in self.model_fields_set:
            args["lr0"] = self.lr
        return args


@dataclass
class YoloOutcome:
    best: Path
    last: Path
    dataset: YoloDataset
    metrics: dict[str, float]
    onnx: Path | None = None
    history: list[dict[str, float]] = field(default_factory=list)


def _onnxslim_installed() -> bool:
    return importlib.util.find_spec("onnxslim") is not None


def evaluate_untrained(data_root: Path, workdir: Path, hp: YoloHyperparameters) -> dict[str, float]:
    """The trivial baseline: validation metrics of the same architecture with random weights."""
    dataset = validate_dataset(data_root, workdir / "forja-data.yaml")
    import_ultralytics(workdir / "ultralytics-config")
    from ultralytics import YOLO  # type: ignore[attr-defined]  # noqa: PLC0415 - after the offline setup

    results = YOLO(hp.model).val(
        data=str(dataset.data_yaml),
        imgsz=hp.imgsz,
        batch=hp.batch_size,
        workers=0,
        plots=False,
        device="cpu",
        verbose=False,
        project=str(workdir / "runs"),
        name="baseline",
        exist_ok=True,
    )
    return forja_metrics(dict(results.results_dict))


def train_yolo(
    data_root: Path,
    workdir: Path,
    hp: YoloHyperparameters,
    *,
    device: str = "cpu",
    pretrained: Path | None = None,
    resume_from: Path | None = None,
    on_epoch: EpochHook | None = None,
    on_checkpoint: CheckpointHook | None = None,
    should_stop: StopCheck | None = None,
) -> YoloOutcome:
    """Validate the dataset, train (or resume from ``last.pt``), export ONNX."""
    dataset = validate_dataset(data_root, workdir / "forja-data.yaml")
    import_ultralytics(workdir / "ultralytics-config")
    from ultralytics import YOLO  # type: ignore[attr-defined]  # noqa: PLC0415 - after the offline setup

    history: list[dict[str, float]] = []

    def record(epoch: int, total: int, metrics: dict[str, float]) -> None:
        history.append({"epoch": float(epoch), **metrics})
        if on_epoch is not None:
            on_epoch(epoch, total, metrics)

    # The architecture comes from the trusted yaml; files only bring tensors.
    model = YOLO(hp.model)
    ckpt: dict[str, Any] | None = None
    args = hp.train_args()
    if resume_from is not None or pretrained is not None:
        from ultralytics.nn.tasks import DetectionModel  # noqa: PLC0415 - after the offline setup

        net: Any = DetectionModel(cfg=hp.model, nc=len(dataset.names), verbose=False)  # type: ignore[no-untyped-call]
        if resume_from is not None:
            ckpt = resume_state(load_tensors(resume_from, "the resume checkpoint"), "checkpoint")
            try:
                net.load_state_dict(ckpt["model"])
            except RuntimeError as exc:  # another architecture or class count
                first = str(exc).splitlines()[0][:200]
                raise NotTensorsOnlyError(
                    f"the checkpoint does not fit {hp.model}: {first}"
                ) from None
        else:
            assert pretrained is not None
            state = state_dict_of(load_tensors(pretrained, "the pretrained weights"), "pretrained")
            if not transfer(net, state):
                raise NotTensorsOnlyError(f"pretrained weights: no tensor fits {hp.model}")
        # train() seeds its model from this one (by name and shape) instead of a fresh
        # build; pretrained=False would discard it (no file is named, none is fetched).
        seeded: Any = model  # Ultralytics types .model as its yaml name
        seeded.model, seeded.ckpt = net, {"model": net}
        args["pretrained"] = True
    attach(model, on_epoch=record, on_checkpoint=on_checkpoint, should_stop=should_stop)
    if ckpt is not None:
        resumed = ckpt
        model.add_callback("on_pretrain_routine_end", lambda trainer: restore(trainer, resumed))
    model.train(
        data=str(dataset.data_yaml),
        device=device,
        project=str(workdir / "runs"),
        name="train",
        exist_ok=True,
        **args,
    )
    trainer = model.trainer
    assert trainer is not None
    best, last = Path(trainer.best), Path(trainer.last)
    if not best.exists():
        best = last
    metrics = forja_metrics(dict(trainer.metrics or {}))
    outcome = YoloOutcome(best=best, last=last, dataset=dataset, metrics=metrics, history=history)
    if hp.export_onnx and not (should_stop is not None and should_stop()):
        # Tracing the detect head warns about Python booleans of tensors (shape checks
        # Ultralytics makes on purpose); where warnings are errors that would abort export.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            exported = YOLO(str(best)).export(
                format="onnx",
                imgsz=hp.imgsz,
                simplify=_onnxslim_installed(),
                dynamic=False,
                device="cpu",
                verbose=False,
            )
        outcome.onnx = Path(exported)
    return outcome


class YoloDetectorTrainer(Trainer[YoloHyperparameters]):
    """Drives Ultralytics' loop; forja supplies data, checkpoints, progress and the artifact.

    ``generated://yolo-boxes?train=64&val=16&size=64&classes=1`` makes the dataset.
    Checkpoints: every Ultralytics save uploads ``last.pt`` (and ``best.pt`` when it
    improved) to the job's checkpoint prefix; a new attempt resumes from
    ``FORJA_RESUME_FROM`` with Ultralytics' own resume. On SIGTERM the epoch in
    progress ends at the next batch, is saved and uploaded, and the trainer exits 143.
    """

    name: ClassVar[TrainerName] = TrainerName.YOLO_DETECTOR
    task: ClassVar[str] = "detection"
    hyperparameters_model: ClassVar[type[BaseHyperparameters]] = YoloHyperparameters
    dataset_formats: ClassVar[frozenset[DatasetFormat]] = frozenset({DatasetFormat.YOLO})
    artifact_format: ClassVar[str] = "ultralytics"

    last_checkpoint: CheckpointRef | None = None

    def _dataset(self) -> Path:
        generated = self.ctx.generated_dataset()
        if generated is None:
            return self.ctx.fetch_dataset()
        if generated.kind != GENERATED_KIND:
            raise InvalidDataset(
                f"yolo-detector generates {GENERATED_KIND!r}, not {generated.kind!r}",
                field="spec.dataset.uri",
            )
        classes = generated.int_param("classes", 1, lo=1, hi=len(CLASS_COLOURS))
        return make_yolo_dataset(
            self.ctx.data_dir / "generated",
            train=generated.int_param("train", 64, lo=1, hi=100_000),
            val=generated.int_param("val", 16, lo=1, hi=100_000),
            size=generated.int_param("size", self.hp.imgsz, lo=32, hi=4096),
            names=tuple(f"class{i}" for i in range(classes)) if classes > 1 else ("box",),
            seed=self.hp.seed,
        )

    def _resume_file(self) -> Path | None:
        uri = self.ctx.config.resume_from
        if not uri:
            return None
        if not uri.endswith(".pt"):
            uri = storage.join(uri, LAST_CHECKPOINT)
        prefix = self.ctx.config.checkpoint_uri
        refuse_foreign_resume(uri, prefix)
        local = self.ctx.checkpoint_dir / "resume-last.pt"
        with_retries(
            lambda: storage.download(uri, local),
            what=f"downloading the checkpoint {uri}",
            errors=STORAGE_ERRORS,
            retry_if=is_transient,
            attempts=self.hp.max_recoverable_retries + 1,
        )
        # Only this job's checkpoint, with its recorded digest (and loaded as tensors).
        verify_resume(local, uri, self.ctx.config.resume_sha256, prefix)
        return local

    def _upload_checkpoint(self, last: Path, best: Path | None, epoch: int, is_best: bool) -> None:
        base = self.ctx.config.checkpoint_uri
        uri = storage.join(base, LAST_CHECKPOINT)
        attempts = self.hp.max_recoverable_retries + 1
        with_retries(
            lambda: storage.upload(last, uri),
            what="uploading last.pt",
            errors=STORAGE_ERRORS,
            retry_if=is_transient,
            attempts=attempts,
        )
        if is_best and best is not None:
            with_retries(
                lambda: storage.upload(best, storage.join(base, BEST_CHECKPOINT)),
                what="uploading best.pt",
                errors=STORAGE_ERRORS,
                retry_if=is_transient,
                attempts=attempts,
            )
        self.last_checkpoint = CheckpointRef(uri=uri, epoch=epoch, sha256=storage.sha256_file(last))
        ref = self.last_checkpoint
        with_retries(
            lambda: write_pointer(base, ref),
            what="writing the checkpoint pointer",
            errors=STORAGE_ERRORS,
            retry_if=is_transient,
            attempts=attempts,
        )

    def _report(self, epoch: int, total: int, metrics: dict[str, float]) -> None:
        self.ctx.progress.report(
            Progress(
                epoch=epoch,
                total_epochs=total,
                metrics=metrics,
                checkpoint=self.last_checkpoint,
                batch_size=self.hp.batch_size,
            )
        )

    def run(self) -> TrainingOutcome:
        ctx, hp = self.ctx, self.hp
        data = self._dataset()
        # Loaded as tensors either way (yolo/weights.py); an unpinned file's digest is
        # recorded in the Result, so the lineage says what was trained from.
        pretrained = ctx.fetch_pretrained() if ctx.config.pretrained is not None else None
        work = ctx.workdir / "yolo"
        try:
            outcome = train_yolo(
                data,
                work,
                hp,
                device="cpu" if ctx.device.type == "cpu" else str(ctx.device.index or 0),
                pretrained=pretrained,
                resume_from=self._resume_file(),
                on_epoch=self._report,
                on_checkpoint=self._upload_checkpoint,
                should_stop=lambda: ctx.stop.requested,
            )
        except YoloDatasetError as exc:
            raise InvalidDataset(str(exc), field="spec.dataset.uri") from exc
        except NotTensorsOnlyError as exc:
            if ctx.config.resume_from:
                raise InvalidConfig(str(exc), field="resumeFrom") from exc
            raise IncompatiblePretrained(str(exc), field="spec.pretrained.uri") from exc
        if ctx.stop.requested:
            raise Terminated(signum=ctx.stop.signum or signal.SIGTERM)
        metrics = dict(outcome.metrics)
        if hp.baseline:
            base = evaluate_untrained(data, work, hp)
            metrics.update({f"baseline_{k}": v for k, v in base.items() if k != "fitness"})
        metrics["epochs_trained"] = float(len(outcome.history))
        writer = self.artifact_writer()
        writer.metrics = metrics
        shutil.copyfile(outcome.best, writer.add_file("weights", "best.pt"))
        if outcome.onnx is not None:
            shutil.copyfile(outcome.onnx, writer.add_file("onnx", "model.onnx"))
        writer.write_labels(outcome.dataset.names)
        writer.write_json("history", "history.json", outcome.history)
        writer.inputs = [
            TensorSpec(name="images", shape=[None, 3, hp.imgsz, hp.imgsz], layout="NCHW")
        ]
        writer.outputs = [
            TensorSpec(name="output0", shape=[None, 4 + len(outcome.dataset.names), None])
        ]
        writer.preprocessing = Preprocessing(
            resize=[hp.imgsz, hp.imgsz], letterbox=True, scale=1 / 255
        )
        # The server always applies per-class NMS to detector outputs.
        writer.postprocessing = Postprocessing(confidence=0.25, iou=0.7)
        writer.arch_config = {"model": hp.model, "imgsz": hp.imgsz}
        artifact = self.publish(writer)
        return TrainingOutcome(artifact=artifact, metrics=metrics, checkpoint=self.last_checkpoint)


TRAINER = YoloDetectorTrainer
