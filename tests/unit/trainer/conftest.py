"""Fixtures for the trainer tests: one torch thread (2 shared cores), spec builders."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

# Extra intra-op threads spin against the other test processes on a shared 2-core box.
torch.set_num_threads(1)

SpecFactory = Callable[..., str]


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    monkeypatch.setenv("FORJA_TORCH_THREADS", "1")
    monkeypatch.setenv("FORJA_TERMINATION_MESSAGE_PATH", str(tmp_path / "termination-log"))
    monkeypatch.delenv("FORJA_POD_NAME", raising=False)
    # The runtime switches torch to deterministic kernels (process-wide, as a pod is one
    # attempt); undo it so later tests in this process (Ultralytics' ONNX export under
    # warnings-as-errors) see torch's defaults.
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    threads = torch.get_num_threads()
    yield
    torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
    torch.set_num_threads(threads)


@pytest.fixture
def make_spec(tmp_path: Path) -> SpecFactory:
    """A FORJA_SPEC JSON for a trainer, storing checkpoints and artifacts under tmp_path."""

    def build(
        trainer: str,
        uri: str,
        hyperparameters: dict[str, Any] | None = None,
        *,
        fmt: str = "generated",
        overrides: dict[str, Any] | None = None,
        resume_from: str | None = None,
        store: Path | None = None,
        **spec_extra: Any,
    ) -> str:
        root = store or tmp_path / "store"
        return json.dumps(
            {
                "name": "job",
                "namespace": "test",
                "attempt": 0,
                "spec": {
                    "model": "m",
                    "trainer": trainer,
                    "dataset": {"uri": uri, "format": fmt},
                    "hyperparameters": hyperparameters or {},
                    **spec_extra,
                },
                "overrides": overrides or {},
                "checkpointUri": f"file://{root}/checkpoints",
                "artifactUri": f"file://{root}/artifacts",
                "resumeFrom": resume_from,
            }
        )

    return build
