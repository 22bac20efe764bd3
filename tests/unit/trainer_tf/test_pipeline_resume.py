"""The whole distill-qat-tflite pipeline on CPU, killed in the middle of a step and resumed.

One module fixture does the expensive part once: start the trainer and SIGTERM
it during the teacher step (a preemption: checkpoint, exit 143); resume it and
SIGKILL it in the middle of the student step (an OOM kill: no clean-up); rerun it
with the same checkpoint prefix to the end. The tests then check the resume and the product:
an INT8 TFLite model that the LiteRT interpreter runs (no TensorFlow in this
process), scoring within 2 points of the float student and far above a trivial
baseline, with its inference_config, labels, metrics and manifest.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter
from PIL import Image

from forja_api.artifact import InferenceConfig, ModelManifest
from forja_api.contract import ExitCode
from forja_trainer_tf.dataset import load_dataset
from forja_trainer_tf.thresholds import multilabel_metrics

from .conftest import TINY_HYPERPARAMETERS, TrainerEnv, progress_lines

pytestmark = pytest.mark.slow


@dataclass
class ResumedRun:
    env: TrainerEnv
    terminated_at: dict[str, Any]
    term_code: int
    term_result: dict[str, Any]
    state_after_term: dict[str, Any]
    second_lines: list[str]
    killed_at: dict[str, Any]
    state_after_kill: dict[str, Any]
    third_lines: list[str]
    third_code: int


def _run_until(env: TrainerEnv, workdir: Path, step: str, sig: signal.Signals
               ) -> tuple[dict[str, Any], int, list[str]]:
    """Start the trainer; send ``sig`` once ``step`` has finished an epoch but not all."""
    proc = env.popen(env.env(TINY_HYPERPARAMETERS, workdir=workdir))
    lines: list[str] = []
    hit: dict[str, Any] = {}
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            for p in progress_lines([lines[-1]]):
                if not hit and p["step"] == step and 1 <= p["epoch"] < p["totalEpochs"]:
                    hit = p
                    os.kill(proc.pid, sig)
            if hit and sig == signal.SIGKILL:
                break
    finally:
        proc.stdout.close()
        code = proc.wait(timeout=300)
    assert hit, f"never reached the {step} step:\n" + "\n".join(lines[-30:])
    return hit, code, lines


@pytest.fixture(scope="module")
def resumed(tmp_path_factory: pytest.TempPathFactory) -> ResumedRun:
    env = TrainerEnv(tmp_path_factory.mktemp("tf-pipeline"))
    state_path = env.tmp / "ckpt" / "state.json"
    # 1. SIGTERM (preemption) during the teacher: checkpoint, exit 143.
    terminated_at, term_code, _ = _run_until(env, env.tmp / "w1", "teacher", signal.SIGTERM)
    term_result = env.result()
    state_after_term = json.loads(state_path.read_text())
    # 2. Resume; SIGKILL (OOM killer) in the middle of the student step: no clean-up at all.
    killed_at, kill_code, second = _run_until(env, env.tmp / "w2", "student", signal.SIGKILL)
    assert kill_code == -signal.SIGKILL
    state_after_kill = json.loads(state_path.read_text())
    # 3. Same checkpoint prefix, fresh scratch directory: only the checkpoint survives.
    third = subprocess.run(
        [sys.executable, "-m", "forja_trainer_tf"],
        env=env.env(TINY_HYPERPARAMETERS, workdir=env.tmp / "w3"),
        cwd=env.tmp, capture_output=True, text=True, timeout=900, check=False,
    )
    return ResumedRun(env, terminated_at, term_code, term_result, state_after_term, second,
                      killed_at, state_after_kill,
                      (third.stdout + third.stderr).splitlines(), third.returncode)


def _resume_lines(lines: list[str]) -> list[dict[str, Any]]:
    return [json.loads(line.split(" ", 1)[1]) for line in lines
            if line.startswith("forja-resume ")]


def test_sigterm_checkpoints_and_exits_143(resumed: ResumedRun) -> None:
    assert resumed.term_code == ExitCode.TERMINATED
    assert resumed.term_result["ok"] is False and resumed.term_result["reason"] == "Terminated"
    state = resumed.state_after_term
    assert state["current_step"] == "teacher"
    assert state["epochs_done_in_step"] >= resumed.terminated_at["epoch"] >= 1
    assert state["steps_done"] == ["parse-dataset", "pipelines"]


def test_second_attempt_resumed_the_teacher_mid_step(resumed: ResumedRun) -> None:
    epochs = resumed.state_after_term["epochs_done_in_step"]
    assert _resume_lines(resumed.second_lines) == [
        {"step": "teacher", "epoch": epochs, "steps_done": ["parse-dataset", "pipelines"]}]
    teacher = [p for p in progress_lines(resumed.second_lines) if p["step"] == "teacher"]
    assert teacher[0]["epoch"] == epochs  # started at the lost epoch, not at 0
    assert teacher[-1]["epoch"] == teacher[-1]["totalEpochs"]


def test_kill_left_a_mid_step_checkpoint(resumed: ResumedRun) -> None:
    state = resumed.state_after_kill
    assert state["current_step"] == "student"
    assert state["epochs_done_in_step"] >= resumed.killed_at["epoch"] >= 1
    assert state["steps_done"] == ["parse-dataset", "pipelines", "teacher"]
    assert state["attempts"] == 2


def test_rerun_resumes_at_the_lost_step(resumed: ResumedRun) -> None:
    assert resumed.third_code == 0, "\n".join(resumed.third_lines[-40:])
    epochs = resumed.state_after_kill["epochs_done_in_step"]
    done = ["parse-dataset", "pipelines", "teacher"]
    assert _resume_lines(resumed.third_lines) == [
        {"step": "student", "epoch": epochs, "steps_done": done}]
    steps = progress_lines(resumed.third_lines)
    trained = {p["step"] for p in steps if p["metrics"].get("loss") is not None}
    assert "teacher" not in trained  # the teacher was not trained again
    student = [p for p in steps if p["step"] == "student"]
    assert student[0]["epoch"] == resumed.state_after_kill["epochs_done_in_step"]
    assert student[-1]["epoch"] == student[-1]["totalEpochs"]
    assert [p["step"] for p in steps][-1] == "test-metrics"
    result = resumed.env.result()
    assert result["ok"] is True and result["artifact"]["format"] == "tflite"


@pytest.fixture(scope="module")
def artifacts(resumed: ResumedRun) -> Path:
    assert resumed.third_code == 0, "\n".join(resumed.third_lines[-40:])
    return resumed.env.tmp / "artifacts"


def test_manifest_lists_every_output_with_its_digest(
    resumed: ResumedRun, artifacts: Path
) -> None:
    raw = (artifacts / "forja-model.json").read_bytes()
    result = resumed.env.result()
    assert result["artifact"]["sha256"] == hashlib.sha256(raw).hexdigest()
    manifest = ModelManifest.model_validate_json(raw)
    assert (manifest.format, manifest.task) == ("tflite", "multilabel")
    assert manifest.files["weights"].path == "model_qat_int8.tflite"
    assert manifest.files["config"].path == "inference_config.json"
    assert manifest.files["labels"].path == "labels.txt"
    assert {"teacher", "student", "metrics", "thresholds"} <= set(manifest.files)
    for f in manifest.files.values():
        data = (artifacts / f.path).read_bytes()
        assert hashlib.sha256(data).hexdigest() == f.sha256 and len(data) == f.size
    assert manifest.inputs[0].dtype == "uint8" and manifest.outputs[0].dtype == "int8"
    # The typed settings the server reads, and the config as the server reads it.
    config = json.loads((artifacts / "inference_config.json").read_text())
    assert manifest.preprocessing.resize == config["preprocessing"]["resize"]
    assert manifest.postprocessing.thresholds == config["thresholds"]
    served = InferenceConfig.model_validate(config)
    assert served.class_names == manifest.class_names and served.thresholds == config["thresholds"]


def _litert(path: Path) -> Any:
    interpreter = Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    return interpreter


def test_int8_model_runs_and_matches_the_float_student(
    artifacts: Path, resumed: ResumedRun
) -> None:
    config = json.loads((artifacts / "inference_config.json").read_text())
    assert config["input"]["dtype"] == "uint8" and config["output"]["dtype"] == "int8"
    assert config["input"]["zero_point"] == 0
    assert config["output"]["zero_point"] == -128
    assert abs(config["output"]["scale"] - 1 / 256) < 1e-6
    labels = (artifacts / "labels.txt").read_text().split()
    assert labels == config["class_names"] and set(config["thresholds"]) == set(labels)

    interpreter = _litert(artifacts / "model_qat_int8.tflite")
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    assert inp["dtype"] == np.uint8 and out["dtype"] == np.int8
    size = config["preprocessing"]["resize"]
    dataset = load_dataset(resumed.env.tmp / "w3" / "dataset-generated")
    test = dataset.splits["test"]
    probs = []
    for path in test.paths:
        # The documented preprocessing, done independently of the trainer's tf.data.
        with Image.open(path) as img:
            pixels = np.asarray(img.convert("RGB").resize(tuple(size), Image.BILINEAR),
                                dtype=np.float32)
        q = np.round(pixels / config["input"]["scale"] + config["input"]["zero_point"])
        interpreter.set_tensor(inp["index"], np.clip(q, 0, 255).astype(np.uint8)[None])
        interpreter.invoke()
        raw = interpreter.get_tensor(out["index"])[0].astype(np.float32)
        probs.append((raw - config["output"]["zero_point"]) * config["output"]["scale"])
    thresholds = np.array([config["thresholds"][name] for name in labels])
    ours = multilabel_metrics(test.targets, np.stack(probs), thresholds)

    metrics = json.loads((artifacts / "metrics.json").read_text())
    summary = metrics["summary"]
    trivial = metrics["test"]["test_trivial_f1_macro"]
    float_student = summary["float_student_test_f1_macro"]
    # Our own run of the INT8 model agrees with the trainer's figure...
    assert abs(ours["f1_macro"] - summary["test_f1_macro"]) <= 0.03
    # ...the conversion alone costs almost nothing: the same graph in float arithmetic,
    # with the same thresholds, scores within 1.5 points (measured: within 0.2)...
    assert abs(summary["test_f1_macro"] - summary["deployed_float_test_f1_macro"]) <= 0.015, (
        summary)
    # ...loses at most 2 points against the float student (QAT may gain a little)...
    assert ours["f1_macro"] >= float_student - 0.02, (ours, summary)
    assert summary["test_f1_macro"] >= float_student - 0.02, summary
    # ...and is far above the best trivial answer (all absent / all present).
    assert ours["f1_macro"] >= trivial + 0.2, (ours, trivial)
    assert ours["f1_macro"] >= 0.8
    wanted = {"f1_macro", "f1_micro", "precision_macro", "recall_macro"}
    assert wanted <= set(metrics["test"]["test_int8"])
    assert metrics["quantization"] == "qat" and summary["qat_applied"] == 1.0
    assert set(metrics["step_seconds"]) == {
        "parse-dataset", "pipelines", "teacher", "student", "qat", "thresholds", "export",
        "inference-config", "test-metrics"}


def test_threshold_recommendation(artifacts: Path) -> None:
    rec = json.loads((artifacts / "threshold_recommendation.json").read_text())
    assert rec["objective"] == "macro_f1"
    assert 0.05 <= rec["global_threshold"] <= 0.95
    for entry in rec["classes"].values():
        if not entry["per_class_kept"]:
            assert entry["threshold"] == rec["global_threshold"]
        else:
            assert entry["val_f1_at_own"] - entry["val_f1_at_global"] > 0.005
