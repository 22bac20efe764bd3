"""Shared by the server tests: serve stages from verified artifacts in-process."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from forja_api.serving import BatchingConfig, ServingConfig, StageArtifact
from forja_server.app import create_app
from forja_server.limits import DEFAULT_LIMITS, RequestLimits
from forja_server.repository import ModelRepository


def train_stage(root: Path, n: int, trainer: str, name: str, uri: str, fmt: str,
                hp: dict[str, Any], version: str | None = "1.0.0") -> StageArtifact:
    """Run one of forja's trainers in process (its own folders ``*-n`` under ``root``)
    and return its verified artifact as a stage named ``name``."""
    from forja_api.contract import ExitCode, RenderedSpec
    from forja_trainer.progress import ProgressReporter
    from forja_trainer.runtime import execute

    spec = RenderedSpec(
        name="job", namespace="ns", attempt=0,
        spec={"model": name, "trainer": trainer, "dataset": {"uri": uri, "format": fmt},
              "hyperparameters": hp},
        checkpoint_uri=(root / f"ckpt-{n}").as_uri(), artifact_uri=(root / f"art-{n}").as_uri(),
    )
    code, result = execute(spec.to_json(), workdir=root / f"work-{n}",
                           progress=ProgressReporter([]), result_path=root / f"result-{n}.json",
                           install_signals=False)
    assert code == ExitCode.SUCCESS, result.message
    assert result.artifact is not None
    return StageArtifact(name=name, uri=result.artifact.uri, sha256=result.artifact.sha256,
                         format=result.artifact.format, version=version)


def serve(stages: list[StageArtifact], cache: Path, name: str | None = None,
          limits: RequestLimits = DEFAULT_LIMITS, **kw: object
          ) -> tuple[ModelRepository, TestClient]:
    cfg = ServingConfig(name=name or stages[0].name, stages=stages,
                        batching=BatchingConfig(max_batch_size=8, max_latency_ms=5), **kw)
    repo = ModelRepository(cfg, cache, limits=limits)
    repo.load_all()
    return repo, TestClient(create_app(repo), raise_server_exceptions=False)


def _purge_ultralytics() -> None:
    for name in [m for m in sys.modules if m == "ultralytics" or m.startswith("ultralytics.")]:
        del sys.modules[name]


@contextlib.contextmanager
def isolated_ultralytics() -> Iterator[None]:
    """Ultralytics binds its config dir at first import, and the trainer tests insist
    on their own: import it afresh here and forget it afterwards, env included.

    Its import also replaces ``PIL.Image.open`` (an unidentified image then imports
    pi_heif, absent here: a 500 where the server answers 4xx) and ``torch.save``;
    forgetting its modules does not undo that, so both are put back too."""
    import torch
    from PIL import Image

    keys = ("YOLO_CONFIG_DIR", "YOLO_OFFLINE", "YOLO_AUTOINSTALL")
    saved = {k: os.environ.get(k) for k in keys}
    image_open, torch_save = Image.open, torch.save
    _purge_ultralytics()
    for k in keys:
        os.environ.pop(k, None)
    try:
        yield
    finally:
        Image.open, torch.save = image_open, torch_save
        _purge_ultralytics()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
