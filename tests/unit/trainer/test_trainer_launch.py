"""resources.gpus > 1 in one pod: ``python -m forja_trainer`` starts one process per GPU
(LOCAL_WORLD_SIZE of them), torchrun-style, and hands on one Result and exit code.

Run for real on the CPU: one "pod" process with LOCAL_WORLD_SIZE=2 starts two trainer
processes that join one gloo world (on a GPU node each takes cuda:LOCAL_RANK and NCCL).
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest

from forja_api.contract import ExitCode, Result
from forja_trainer.errors import InvalidConfig
from forja_trainer.launch import LocalWorld, child_env, local_world

from ._trainer_process import free_port, start_trainer

HP = {"epochs": 2, "image_size": 16, "width": 4, "batch_size": 8, "augmentation": "light"}
URI = "generated://shapes?classes=2&per_class=12&size=16"


def _start_pod(spec: str, tmp: Path, name: str, nproc: int = 2) -> subprocess.Popen[bytes]:
    return start_trainer(
        spec,
        tmp,
        name,
        FORJA_RENDEZVOUS_TIMEOUT_SECONDS="120",
        WORLD_SIZE=str(nproc),
        RANK="0",
        LOCAL_RANK="0",
        GROUP_RANK="0",
        LOCAL_WORLD_SIZE=str(nproc),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(free_port()),
    )


def _pod(spec: str, tmp: Path, name: str, nproc: int = 2) -> tuple[int, Result | None, str]:
    code = _start_pod(spec, tmp, name, nproc).wait(timeout=600)
    result_file = tmp / f"{name}.result"
    result = Result.model_validate_json(result_file.read_text()) if result_file.is_file() else None
    return code, result, (tmp / f"{name}.log").read_text()


def test_local_world_from_the_pods_env() -> None:
    assert local_world({}) is None
    assert local_world({"LOCAL_WORLD_SIZE": "1"}) is None
    assert local_world({"LOCAL_WORLD_SIZE": "4", "GROUP_RANK": "2"}) == LocalWorld(4, 2)
    # a process the launcher started trains; it does not launch again
    assert local_world({"LOCAL_WORLD_SIZE": "4", "FORJA_LAUNCHED": "1"}) is None
    with pytest.raises(InvalidConfig, match="LOCAL_WORLD_SIZE='four'"):
        local_world({"LOCAL_WORLD_SIZE": "four"})


def test_each_process_gets_its_rank_its_gpu_index_and_its_own_result(tmp_path: Path) -> None:
    pod = {"WORLD_SIZE": "8", "RANK": "4", "FORJA_WORKDIR": "/work", "MASTER_PORT": "29500"}
    env = child_env(pod, LocalWorld(nproc=4, group_rank=1), 3, tmp_path / "3.json")
    assert (env["RANK"], env["LOCAL_RANK"], env["WORLD_SIZE"]) == ("7", "3", "8")
    assert env["FORJA_TERMINATION_MESSAGE_PATH"] == str(tmp_path / "3.json")
    assert env["FORJA_WORKDIR"] == "/work/local-3" and env["FORJA_LAUNCHED"] == "1"
    assert env["MASTER_PORT"] == "29500"


@pytest.mark.slow
def test_one_pod_runs_two_processes_in_one_world(make_spec, tmp_path: Path) -> None:
    store = tmp_path / "store"
    code, result, log = _pod(make_spec("image-classifier", URI, HP, store=store), tmp_path, "pod")
    assert code == 0, log[-3000:]
    assert "starting 2 trainer processes (ranks 0..1)" in log
    for rank in (0, 1):
        assert f"joining a world of 2 as rank {rank} (gloo" in log, log[-3000:]
    # the pod's Result is global rank 0's, with the artifact it alone published
    assert result is not None and result.ok and result.artifact is not None
    assert (store / "checkpoints" / "last.pt").is_file()
    assert (store / "artifacts" / "model.pt").is_file()
    work = tmp_path / "pod-work"
    assert any((work / "local-0" / "checkpoints").iterdir())
    assert not any((work / "local-1" / "checkpoints").iterdir())
    assert not any((work / "local-1" / "artifacts").iterdir())


@pytest.mark.slow
def test_a_failing_process_ends_the_pod_with_its_own_exit_code_and_result(
    make_spec, tmp_path: Path
) -> None:
    """Exit 2 (InvalidConfig, permanent), not torchrun's 1: the operator must not retry it."""
    spec = make_spec("image-classifier", URI, {**HP, "image_size": 4})
    code, result, log = _pod(spec, tmp_path, "bad")
    assert code == ExitCode.INVALID_CONFIG, log[-3000:]
    assert result is not None and result.reason == "InvalidConfig", result
    assert "image_size" in (result.message or "")


@pytest.mark.slow
def test_sigterm_reaches_every_process_and_rank_0_names_its_checkpoint(
    make_spec, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    spec = make_spec("image-classifier", URI, {**HP, "epochs": 200}, store=store)
    proc = _start_pod(spec, tmp_path, "stop")
    deadline = time.monotonic() + 300
    while not (store / "checkpoints" / "last.pt").is_file():  # an epoch is done
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(timeout=300)
    log = (tmp_path / "stop.log").read_text()
    assert code == 143, log[-3000:]
    result = Result.model_validate_json((tmp_path / "stop.result").read_text())
    assert result.reason == "Terminated", result
    assert result.checkpoint is not None and result.checkpoint.epoch >= 1, result
