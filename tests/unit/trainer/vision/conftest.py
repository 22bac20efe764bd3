from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from forja_api.artifact import MANIFEST_NAME, ModelManifest
from forja_api.contract import Progress, RenderedSpec, Result
from forja_trainer.progress import ProgressReporter
from forja_trainer.runtime import execute


@pytest.fixture(scope="package", autouse=True)
def _ultralytics_not_yet_imported() -> None:
    """These tests run the trainer as a fresh pod process would: Ultralytics not yet
    imported, so forja configures it offline first (and refuses otherwise). Earlier
    tests in the same session (the server's) may have imported it: forget it."""
    for name in [m for m in sys.modules if m == "ultralytics" or m.startswith("ultralytics.")]:
        del sys.modules[name]


@pytest.fixture(scope="session")
def yolo_config_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One Ultralytics config dir per test session: Ultralytics binds it at first import."""
    return tmp_path_factory.mktemp("ultralytics-config")


@dataclass
class Run:
    code: int
    result: Result
    artifact_dir: Path
    checkpoint_dir: Path

    @property
    def manifest(self) -> ModelManifest:
        return ModelManifest.model_validate_json((self.artifact_dir / MANIFEST_NAME).read_text())

    def file(self, role: str) -> Path:
        return self.artifact_dir / self.manifest.files[role].path


@pytest.fixture()
def run_trainer(tmp_path: Path) -> Callable[..., Run]:
    """Run a trainer through the runtime (``execute``), as a pod would, with file:// stores."""
    counter = iter(range(1000))

    def run(
        trainer: str,
        dataset_uri: str,
        fmt: str,
        hyperparameters: dict[str, Any],
        *,
        resume_from: str | None = None,
        store: Path | None = None,
        stop_after_epochs: int | None = None,
        pretrained: dict[str, Any] | None = None,
    ) -> Run:
        store = store or tmp_path / "store"
        n = next(counter)
        rendered = RenderedSpec(
            name="job",
            namespace="ns",
            attempt=n,
            spec={
                "model": "m",
                "trainer": trainer,
                "dataset": {"uri": dataset_uri, "format": fmt},
                "hyperparameters": hyperparameters,
                **({"pretrained": pretrained} if pretrained else {}),
            },
            checkpoint_uri=(store / "checkpoints").as_uri(),
            artifact_uri=(store / f"artifacts-{n}").as_uri(),
            resume_from=resume_from,
        )
        sinks = []
        if stop_after_epochs is not None:
            sinks.append(_StopAfter(stop_after_epochs))
        code, result = execute(
            rendered.to_json(),
            workdir=tmp_path / f"work-{n}",
            progress=ProgressReporter(sinks),
            result_path=tmp_path / f"result-{n}.json",
            install_signals=stop_after_epochs is not None,
        )
        return Run(code, result, store / f"artifacts-{n}", store / "checkpoints")

    return run


class _StopAfter:
    """A progress sink that sends this process SIGTERM once epoch ``n`` is reported,
    so the trainer's real signal path (checkpoint, exit 143) is exercised."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.sent = False

    def send(self, progress: Progress) -> None:
        if progress.epoch >= self.n and not self.sent:
            self.sent = True
            os.kill(os.getpid(), signal.SIGTERM)

    def step(self, *args: Any) -> None:
        pass

    def close(self) -> None:
        pass
