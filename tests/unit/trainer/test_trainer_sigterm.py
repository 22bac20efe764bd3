"""A real SIGTERM to ``python -m forja_trainer`` at epoch k: it checkpoints and exits
143; the next attempt resumes from ``last.pt``, and the final weights and metrics
match an uninterrupted run.

Tolerance: 1e-6 absolute on every weight and metric. On CPU with one thread,
``num_workers=0`` and deterministic kernels the runs are in fact bitwise equal; the
tolerance only allows for float summation order if that ever changes.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest
import torch

from forja_api.contract import ExitCode, Result
from forja_trainer.callbacks.model_checkpoint import load_checkpoint

from ._trainer_process import start_trainer

HP = {"epochs": 5, "batch_size": 4, "crop_size": 16, "width": 4, "hidden": 8, "lr": 0.01}
URI = "generated://smoke-sequences?n=48&frames=3&size=16"


@pytest.mark.slow
def test_sigterm_checkpoint_and_resume_match_uninterrupted(make_spec, tmp_path: Path) -> None:
    reference = start_trainer(
        make_spec("smoke-verifier", URI, HP, store=tmp_path / "ref"), tmp_path, "ref"
    )

    store = tmp_path / "run"
    spec = make_spec("smoke-verifier", URI, HP, store=store)
    first = start_trainer(spec, tmp_path, "first")
    k = 2
    marker = store / "checkpoints" / f"epoch-{k:04d}.pt"
    deadline = time.monotonic() + 240
    while not marker.exists():
        assert first.poll() is None, (tmp_path / "first.log").read_text()
        assert time.monotonic() < deadline, "epoch 2 never finished"
        time.sleep(0.05)
    first.send_signal(signal.SIGTERM)
    assert first.wait(timeout=120) == ExitCode.TERMINATED
    stopped = Result.model_validate_json((tmp_path / "first.result").read_text())
    assert stopped.reason == "Terminated" and stopped.checkpoint is not None
    interrupted_at = load_checkpoint(store / "checkpoints" / "last.pt")
    assert k <= interrupted_at["epoch"] < HP["epochs"]

    resumed_spec = json.loads(spec)
    resumed_spec["attempt"] = 1
    resumed_spec["resumeFrom"] = f"file://{store}/checkpoints/last.pt"
    second = start_trainer(json.dumps(resumed_spec), tmp_path, "second")
    assert second.wait(timeout=240) == 0, (tmp_path / "second.log").read_text()
    assert reference.wait(timeout=240) == 0, (tmp_path / "ref.log").read_text()

    ref = load_checkpoint(tmp_path / "ref" / "checkpoints" / "last.pt")
    got = load_checkpoint(store / "checkpoints" / "last.pt")
    assert got["epoch"] == ref["epoch"] == HP["epochs"]
    worst = max(
        float((got["model_state_dict"][k2].float() - v.float()).abs().max())
        for k2, v in ref["model_state_dict"].items()
    )
    assert worst <= 1e-6, f"weights differ by {worst}"
    for key, value in ref["metrics"].items():
        assert got["metrics"][key] == pytest.approx(value, abs=1e-6), key
    ref_result = Result.model_validate_json((tmp_path / "ref.result").read_text())
    got_result = Result.model_validate_json((tmp_path / "second.result").read_text())
    assert got_result.ok and ref_result.ok
    for key, value in ref_result.metrics.items():
        assert got_result.metrics[key] == pytest.approx(value, abs=1e-6), key
    ref_weights = torch.load(tmp_path / "ref" / "artifacts" / "model.pt", weights_only=True)
    got_weights = torch.load(store / "artifacts" / "model.pt", weights_only=True)
    assert all(torch.allclose(got_weights[n], t, atol=1e-6, rtol=0) for n, t in ref_weights.items())
