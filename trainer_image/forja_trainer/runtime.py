"""One attempt, start to finish: spec -> trainer -> Result and exit code.

The same function runs in a pod (``python -m forja_trainer``) and locally
(``forja-train run``): only the progress sinks, the work directory and where the
Result goes differ.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

import forja_storage as storage
from forja_api import conditions as c
from forja_api.contract import CheckpointRef, ExitCode, PodError, Result
from forja_api.v1alpha1.trainingjob import DatasetFormat
from forja_trainer.config import build_job_config, parse_rendered_spec, trainer_name_of
from forja_trainer.context import StopSignal, TrainingContext
from forja_trainer.device import configure_threads, select_device
from forja_trainer.distributed import WorldInfo, destroy_process_group, init_process_group
from forja_trainer.errors import InvalidConfig
from forja_trainer.launch import launch, local_world
from forja_trainer.progress import ProgressReporter
from forja_trainer.result import write_result
from forja_trainer.seeding import seed_everything
from forja_trainer.trainers import TorchTrainer, Trainer, get_trainer

__all__ = ["CACHE_DIR_ENV", "WORKDIR_ENV", "execute", "main"]

WORKDIR_ENV = "FORJA_WORKDIR"
CACHE_DIR_ENV = "FORJA_CACHE_DIR"

log = logging.getLogger("forja_trainer")


def _check_dataset_format(cls: type[Trainer[Any]], fmt: DatasetFormat, uri: str) -> None:
    generated_uri = uri.startswith("generated://")
    if fmt == DatasetFormat.GENERATED and not generated_uri:
        raise InvalidConfig(
            f"format generated needs a generated://<kind> uri, got {uri!r}",
            field="spec.dataset.format",
        )
    if fmt != DatasetFormat.GENERATED and fmt not in cls.dataset_formats:
        accepted = sorted({f.value for f in cls.dataset_formats} | {"generated"})
        raise InvalidConfig(
            f"{cls.name.value} does not read {fmt.value!r} datasets; "
            f"accepted: {', '.join(accepted)}",
            field="spec.dataset.format",
        )


def _join(reporter: ProgressReporter) -> tuple[WorldInfo, ProgressReporter]:
    """This process's rank; rank 0 alone reports progress (on its own pod)."""
    world = WorldInfo.from_env()
    if world.is_primary:
        return world, reporter
    reporter.close()
    return world, ProgressReporter([])


def _check_world(cls: type[Trainer[Any]], world: WorldInfo) -> None:
    if world.distributed and not cls.distributed:
        raise InvalidConfig(
            f"{cls.name.value} runs on one worker only; got WORLD_SIZE={world.world_size}",
            field="spec.workers",
        )


def _last_checkpoint(trainer: Trainer[Any] | None) -> CheckpointRef | None:
    if isinstance(trainer, TorchTrainer) and trainer.loop is not None:
        return trainer.loop.last_checkpoint
    # Trainers that drive another framework's loop (Ultralytics) keep their own.
    ref = getattr(trainer, "last_checkpoint", None)
    return ref if isinstance(ref, CheckpointRef) else None


def execute(
    spec_text: str | None,
    *,
    workdir: Path | None = None,
    progress: ProgressReporter | None = None,
    result_path: Path | None = None,
    install_signals: bool = True,
) -> tuple[int, Result]:
    """Run one attempt; returns the exit code and the Result (also written out)."""
    stop = StopSignal()
    if install_signals:
        stop.install()
    reporter = progress if progress is not None else ProgressReporter.from_env()
    trainer: Trainer[Any] | None = None
    try:
        world, reporter = _join(reporter)
        rendered = parse_rendered_spec(spec_text)
        cls = get_trainer(trainer_name_of(rendered))
        config = build_job_config(rendered, cls.hyperparameters_model)
        _check_dataset_format(cls, config.dataset.format, config.dataset.uri)
        _check_world(cls, world)
        device = select_device(config.resources.gpus, world.local_rank)
        threads = configure_threads(config.resources.cpu)
        seed_everything(
            config.hyperparameters.seed, deterministic=config.hyperparameters.deterministic
        )
        if workdir is None:
            workdir = Path(
                os.environ.get(WORKDIR_ENV)
                or tempfile.mkdtemp(prefix=f"forja-{config.name}-{config.attempt}-")
            )
        cache = os.environ.get(CACHE_DIR_ENV)
        ctx = TrainingContext(
            config=config,
            device=device,
            workdir=workdir,
            progress=reporter,
            stop=stop,
            cache_dir=Path(cache) if cache else None,
            world=world,
        )
        log.info(
            "training %s with %s on %s (%d threads; attempt %d, rank %d of %d, resume from %s)",
            config.name,
            cls.name.value,
            device,
            threads,
            config.attempt,
            world.rank,
            world.world_size,
            config.resume_from or "scratch",
        )
        init_process_group(world, device)
        trainer = cls(ctx)
        outcome = trainer.run()
        result = Result(
            ok=True,
            artifact=outcome.artifact,
            metrics=outcome.metrics,
            checkpoint=outcome.checkpoint,
            pretrained=ctx.pretrained_loaded,
            reason=c.REASON_COMPLETED,
            message=f"stop reason: {outcome.stop_reason}",
        )
        code = int(ExitCode.SUCCESS)
    except PodError as exc:
        log.error("%s: %s", exc.reason, exc)
        result = Result(
            ok=False, reason=exc.reason, message=str(exc), checkpoint=_last_checkpoint(trainer)
        )
        code = int(exc.exit_code)
    except torch.cuda.OutOfMemoryError as exc:
        log.error("CUDA out of memory outside the training loop: %s", exc)
        result = Result(ok=False, reason=c.REASON_OUT_OF_MEMORY, message=str(exc)[:1000])
        code = int(ExitCode.RETRYABLE)
    except storage.StorageError as exc:
        log.error("storage: %s", exc)
        result = Result(
            ok=False,
            reason=c.REASON_STORAGE_ERROR,
            message=str(exc),
            checkpoint=_last_checkpoint(trainer),
        )
        code = int(ExitCode.RETRYABLE)
    except Exception as exc:
        log.exception("training failed")
        result = Result(
            ok=False,
            reason=c.REASON_ERROR,
            message=f"{type(exc).__name__}: {exc}",
            checkpoint=_last_checkpoint(trainer),
        )
        code = 1
    finally:
        reporter.close()
        destroy_process_group()
        if install_signals:
            stop.uninstall()
    write_result(result, result_path)
    return code, result


def main() -> int:
    """``python -m forja_trainer`` in a pod: the spec from FORJA_SPEC, the exit code out
    (with LOCAL_WORLD_SIZE > 1, the launcher's: one process per GPU, see launch.py)."""
    from forja_api.contract import SPEC_ENV  # noqa: PLC0415

    logging.basicConfig(
        level=os.environ.get("FORJA_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    world = local_world()
    if world is not None:  # resources.gpus > 1: one process per GPU, started here
        return launch(world)
    code, _ = execute(os.environ.get(SPEC_ENV))
    return code
