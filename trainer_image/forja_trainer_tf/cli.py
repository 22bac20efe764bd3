"""Entry point of the TF trainer image: ``python -m forja_trainer_tf``.

Reads the pod contract (``FORJA_SPEC`` and friends, forja_api.contract), runs the
pipeline, writes the :class:`~forja_api.contract.Result` to the termination
message file and exits with the contract's code, as the PyTorch trainer does
(``FORJA_TERMINATION_MESSAGE_PATH`` overrides the termination message path for local
runs); ``FORJA_WORKDIR`` sets the scratch directory (default: a fresh temporary one).
With a ``TF_CONFIG`` naming more than one worker it trains as one of them under
``MultiWorkerMirroredStrategy`` (:mod:`forja_trainer_tf.cluster`, pipeline.py).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import forja_storage as storage
from forja_api import conditions as c
from forja_api.contract import (
    ARTIFACT_URI_ENV,
    CHECKPOINT_URI_ENV,
    RESUME_FROM_ENV,
    SPEC_ENV,
    ExitCode,
    GpuUnavailable,
    InvalidConfig,
    PodError,
    RenderedSpec,
    Result,
    StopSignal,
    refuse_foreign_resume,
    write_termination_message,
)
from forja_api.v1alpha1.trainingjob import TrainerName, TrainingJobSpec
from forja_trainer_tf.cluster import TFCluster
from forja_trainer_tf.config import parse_config

__all__ = ["RESULT_PREFIX", "main", "resolve_resume_prefix"]

log = logging.getLogger("forja_trainer_tf")
RESULT_PREFIX = "forja-result "
WORKDIR_ENV = "FORJA_WORKDIR"


def resolve_resume_prefix(resume_from: str | None) -> str | None:
    """FORJA_RESUME_FROM may name the prefix or a file in it (state.json, last.pt)."""
    if not resume_from:
        return None
    head, _, tail = resume_from.rstrip("/").rpartition("/")
    return head if "." in tail and head else resume_from.rstrip("/")


def _write_result(result: Result) -> None:
    print(RESULT_PREFIX + result.to_termination_message(), flush=True)
    write_termination_message(result)


def _rendered_spec() -> tuple[RenderedSpec, TrainingJobSpec]:
    raw = os.environ.get(SPEC_ENV)
    if not raw:
        raise InvalidConfig(f"{SPEC_ENV} is not set; the operator passes the job spec in it")
    try:
        rendered = RenderedSpec.model_validate(json.loads(raw))
        spec = TrainingJobSpec.model_validate(rendered.spec)
    except ValueError as exc:
        raise InvalidConfig(f"{SPEC_ENV}: {exc}") from None
    if spec.trainer != TrainerName.DISTILL_QAT_TFLITE:
        raise InvalidConfig(f"spec.trainer: this image runs distill-qat-tflite, got {spec.trainer}")
    return rendered, spec


def _copy_prefix(src: str, dest: str) -> None:
    for uri in storage.list_uris(src):
        rel = uri[len(src.rstrip("/")) + 1:]
        storage.upload_bytes(storage.read_bytes(uri), storage.join(dest, rel))


def _strategy(tf: Any, cluster: TFCluster, gpus: int) -> Any:
    """MultiWorkerMirroredStrategy across workers (and every GPU of each), else
    MirroredStrategy across this pod's GPUs, else the default strategy.

    Made before anything else runs in TensorFlow, as the multi-worker one must be; it
    returns once every worker has joined (TensorFlow's coordination service).
    """
    if cluster.multi_worker:
        log.info("MultiWorkerMirroredStrategy: worker %d of %d (%s)", cluster.index,
                 cluster.num_workers, "chief" if cluster.is_chief else "not the chief")
        return tf.distribute.MultiWorkerMirroredStrategy()
    if gpus > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def run() -> Result:
    rendered, spec = _rendered_spec()
    config = parse_config(spec.hyperparameters, rendered.overrides)
    cluster = TFCluster.from_env()

    # TensorFlow loads only now: a bad config fails in a second, not after TF's import.
    from forja_trainer_tf.pipeline import PipelineRun, PretrainedSource  # noqa: PLC0415
    from forja_trainer_tf.progress import ProgressReporter  # noqa: PLC0415
    from forja_trainer_tf.state import CheckpointStore  # noqa: PLC0415
    from forja_trainer_tf.tfenv import tf  # noqa: PLC0415

    gpus = tf.config.list_physical_devices("GPU")
    if spec.resources.gpus > 0 and not gpus:
        raise GpuUnavailable(
            f"resources.gpus: {spec.resources.gpus} GPU(s) requested, none visible"
        )
    # Mirrored across every visible GPU (of every worker); the per-replica batch stays
    # as configured, the global batch is it times the replicas.
    strategy = _strategy(tf, cluster, len(gpus))

    checkpoint_uri = os.environ.get(CHECKPOINT_URI_ENV) or rendered.checkpoint_uri
    artifact_uri = os.environ.get(ARTIFACT_URI_ENV) or rendered.artifact_uri
    resume = resolve_resume_prefix(os.environ.get(RESUME_FROM_ENV) or rendered.resume_from)
    if resume:
        # Only this job's own checkpoints are ever copied in and loaded.
        refuse_foreign_resume(resume, checkpoint_uri)
    if resume and resume.rstrip("/") != checkpoint_uri.rstrip("/"):
        if cluster.is_chief:
            _copy_prefix(resume, checkpoint_uri)
        else:
            # Only the chief writes the prefix; the others read the same files where
            # they are (they need no file the chief writes during this attempt).
            checkpoint_uri = resume

    workdir = Path(os.environ.get(WORKDIR_ENV) or tempfile.mkdtemp(prefix="forja-tf-"))
    # SIGTERM (suspend, preemption): stop at the next batch; the last epoch is checkpointed.
    stop = StopSignal()
    stop.install()
    pretrained = None
    if spec.pretrained is not None:
        pretrained = PretrainedSource(spec.pretrained.uri, spec.pretrained.sha256,
                                      spec.pretrained.freeze_backbone)
    # The chief alone reports progress on its pod; the others print local lines only.
    reporter = ProgressReporter.from_env() if cluster.is_chief else ProgressReporter()
    pipeline = PipelineRun(
        config=config, dataset_uri=spec.dataset.uri,
        checkpoints=CheckpointStore(checkpoint_uri, workdir / "checkpoint"),
        artifact_uri=artifact_uri, workdir=workdir, reporter=reporter,
        pretrained=pretrained, stop_event=stop.event, strategy=strategy, cluster=cluster,
    )
    outcome = pipeline.execute()
    return Result(ok=True, artifact=outcome.artifact, metrics=outcome.metrics,
                  checkpoint=outcome.checkpoint, pretrained=pipeline.pretrained_loaded,
                  message=outcome.message)


def main() -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        result = run()
        code = int(ExitCode.SUCCESS)
    except PodError as exc:
        log.error("%s: %s", exc.reason, exc)
        result = Result(ok=False, reason=exc.reason, message=str(exc))
        code = int(exc.exit_code)
    except storage.StorageError as exc:
        log.exception("storage failed")
        result = Result(ok=False, reason=c.REASON_STORAGE_ERROR, message=str(exc))
        code = int(ExitCode.RETRYABLE)
    except Exception as exc:  # a crash: retried from the checkpoint by the operator
        log.exception("trainer crashed")
        result = Result(ok=False, reason=c.REASON_ERROR, message=f"{type(exc).__name__}: {exc}")
        code = 1
    _write_result(result)
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
