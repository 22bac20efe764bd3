"""``forja-train run FILE``: a TrainingJob manifest trained locally into a directory store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from forja_api.contract import ExitCode
from forja_trainer.callbacks.model_checkpoint import load_checkpoint
from forja_trainer.cli import load_training_job, main, render_local

ROOT = Path(__file__).resolve().parents[3]

MANIFEST = """\
apiVersion: v1
kind: Secret
metadata: {name: not-this-one}
---
apiVersion: forja.dev/v1alpha1
kind: TrainingJob
metadata:
  name: shapes-demo
spec:
  model: shapes
  trainer: image-classifier
  dataset:
    uri: generated://shapes?classes=3&per_class=12&size=16
    format: generated
  hyperparameters:
    epochs: 1
    image_size: 16
    width: 4
    depth: 2
    batch_size: 8
"""


def test_render_local_points_into_the_store(tmp_path: Path) -> None:
    path = tmp_path / "job.yaml"
    path.write_text(MANIFEST)
    job = load_training_job(path)
    rendered = render_local(job, tmp_path / "store", overrides={"epochs": 3})
    assert rendered.name == "shapes-demo"
    assert rendered.checkpoint_uri == f"file://{tmp_path}/store/shapes-demo/checkpoints"
    assert rendered.overrides == {"epochs": 3}
    assert rendered.resume_from is None


def test_file_without_a_training_job(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "job.yaml"
    path.write_text("kind: Secret\n")
    assert main(["run", str(path)]) == 2
    assert "holds no TrainingJob" in capsys.readouterr().err


@pytest.mark.slow
def test_run_then_resume_in_a_subprocess(tmp_path: Path) -> None:
    path = tmp_path / "job.yaml"
    path.write_text(MANIFEST)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(str(ROOT / p) for p in ("operator", "trainer_image")),
        "FORJA_TORCH_THREADS": "1",
    }
    env.pop("FORJA_TERMINATION_MESSAGE_PATH", None)
    cmd = [sys.executable, "-m", "forja_trainer", "run", str(path), "--set", "epochs=1"]
    done = subprocess.run(
        cmd, check=False, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == ExitCode.SUCCESS, done.stderr
    store = tmp_path / ".forja-local" / "shapes-demo"
    result = json.loads((store / "result.json").read_text())
    assert result["ok"] and result["artifact"]["uri"].endswith("artifacts/forja-model.json")
    assert json.loads(done.stdout)["ok"] is True
    assert "epoch 1/1" in done.stderr  # the progress line
    assert (store / "artifacts" / "model.onnx").is_file()

    cmd = [sys.executable, "-m", "forja_trainer", "run", str(path), "--set", "epochs=2", "--resume"]
    done = subprocess.run(
        cmd, check=False, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == ExitCode.SUCCESS, done.stderr
    assert "resumed at epoch 1" in done.stderr
    assert load_checkpoint(store / "checkpoints" / "last.pt")["epoch"] == 2
