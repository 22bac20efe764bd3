"""A real SIGTERM to ``python -m forja_trainer`` at epoch k: it checkpoints and exits
143; the next attempt resumes from ``last.pt``, and the final weights and metrics
match an uninterrupted run.

Tolerance: 1e-6 absolute on every weight and metric. On CPU with one thread,
``num_workers=0`` and deterministic kernels the runs are in fact bitwise equal; the
tolerance only allows for float summation order if that ever changes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from forja_api.contract import ExitCode, Result
from forja_trainer.callbacks.model_checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parents[3]
HP = {"epochs": 5, "batch_size": 4, "crop_size": 16, "width": 4, "hidden": 8, "lr": 0.01}
URI = "generated://smoke-sequences?n=48&frames=3&size=16"


def _env(spec: str, tmp: Path, name: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        FORJA_SPEC=spec,
        FORJA_TORCH_THREADS="1",
        FORJA_TERMINATION_MESSAGE_PATH=str(tmp / f"{name}.result"),
        FORJA_WORKDIR=str(tmp / f"{name}-work"),
        PYTHONPATH=os.pathsep.join(str(ROOT / p) for p in ("operator", "trainer_image")),
    )
    env.pop("FORJA_POD_NAME", None)
    return env


def _trainer(spec: str, tmp: Path, name: str) -> subprocess.Popen[bytes]:
    with (tmp / f"{name}.log").open("wb") as log:  # the child keeps its own descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "forja_trainer"],
            env=_env(spec, tmp, name),
            stdout=subprocess.DEVNULL,
            stderr=log,
        )


@pytest.mark.slow
def test_sigterm_checkpoint_and_resume_match_uninterrupted(make_spec, tmp_path: Path) -> None:
    reference = _trainer(
        make_spec("smoke-verifier", URI, HP, store=tmp_path / "ref"), tmp_path, "ref"
    )

    store = tmp_path / "run"
    spec = make_spec("smoke-verifier", URI, HP, store=store)
    first = _trainer(spec, tmp_path, "first")
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
    second = _trainer(json.dumps(resumed_spec), tmp_path, "second")
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
