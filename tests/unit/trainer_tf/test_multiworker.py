"""The distill-qat-tflite pipeline across two workers for real: two ``python -m
forja_trainer_tf`` processes on this machine with the TF_CONFIG the operator gives the
pods of a 2-worker attempt, joined by MultiWorkerMirroredStrategy's gRPC collectives
on CPU.

Asserted: both workers train the teacher, the student and QAT on their shard of each
global batch (twice the per-worker batch); the chief alone writes the checkpoint, the
progress annotation's lines and the TFLite INT8 artifact, which the LiteRT interpreter
loads and runs; the other worker ends after QAT with a Result without artifact; the
int8 model's macro F1 is within :data:`F1_TOLERANCE` of a 1-worker run on the same
data. Then a worker is killed in the middle of the student step, and the next attempt
resumes both workers from the same checkpoint, at that step's last epoch.

Tolerance: two workers take half the optimizer steps of one at the same per-worker
batch (the global batch doubles; the learning rate is not scaled), so the curves
differ; on this learnable set both end far above the trivial baseline. A 1-worker run
at the 2-worker global batch (32) scores no better than the gang (docs/trainer-tf.md,
"Across two workers"): the gap is the step count, not the strategy.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter

from forja_api.contract import InvalidConfig
from forja_trainer_tf.cluster import TFCluster

from .conftest import TINY_HYPERPARAMETERS, TrainerEnv, progress_lines

F1_TOLERANCE = 0.15


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


@dataclass
class Worker:
    name: str
    proc: subprocess.Popen[str]
    log: Path
    result_path: Path
    workdir: Path

    def wait(self, timeout: float = 900) -> tuple[int, list[str]]:
        code = self.proc.wait(timeout=timeout)
        return code, self.log.read_text().splitlines()

    def result(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.result_path.read_text())
        return data


def _start(env: TrainerEnv, name: str, tf_config: dict[str, Any] | None) -> Worker:
    base = env.env(TINY_HYPERPARAMETERS, workdir=env.tmp / f"{name}-work")
    result_path = env.tmp / f"{name}.result"
    base["FORJA_TERMINATION_MESSAGE_PATH"] = str(result_path)
    base.pop("TF_CONFIG", None)
    if tf_config is not None:
        base["TF_CONFIG"] = json.dumps(tf_config)
    log = env.tmp / f"{name}.log"
    with log.open("w") as out:  # the child keeps its own descriptor
        proc = subprocess.Popen([sys.executable, "-m", "forja_trainer_tf"], env=base,
                                cwd=env.tmp, stdout=out, stderr=subprocess.STDOUT, text=True)
    return Worker(name, proc, log, result_path, env.tmp / f"{name}-work")


def _gang(env: TrainerEnv, prefix: str, workers: int = 2) -> list[Worker]:
    cluster = [f"127.0.0.1:{port}" for port in _free_ports(workers)]
    return [
        _start(env, f"{prefix}{i}",
               {"cluster": {"worker": cluster}, "task": {"type": "worker", "index": i}})
        for i in range(workers)
    ]


def _resume_lines(lines: list[str]) -> list[dict[str, Any]]:
    return [json.loads(line.split(" ", 1)[1]) for line in lines
            if line.startswith("forja-resume ")]


@dataclass
class Runs:
    one: TrainerEnv
    two: TrainerEnv
    single: Worker
    chief: Worker
    other: Worker
    single_lines: list[str]
    chief_lines: list[str]
    other_lines: list[str]
    seconds: dict[str, float]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Runs:
    one = TrainerEnv(tmp_path_factory.mktemp("tf-one"))
    two = TrainerEnv(tmp_path_factory.mktemp("tf-two"))
    started = time.monotonic()
    single = _start(one, "single", None)
    code, single_lines = single.wait()
    assert code == 0, "\n".join(single_lines[-40:])
    one_seconds = time.monotonic() - started
    started = time.monotonic()
    chief, other = _gang(two, "worker")
    other_code, other_lines = other.wait()
    chief_code, chief_lines = chief.wait()
    two_seconds = time.monotonic() - started
    assert other_code == 0, "\n".join(other_lines[-60:])
    assert chief_code == 0, "\n".join(chief_lines[-60:])
    return Runs(one, two, single, chief, other, single_lines, chief_lines, other_lines,
                {"one": one_seconds, "two": two_seconds})



@pytest.mark.slow
def test_both_workers_train_every_collective_step(runs: Runs) -> None:
    for index, lines in ((0, runs.chief_lines), (1, runs.other_lines)):
        text = "\n".join(lines)
        assert f"MultiWorkerMirroredStrategy: worker {index} of 2" in text, text[-3000:]
        trained = {p["step"] for p in progress_lines(lines) if p["metrics"].get("loss")}
        assert trained == {"teacher", "student", "qat"}, trained
        # The global batch is the per-worker batch times the workers.
        sizes = {p["batchSize"] for p in progress_lines(lines) if p.get("batchSize")}
        assert sizes == {2 * TINY_HYPERPARAMETERS["batch_size"]}, sizes
    steps_other = {p["step"] for p in progress_lines(runs.other_lines)}
    assert "export" not in steps_other and "thresholds" not in steps_other


@pytest.mark.slow
def test_only_the_chief_writes(runs: Runs) -> None:
    chief, other = runs.chief.result(), runs.other.result()
    assert chief["ok"] and chief["artifact"] is not None, chief
    assert other["ok"] and other.get("artifact") is None, other
    assert "worker 1 of 2" in other["message"]
    # The other worker kept no weights and no outputs; the chief's are in the store.
    assert not (runs.other.workdir / "weights").exists()
    assert not (runs.other.workdir / "outputs").exists()
    assert (runs.chief.workdir / "weights").is_dir()
    state = json.loads((runs.two.tmp / "ckpt" / "state.json").read_text())
    assert state["steps_done"][-1] == "test-metrics" and state["attempts"] == 1
    metrics = json.loads((runs.two.tmp / "artifacts" / "metrics.json").read_text())
    assert metrics["workers"] == 2 and metrics["replicas"] == 2
    assert metrics["global_batch_size"] == 2 * TINY_HYPERPARAMETERS["batch_size"]
    assert metrics["quantization"] == "qat", metrics.get("qat_error")


@pytest.mark.slow
def test_the_int8_model_runs_and_matches_one_worker(runs: Runs) -> None:
    path = runs.two.tmp / "artifacts" / "model_qat_int8.tflite"
    interpreter = Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    assert inp["dtype"] == np.uint8 and out["dtype"] == np.int8
    image = np.random.default_rng(0).integers(0, 256, inp["shape"], dtype=np.uint8)
    interpreter.set_tensor(inp["index"], image)
    interpreter.invoke()
    classes = TINY_HYPERPARAMETERS["generated"]["classes"]
    assert interpreter.get_tensor(out["index"]).shape == (1, classes)

    one, two = runs.single.result()["metrics"], runs.chief.result()["metrics"]
    f1_one, f1_two = one["test_f1_macro"], two["test_f1_macro"]
    print(f"\n1 worker: int8 test F1 macro {f1_one:.3f} in {runs.seconds['one']:.0f}s; "
          f"2 workers: {f1_two:.3f} in {runs.seconds['two']:.0f}s "
          f"(teacher {two['teacher_test_f1_macro']:.3f} vs {one['teacher_test_f1_macro']:.3f}, "
          f"float student {two['float_student_test_f1_macro']:.3f} vs "
          f"{one['float_student_test_f1_macro']:.3f})")
    metrics = json.loads((runs.two.tmp / "artifacts" / "metrics.json").read_text())
    trivial = metrics["test"]["test_trivial_f1_macro"]
    assert f1_two >= trivial + 0.2, (two, trivial)
    assert abs(f1_two - f1_one) <= F1_TOLERANCE, (one, two)


@pytest.mark.slow
def test_a_killed_worker_ends_the_gang_and_both_resume_from_one_checkpoint(
    tmp_path: Path,
) -> None:
    env = TrainerEnv(tmp_path)
    chief, other = _gang(env, "first")
    deadline = time.monotonic() + 900
    state_path = tmp_path / "ckpt" / "state.json"
    state: dict[str, Any] = {}
    while time.monotonic() < deadline and chief.proc.poll() is None:
        if state_path.exists():
            state = json.loads(state_path.read_text())
            if state.get("current_step") == "student" and state["epochs_done_in_step"] >= 1:
                break
        time.sleep(0.5)
    assert state.get("current_step") == "student", chief.log.read_text()[-3000:]
    os.kill(other.proc.pid, signal.SIGKILL)  # what an OOM kill does to one pod
    assert other.proc.wait(timeout=60) == -signal.SIGKILL
    # The operator deletes the rest of the gang; here the chief gets SIGTERM too.
    if chief.proc.poll() is None:
        os.kill(chief.proc.pid, signal.SIGTERM)
    chief.proc.wait(timeout=300)
    kept = json.loads(state_path.read_text())
    assert kept["current_step"] == "student" and kept["epochs_done_in_step"] >= 1

    chief, other = _gang(env, "again")
    other_code, other_lines = other.wait()
    chief_code, chief_lines = chief.wait()
    assert other_code == 0, "\n".join(other_lines[-60:])
    assert chief_code == 0, "\n".join(chief_lines[-60:])
    expected = {"step": "student", "epoch": kept["epochs_done_in_step"],
                "steps_done": ["parse-dataset", "pipelines", "teacher"]}
    assert _resume_lines(chief_lines) == [expected]
    assert _resume_lines(other_lines) == [expected]
    for lines in (chief_lines, other_lines):
        student = [p for p in progress_lines(lines) if p["step"] == "student"]
        assert student[0]["epoch"] == kept["epochs_done_in_step"]
        trained = {p["step"] for p in progress_lines(lines) if p["metrics"].get("loss")}
        assert "teacher" not in trained
    assert chief.result()["artifact"] is not None


def test_tf_config_parse() -> None:
    assert TFCluster.from_env({}) == TFCluster()
    assert not TFCluster().multi_worker and TFCluster().is_chief
    two = TFCluster.from_env({"TF_CONFIG": json.dumps(
        {"cluster": {"worker": ["127.0.0.1:23000", "10.0.0.7:2222"]},
         "task": {"type": "worker", "index": 1}})})
    assert two.multi_worker and not two.is_chief and two.num_workers == 2
    assert two.workers == ("127.0.0.1:23000", "10.0.0.7:2222")
    with pytest.raises(InvalidConfig, match=r"TF_CONFIG.task.index: 2 is not a worker of 2"):
        TFCluster.from_env({"TF_CONFIG": json.dumps(
            {"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 2}})})
    with pytest.raises(InvalidConfig, match=r"TF_CONFIG.cluster: only 'worker' tasks"):
        TFCluster.from_env({"TF_CONFIG": json.dumps(
            {"cluster": {"worker": ["a:1"], "ps": ["b:1"]}, "task": {"index": 0}})})
    with pytest.raises(InvalidConfig, match=r"TF_CONFIG.task.type: only 'worker'"):
        TFCluster.from_env({"TF_CONFIG": json.dumps(
            {"cluster": {"worker": ["a:1"]}, "task": {"type": "chief", "index": 0}})})
    with pytest.raises(InvalidConfig, match="TF_CONFIG: not JSON"):
        TFCluster.from_env({"TF_CONFIG": "{"})
