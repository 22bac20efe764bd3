"""The benchmark program on a model forja's own trainer trained (tiny, from scratch):
figures from real forward passes, the digest checked before anything loads, and a
clear, compact report when it cannot run."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch

from forja_api import benchmark as b
from forja_api.contract import MAX_TERMINATION_MESSAGE_BYTES as LIMIT
from forja_api.contract import TERMINATION_PATH_ENV
from forja_api.serving import StageArtifact
from forja_server import benchmark

from ._server_helpers import train_stage


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> StageArtifact:
    root = tmp_path_factory.mktemp("bench-trained")
    torch.set_num_threads(1)  # two shared cores
    return train_stage(root, 0, "image-classifier", "shapes",
                       "generated://shapes?classes=3&per_class=12&size=16", "generated",
                       {"epochs": 1, "image_size": 16, "width": 8, "batch_size": 16},
                       version=None)


@pytest.mark.slow
def test_a_trained_model_gets_figures_in_a_compact_message(
    trained: StageArtifact, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    term = tmp_path / "termination-log"
    monkeypatch.setenv(TERMINATION_PATH_ENV, str(term))
    monkeypatch.setenv(b.BENCH_REQUESTS_ENV, "40")
    monkeypatch.setenv(b.BENCH_BATCH_ENV, "4")
    monkeypatch.setenv("FORJA_MODEL_CACHE", str(tmp_path / "cache"))
    code = benchmark.main([trained.uri, trained.sha256, trained.format])
    assert code == b.EXIT_OK
    raw = term.read_bytes()
    assert len(raw) < LIMIT // 4, "a report is a few hundred bytes, far from the 4 KiB limit"
    report = b.BenchmarkReport.model_validate_json(raw)
    assert report.ok and report.figures is not None
    f = report.figures
    assert 0 < f.p50_ms <= f.p99_ms < 1000, f
    assert f.requests == 40 and f.batch_size == 4
    assert f.throughput > 0 and f.load_seconds > 0
    assert report.runtime == "onnxruntime"
    assert report.peak_memory_mib is not None and report.peak_memory_mib > 10


@pytest.mark.slow
def test_a_wrong_digest_is_refused_before_loading(
    trained: StageArtifact, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    term = tmp_path / "termination-log"
    monkeypatch.setenv(TERMINATION_PATH_ENV, str(term))
    monkeypatch.setenv("FORJA_MODEL_CACHE", str(tmp_path / "cache"))
    code = benchmark.main([trained.uri, "0" * 64, trained.format])
    assert code not in (b.EXIT_OK, b.EXIT_UNSUPPORTED)  # an error: retried, bounded
    report = json.loads(term.read_text())
    assert report["ok"] is False and "sha256" in report["message"]
    assert "figures" not in report


def test_a_format_without_a_runtime_is_unsupported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    weights = tmp_path / "model.bin"
    weights.write_bytes(b"not a model")
    sha = hashlib.sha256(weights.read_bytes()).hexdigest()
    term = tmp_path / "termination-log"
    monkeypatch.setenv(TERMINATION_PATH_ENV, str(term))
    monkeypatch.setenv("FORJA_MODEL_CACHE", str(tmp_path / "cache"))
    code = benchmark.main([weights.as_uri(), sha, "pipeline"])
    assert code == b.EXIT_UNSUPPORTED
    report = json.loads(term.read_text())
    assert report == {"ok": False, "reason": "Unsupported", "message": report["message"]}
    assert "pipeline" in report["message"]


def test_usage_is_explained() -> None:
    assert benchmark.main(["only-one-arg"]) == 2
