"""The nine steps of ``distill-qat-tflite``, each reported and checkpointed.

parse-dataset -> pipelines -> teacher -> student -> qat -> thresholds -> export ->
inference-config -> test-metrics (WORKLOADS.md §5).

The first two steps only rebuild in-memory state (seconds) and always run. Every
later step is skipped when ``state.json`` under the checkpoint prefix says it is
done; what it produced is restored from the checkpoint when a later step needs it.
The training steps (teacher, student, qat) also checkpoint after every epoch, so
an attempt killed mid-step resumes at that step, from its last finished epoch
(the optimizer's moments restart; the weights do not).

Across workers (``TF_CONFIG`` names more than one, :mod:`forja_trainer_tf.cluster`)
the training steps run under ``MultiWorkerMirroredStrategy``: every worker reads
the same checkpoint, trains on its shard of each global batch, and the chief
(worker 0) alone writes checkpoints, state and progress; the others save their
copies to a temporary directory and drop them (TensorFlow's documented pattern).
The steps after QAT (thresholds, export, metrics) are not collective: Keras'
``predict`` on a multi-worker model gathers across workers and the TFLite converter
works on one process's graph. So the other workers end after QAT with a Result
without artifact, and the chief runs those steps alone on models rebuilt outside
the strategy from the checkpoint it has just written.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
import threading
import time
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

import forja_storage as storage
from forja_api.artifact import (
    MANIFEST_NAME,
    ArtifactFile,
    ModelManifest,
    Postprocessing,
    Preprocessing,
    TensorSpec,
)
from forja_api.contract import (
    ArtifactRef,
    CheckpointRef,
    IncompatiblePretrained,
    InvalidDataset,
    PretrainedRef,
    Terminated,
)
from forja_trainer_tf import data as data_mod
from forja_trainer_tf.cluster import TFCluster
from forja_trainer_tf.config import DistillQATConfig
from forja_trainer_tf.dataset import MultilabelDataset, Split, load_dataset
from forja_trainer_tf.distill import Distiller
from forja_trainer_tf.export import TFLiteModel, convert_full_integer
from forja_trainer_tf.generate import generate_multilabel_dataset
from forja_trainer_tf.models import build_network, set_backbone_trainable
from forja_trainer_tf.progress import ProgressReporter
from forja_trainer_tf.qat import build_qat_model, with_sigmoid
from forja_trainer_tf.state import STATE_NAME, STEPS, CheckpointStore, StepState
from forja_trainer_tf.tfenv import keras, tf
from forja_trainer_tf.thresholds import multilabel_metrics, search_thresholds, threshold_grid

__all__ = ["RESUME_PREFIX", "PipelineOutcome", "PipelineRun", "PretrainedSource"]

log = logging.getLogger(__name__)
RESUME_PREFIX = "forja-resume "
TRAINER_NAME = "distill-qat-tflite"
TFLITE_NAME = "model_qat_int8.tflite"
# The first step the chief runs alone after the collective (training) steps.
CHIEF_ONLY_FROM = "thresholds"
TEACHER_WEIGHTS = "teacher.weights.h5"
STUDENT_WEIGHTS = "student.weights.h5"
QAT_WEIGHTS = "qat.weights.h5"
OUTPUT_FILES = {
    "weights": TFLITE_NAME,
    "config": "inference_config.json",
    "labels": "labels.txt",
    "metrics": "metrics.json",
    "thresholds": "threshold_recommendation.json",
    "teacher": TEACHER_WEIGHTS,
    "student": STUDENT_WEIGHTS,
}


@dataclass(frozen=True)
class PretrainedSource:
    uri: str
    sha256: str | None = None
    freeze_backbone: bool = False


@dataclass
class PipelineOutcome:
    artifact: ArtifactRef | None
    """None on a worker other than the chief: it trains, the chief publishes."""
    metrics: dict[str, float]
    checkpoint: CheckpointRef
    message: str


class _EpochCheckpoint(keras.callbacks.Callback):  # type: ignore[misc]
    """Save the step's weights and state after each epoch; stop on SIGTERM."""

    def __init__(
        self, run: PipelineRun, step: str, target: keras.Model, weights_name: str, *,
        offset: int, total: int,
    ) -> None:
        super().__init__()
        self.run, self.step, self.target = run, step, target
        self.weights_name, self.offset, self.total = weights_name, offset, total

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        if self.run.stop_event.is_set():
            raise Terminated(
                f"SIGTERM during step {self.step}; resumes from epoch "
                f"{self.run.state.epochs_done_in_step} of it"
            )

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        done = self.offset + epoch + 1
        self.run.save_weights(self.target, self.weights_name)
        self.run.state.current_step = self.step
        self.run.state.epochs_done_in_step = done
        self.run.save_state()
        metrics = {k: float(v) for k, v in (logs or {}).items()}
        self.run.report(self.step, done, self.total, metrics)


@dataclass
class PipelineRun:
    config: DistillQATConfig
    dataset_uri: str
    checkpoints: CheckpointStore
    artifact_uri: str
    workdir: Path
    reporter: ProgressReporter
    pretrained: PretrainedSource | None = None
    stop_event: threading.Event = field(default_factory=threading.Event)
    strategy: Any = None
    cluster: TFCluster = field(default_factory=TFCluster)

    state: StepState = field(default_factory=StepState)
    dataset: MultilabelDataset | None = None
    pipelines: dict[str, Any] = field(default_factory=dict)
    _models: dict[str, Any] = field(default_factory=dict)
    _arrays: dict[str, npt.NDArray[np.float32]] = field(default_factory=dict)
    _train_replicas: int = 0

    # --- plumbing ----------------------------------------------------------------
    @property
    def pretrained_loaded(self) -> PretrainedRef | None:
        """The pretrained weights the teacher started from, with the digest read."""
        loaded = self.state.values.get("pretrained")
        return PretrainedRef.model_validate(loaded) if loaded else None

    @property
    def replicas(self) -> int:
        """Replicas training in sync (every GPU of every worker), as of the training steps."""
        return self._train_replicas or int(self.strategy.num_replicas_in_sync)

    @property
    def global_batch(self) -> int:
        return self.config.batch_size * self.replicas

    @property
    def is_chief(self) -> bool:
        return self.cluster.is_chief

    def report(self, step: str, epoch: int, total: int, metrics: dict[str, float]) -> None:
        ckpt = CheckpointRef(uri=self.checkpoints.uri(STATE_NAME), epoch=epoch)
        self.reporter.report(
            step, epoch, total, metrics, step_index=STEPS.index(step) + 1,
            steps_total=len(STEPS), checkpoint=ckpt, batch_size=self.global_batch,
        )

    def save_weights(self, model: keras.Model, name: str) -> None:
        if not self.is_chief:
            # Every worker saves (the documented MultiWorkerMirroredStrategy pattern:
            # a save may take part in collectives); only the chief's copy is kept.
            with tempfile.TemporaryDirectory(prefix="forja-worker-") as scratch:
                model.save_weights(str(Path(scratch) / name))
            return
        local = self.workdir / "weights" / name
        local.parent.mkdir(parents=True, exist_ok=True)
        model.save_weights(str(local))
        self.checkpoints.put(local, name)

    def save_state(self) -> None:
        """The step state, written by the chief alone; the others read it on resume."""
        if self.is_chief:
            self.checkpoints.save_state(self.state)

    def _finish_step(self, step: str, seconds: float, **values: Any) -> None:
        self.state.values.update(values)
        timings = self.state.values.setdefault("step_seconds", {})
        timings[step] = round(timings.get(step, 0.0) + seconds, 3)
        if step not in self.state.steps_done:
            self.state.steps_done.append(step)
        # Steps 1-2 re-run on every attempt; they must not clear a later step's
        # mid-step position that this attempt is about to resume.
        if self.state.current_step == step:
            self.state.current_step = None
            self.state.epochs_done_in_step = 0
        self.save_state()

    def _config_digest(self) -> str:
        text = json.dumps(self.config.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(f"{text}|{self.dataset_uri}".encode()).hexdigest()

    # --- the run -----------------------------------------------------------------
    def execute(self) -> PipelineOutcome:
        keras.utils.set_random_seed(self.config.seed)
        if self.strategy is None:
            self.strategy = tf.distribute.get_strategy()
        self._train_replicas = int(self.strategy.num_replicas_in_sync)
        loaded = self.checkpoints.load_state()
        digest = self._config_digest()
        if loaded is not None:
            self.state = loaded
            if loaded.config_digest and loaded.config_digest != digest:
                log.warning("configuration changed since the checkpoint; resuming anyway")
            resume = {"step": loaded.resume_step(), "epoch": loaded.epochs_done_in_step,
                      "steps_done": loaded.steps_done}
            print(RESUME_PREFIX + json.dumps(resume), flush=True)
        self.state.config_digest = digest
        self.state.attempts += 1
        self.save_state()

        for step in STEPS:
            if self.stop_event.is_set():
                raise Terminated(f"SIGTERM before step {step}; state is checkpointed")
            if step == CHIEF_ONLY_FROM and self.cluster.multi_worker:
                if not self.is_chief:
                    return self._worker_outcome()
                self._leave_collective()
            if step not in ("parse-dataset", "pipelines") and self.state.done(step):
                log.info("step %s: done in an earlier attempt, skipped", step)
                continue
            start = time.monotonic()
            first_epoch = self.state.epochs_done_in_step if self.state.current_step == step else 0
            self.report(step, first_epoch, self._step_epochs(step), {})
            values = getattr(self, "_step_" + step.replace("-", "_"))() or {}
            self._finish_step(step, time.monotonic() - start, **values)
            total = self._step_epochs(step)
            self.report(step, total, total, {})
        self.reporter.flush()
        return self._upload_artifacts()

    def _worker_outcome(self) -> PipelineOutcome:
        """What a worker other than the chief reports once the collective steps are done."""
        log.info("worker %d of %d: training steps done; the chief exports",
                 self.cluster.index, self.cluster.num_workers)
        return PipelineOutcome(
            artifact=None, metrics={},
            checkpoint=CheckpointRef(uri=self.checkpoints.uri(STATE_NAME),
                                     epoch=STEPS.index(CHIEF_ONLY_FROM)),
            message=(f"worker {self.cluster.index} of {self.cluster.num_workers} trained its "
                     "shard of the teacher, student and QAT steps; worker 0 exports"),
        )

    def _leave_collective(self) -> None:
        """The chief goes on alone: models rebuilt from its checkpoint, outside the strategy.

        A model made in the multi-worker scope would wait in ``predict`` for workers
        that have ended; the weights are the ones the last epoch just checkpointed.
        """
        log.info("chief: collective steps done; %s onwards runs on this worker alone",
                 CHIEF_ONLY_FROM)
        self._models.clear()
        self.strategy = tf.distribute.get_strategy()

    def _step_epochs(self, step: str) -> int:
        cfg = self.config
        frozen = self.pretrained is not None and self.pretrained.freeze_backbone
        return {
            "teacher": cfg.teacher.warmup_epochs + (0 if frozen else cfg.teacher.finetune_epochs),
            "student": cfg.student.epochs,
            "qat": cfg.qat.epochs if cfg.qat.enabled else 1,
        }.get(step, 1)

    # --- steps 1 and 2 -------------------------------------------------------------
    def _step_parse_dataset(self) -> dict[str, Any]:
        root = self._materialise_dataset()
        self.dataset = load_dataset(root, self.config.num_classes)
        sizes = {k: len(v) for k, v in self.dataset.splits.items()}
        return {"class_names": self.dataset.class_names, "split_sizes": sizes}

    def _materialise_dataset(self) -> Path:
        uri = self.dataset_uri
        if uri.startswith("generated://"):
            kind = uri.removeprefix("generated://").strip("/")
            if kind != "multilabel":
                raise InvalidDataset(f"dataset.uri: unknown generated dataset {kind!r}; "
                                   "this trainer knows generated://multilabel")
            root = self.workdir / "dataset-generated"
            if not (root / "test_labels.csv").exists():
                g = self.config.generated
                generate_multilabel_dataset(root, train=g.train, val=g.val, test=g.test,
                                            image_size=g.image_size, classes=g.classes,
                                            seed=self.config.seed)
            return root
        try:
            local = storage.local_path(uri)
            if local is not None:
                return local
            return storage.download(uri, self.workdir / "dataset")
        except storage.ObjectNotFound as exc:
            raise InvalidDataset(f"dataset.uri: nothing at {uri}") from exc

    def _step_pipelines(self) -> None:
        assert self.dataset is not None
        cfg = self.config
        splits = self.dataset.splits
        # Distillation feeds the teacher-size view; the student resizes it in-graph.
        self.pipelines = {
            "teacher_train": data_mod.make_pipeline(
                splits["train"], cfg.teacher.image_size, self.global_batch, training=True,
                aug=cfg.augmentation, seed=cfg.seed),
            "teacher_val": data_mod.make_pipeline(
                splits["val"], cfg.teacher.image_size, self.global_batch, training=False),
            "student_train": data_mod.make_pipeline(
                splits["train"], cfg.student.image_size, self.global_batch, training=True,
                aug=cfg.augmentation, seed=cfg.seed),
        }

    # --- models, restored lazily ---------------------------------------------------
    def _teacher(self) -> keras.Model:
        if "teacher" not in self._models:
            assert self.dataset is not None
            t = self.config.teacher
            with self.strategy.scope():
                model = build_network(t.architecture, t.image_size, self.dataset.num_classes,
                                      dropout=t.dropout, role="teacher")
            if self.checkpoints.has(TEACHER_WEIGHTS):
                model.load_weights(str(self.checkpoints.get(TEACHER_WEIGHTS)))
            elif self.pretrained is not None:
                self._load_pretrained(model)
            self._models["teacher"] = model
        return self._models["teacher"]

    def _load_pretrained(self, model: keras.Model) -> None:
        assert self.pretrained is not None
        try:
            path, digest = storage.fetch_with_digest(self.pretrained.uri, self.pretrained.sha256,
                                                     self.workdir / "cache")
        except storage.ChecksumMismatch as exc:
            raise IncompatiblePretrained(f"pretrained.sha256: {exc}") from exc
        except storage.StorageError as exc:
            raise IncompatiblePretrained(f"pretrained.uri: {exc}") from exc
        # Kept in the step state: an attempt that resumes past the teacher loads no
        # weights, yet its Result must still say what the teacher started from.
        self.state.values["pretrained"] = {"uri": self.pretrained.uri, "sha256": digest}
        try:
            # By layer name, skipping shape mismatches: an ImageNet backbone file
            # fits the backbone and leaves our head alone.
            model.load_weights(str(path), by_name=True, skip_mismatch=True)
        except (ValueError, OSError, ImportError) as exc:
            raise IncompatiblePretrained(f"pretrained.uri: cannot load {path.name}: {exc}") from exc

    def _student(self) -> keras.Model:
        if "student" not in self._models:
            assert self.dataset is not None
            s = self.config.student
            with self.strategy.scope():
                model = build_network(s.architecture, s.image_size, self.dataset.num_classes,
                                      dropout=s.dropout, role="student")
            if self.checkpoints.has(STUDENT_WEIGHTS):
                model.load_weights(str(self.checkpoints.get(STUDENT_WEIGHTS)))
            self._models["student"] = model
        return self._models["student"]

    def _deploy_model(self) -> keras.Model:
        """The model that gets exported: the QAT model, or the float student + sigmoid."""
        if "deploy" not in self._models:
            probs = with_sigmoid(self._student())
            if self.state.values.get("quantization") == "qat":
                with self.strategy.scope():
                    model, _ = build_qat_model(probs)
                model.load_weights(str(self.checkpoints.get(QAT_WEIGHTS)))
                self._models["deploy"] = model
            else:
                self._models["deploy"] = probs
        return self._models["deploy"]

    # --- step 3: teacher -------------------------------------------------------------
    def _step_teacher(self) -> None:
        t = self.config.teacher
        teacher = self._teacher()
        done = self.state.epochs_done_in_step if self.state.current_step == "teacher" else 0
        total = self._step_epochs("teacher")
        finetune = 0 if self.pretrained and self.pretrained.freeze_backbone else t.finetune_epochs
        phases = (("warmup", t.warmup_epochs, t.warmup_lr, False),
                  ("finetune", finetune, t.finetune_lr, True))
        offset, trained = 0, False
        for _, epochs, lr, backbone_trainable in phases:
            if epochs and done < offset + epochs:
                trained = True
                set_backbone_trainable(teacher, backbone_trainable)
                with self.strategy.scope():
                    teacher.compile(optimizer=keras.optimizers.Adam(lr),
                                    loss=keras.losses.BinaryCrossentropy(from_logits=True))
                teacher.fit(
                    self.pipelines["teacher_train"], epochs=epochs,
                    initial_epoch=max(done - offset, 0),
                    validation_data=self.pipelines["teacher_val"], verbose=0,
                    callbacks=[_EpochCheckpoint(self, "teacher", teacher, TEACHER_WEIGHTS,
                                                offset=offset, total=total)],
                )
            offset += epochs
        set_backbone_trainable(teacher, True)
        # Decided from this attempt alone, never from the store the chief is writing:
        # every worker must make the same saves (a save reads synced variables).
        if not trained:
            self.save_weights(teacher, TEACHER_WEIGHTS)

    # --- step 4: student by distillation ------------------------------------------
    def _step_student(self) -> None:
        s, d = self.config.student, self.config.distillation
        done = self.state.epochs_done_in_step if self.state.current_step == "student" else 0
        student, teacher = self._student(), self._teacher()
        with self.strategy.scope():
            distiller = Distiller(student, teacher, alpha=d.alpha, temperature=d.temperature,
                                  student_size=s.image_size)
            distiller.compile(optimizer=keras.optimizers.Adam(s.lr))
        distiller.fit(
            self.pipelines["teacher_train"], epochs=s.epochs, initial_epoch=done,
            validation_data=self.pipelines["teacher_val"], verbose=0,
            callbacks=[_EpochCheckpoint(self, "student", student, STUDENT_WEIGHTS,
                                        offset=0, total=s.epochs)],
        )

    # --- step 5: QAT, or the post-training fallback ------------------------------------
    def _step_qat(self) -> dict[str, Any]:
        q = self.config.qat
        if not q.enabled:
            return {"quantization": "post-training", "qat_error": "disabled by qat.enabled"}
        done = self.state.epochs_done_in_step if self.state.current_step == "qat" else 0
        try:
            with self.strategy.scope():
                model, counts = build_qat_model(with_sigmoid(self._student()))
                model.compile(optimizer=keras.optimizers.Adam(q.lr),
                              loss=keras.losses.BinaryCrossentropy())
            if done and self.checkpoints.has(QAT_WEIGHTS):
                model.load_weights(str(self.checkpoints.get(QAT_WEIGHTS)))
            model.fit(self.pipelines["student_train"], epochs=q.epochs, initial_epoch=done,
                      verbose=0,
                      callbacks=[_EpochCheckpoint(self, "qat", model, QAT_WEIGHTS,
                                                       offset=0, total=q.epochs)])
        except Terminated:
            raise
        except Exception as exc:  # tfmot fails on unsupported graphs: fall back, say so
            log.warning("QAT failed, falling back to post-training quantization: %s", exc)
            self._models.pop("deploy", None)
            return {"quantization": "post-training",
                    "qat_error": f"{type(exc).__name__}: {exc}"[:500]}
        self._models["deploy"] = model
        return {"quantization": "qat", "qat_layers_annotated": counts["annotated"],
                "qat_layers_float": counts["skipped"]}

    # --- step 6: thresholds --------------------------------------------------------
    def _images(self, split: str, size: int, limit: int | None = None
                ) -> npt.NDArray[np.float32]:
        """Decoded images of a split in order (a seeded random subset when ``limit``)."""
        key = f"{split}@{size}/{limit}"
        if key not in self._arrays:
            assert self.dataset is not None
            part = self.dataset.splits[split]
            if limit is not None and limit < len(part):
                rng = np.random.default_rng(self.config.seed)
                picks = np.sort(rng.permutation(len(part))[:limit])
                part = Split(part.name, [part.paths[i] for i in picks], part.targets[picks])
            ds = data_mod.make_pipeline(part, size, 64, training=False, cache=False)
            self._arrays[key] = np.concatenate([x.numpy() for x, _ in ds]).astype(np.float32)
        return self._arrays[key]

    def _targets(self, split: str) -> npt.NDArray[np.float32]:
        assert self.dataset is not None
        return self.dataset.splits[split].targets

    def _step_thresholds(self) -> dict[str, Any]:
        assert self.dataset is not None
        size = self.config.student.image_size
        probs = self._deploy_model().predict(self._images("val", size), batch_size=64, verbose=0)
        t = self.config.thresholds
        result = search_thresholds(self._targets("val"), probs,
                                   threshold_grid(t.start, t.stop, t.step), t.min_improvement)
        rec = result.recommendation(self.dataset.class_names, t.objective)
        self._write_output("threshold_recommendation.json", json.dumps(rec, indent=2))
        return {"thresholds": result.thresholds, "global_threshold": result.global_threshold,
                "val_f1_macro": result.val_f1_macro}

    def _write_output(self, name: str, text: str | bytes) -> Path:
        path = self.workdir / "outputs" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text)
        self.checkpoints.put(path, name)
        return path

    def _output(self, name: str) -> Path:
        path = self.workdir / "outputs" / name
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            storage.download(self.checkpoints.uri(name), path)
        return path

    # --- step 7: TFLite export ------------------------------------------------------
    def _step_export(self) -> dict[str, Any]:
        e = self.config.export
        # Only the representative subset is decoded: a full training split at 240 px
        # would not fit in memory as float32.
        images = self._images("train", self.config.student.image_size,
                              limit=e.representative_samples)
        flat = convert_full_integer(self._deploy_model(), images,
                                    input_type=e.input_type, output_type=e.output_type)
        self._write_output(TFLITE_NAME, flat)
        return {"tflite_bytes": len(flat), "representative_samples": len(images)}

    # --- step 8: inference_config.json, labels.txt ---------------------------------
    def _step_inference_config(self) -> None:
        assert self.dataset is not None
        lite = TFLiteModel(self._output(TFLITE_NAME))
        names = self.dataset.class_names
        size = self.config.student.image_size
        thresholds = self.state.values["thresholds"]
        config = {
            "model_file": TFLITE_NAME,
            "labels_file": "labels.txt",
            "task": "multilabel",
            "class_names": names,
            "input": {"name": "image", "shape": lite.input.shape, "dtype": lite.input.dtype,
                      "scale": lite.input.scale, "zero_point": lite.input.zero_point,
                      "layout": "NHWC"},
            "output": {"name": "probabilities", "shape": lite.output.shape,
                       "dtype": lite.output.dtype, "scale": lite.output.scale,
                       "zero_point": lite.output.zero_point,
                       "meaning": "per-class sigmoid probability after dequantization"},
            "thresholds": dict(zip(names, thresholds, strict=True)),
            "default_threshold": self.state.values["global_threshold"],
            "preprocessing": {
                "color": "RGB", "resize": [size, size], "interpolation": "bilinear",
                "pixel_range": [0, 255],
                "quantize": "q = clip(round(pixel / input.scale + input.zero_point))",
            },
            "postprocessing": {
                "dequantize": "p = (q - output.zero_point) * output.scale",
                "decision": "label present when p >= thresholds[label]",
            },
            "quantization": self.state.values.get("quantization"),
        }
        self._write_output("inference_config.json", json.dumps(config, indent=2))
        self._write_output("labels.txt", "\n".join(names) + "\n")

    # --- step 9: test metrics ------------------------------------------------------
    def _step_test_metrics(self) -> dict[str, Any]:
        thresholds = np.asarray(self.state.values["thresholds"])
        y = self._targets("test")
        s_size, t_size = self.config.student.image_size, self.config.teacher.image_size
        lite = TFLiteModel(self._output(TFLITE_NAME))
        int8 = multilabel_metrics(y, lite.predict(self._images("test", s_size)), thresholds)
        student_logits = self._student().predict(self._images("test", s_size), verbose=0)
        student = multilabel_metrics(y, _sigmoid(student_logits), thresholds)
        # The exported graph in float arithmetic (fake-quant for QAT): the int8
        # model's gap to this is the conversion's error alone.
        deploy_probs = self._deploy_model().predict(self._images("test", s_size), verbose=0)
        deployed_float = multilabel_metrics(y, deploy_probs, thresholds)
        teacher_logits = self._teacher().predict(self._images("test", t_size), verbose=0)
        teacher = multilabel_metrics(y, _sigmoid(teacher_logits), 0.5)
        trivial = max(multilabel_metrics(y, np.zeros_like(y), 0.5)["f1_macro"],
                      multilabel_metrics(y, np.ones_like(y), 0.5)["f1_macro"])
        summary = {"test_int8": int8, "test_float_student": student,
                   "test_deployed_float": deployed_float, "test_teacher": teacher,
                   "test_trivial_f1_macro": trivial}
        return {"test": summary}

    # --- outputs -------------------------------------------------------------------
    def flat_metrics(self) -> dict[str, float]:
        test = self.state.values.get("test", {})
        out = {f"test_{k}": v for k, v in test.get("test_int8", {}).items()}
        out["float_student_test_f1_macro"] = test.get("test_float_student", {}).get("f1_macro",
                                                                                    0.0)
        out["deployed_float_test_f1_macro"] = test.get("test_deployed_float", {}).get(
            "f1_macro", 0.0)
        out["teacher_test_f1_macro"] = test.get("test_teacher", {}).get("f1_macro", 0.0)
        out["val_f1_macro"] = float(self.state.values.get("val_f1_macro", 0.0))
        out["qat_applied"] = 1.0 if self.state.values.get("quantization") == "qat" else 0.0
        return {k: round(float(v), 6) for k, v in out.items()}

    def _metrics_document(self) -> dict[str, Any]:
        v = self.state.values
        return {
            "trainer": TRAINER_NAME,
            "quantization": v.get("quantization"),
            "qat_error": v.get("qat_error"),
            "summary": self.flat_metrics(),
            "test": v.get("test"),
            "validation": {"f1_macro": v.get("val_f1_macro"),
                           "global_threshold": v.get("global_threshold")},
            "step_seconds": v.get("step_seconds"),
            "split_sizes": v.get("split_sizes"),
            "global_batch_size": self.global_batch,
            "replicas": self.replicas,
            "workers": self.cluster.num_workers,
            "attempts": self.state.attempts,
        }

    def _upload_artifacts(self) -> PipelineOutcome:
        assert self.dataset is not None
        self._write_output("metrics.json", json.dumps(self._metrics_document(), indent=2))
        files: dict[str, ArtifactFile] = {}
        for role, name in OUTPUT_FILES.items():
            local = self._output(name) if role not in ("teacher", "student") else (
                self.checkpoints.get(name))
            storage.upload(local, storage.join(self.artifact_uri, name))
            files[role] = ArtifactFile(path=name, sha256=storage.sha256_file(local),
                                       size=local.stat().st_size)
        config = json.loads(self._output("inference_config.json").read_text())
        manifest = ModelManifest(
            format="tflite", task="multilabel", files=files,
            class_names=self.dataset.class_names,
            inputs=[TensorSpec(name="image", shape=config["input"]["shape"],
                               dtype=config["input"]["dtype"], layout="NHWC")],
            outputs=[TensorSpec(name="probabilities", shape=config["output"]["shape"],
                                dtype=config["output"]["dtype"])],
            # Quantization scales and zero points stay in inference_config.json: the
            # server reads them from the .tflite itself.
            preprocessing=Preprocessing(resize=config["preprocessing"]["resize"]),
            postprocessing=Postprocessing(thresholds=config["thresholds"]),
            metrics=self.flat_metrics(), trainer=TRAINER_NAME, framework=_framework_versions(),
        )
        data = manifest.to_json().encode()
        manifest_uri = storage.join(self.artifact_uri, MANIFEST_NAME)
        storage.upload_bytes(data, manifest_uri)  # last: its presence means complete
        message = "trained, quantization-aware trained and exported to full-integer TFLite"
        if self.state.values.get("quantization") != "qat":
            message = ("QAT failed or was disabled; fell back to post-training quantization "
                       f"({self.state.values.get('qat_error')})")
        return PipelineOutcome(
            artifact=ArtifactRef(uri=manifest_uri, sha256=hashlib.sha256(data).hexdigest(),
                                 size=len(data), format="tflite", task="multilabel"),
            metrics=self.flat_metrics(),
            checkpoint=CheckpointRef(uri=self.checkpoints.uri(STATE_NAME), epoch=len(STEPS)),
            message=message,
        )


def _sigmoid(x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    return (1.0 / (1.0 + np.exp(-x))).astype(np.float32)


def _framework_versions() -> dict[str, str]:
    out = {}
    for dist in ("tensorflow", "tf_keras", "tensorflow-model-optimization"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            continue
    return out
