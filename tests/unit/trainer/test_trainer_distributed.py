"""Data-parallel training for real: two ``python -m forja_trainer`` processes with the
env the operator gives the pods of a 2-worker attempt (WORLD_SIZE, RANK, MASTER_ADDR,
MASTER_PORT), joined by torch.distributed's env:// rendezvous over gloo.

Asserted: both ranks train every epoch on their half of the data; rank 0 alone writes
checkpoints and the artifact (rank 1's work directory holds none, and its Result has
no artifact); the model reaches the accuracy of a 1-worker run on the same data within
:data:`ACCURACY_TOLERANCE`; and a second attempt resumes both ranks from the same
verified checkpoint.

Tolerance: 2 workers of batch 16 take half the optimizer steps of 1 worker at batch 16
(the effective batch doubles; the learning rate is not scaled), so the curves differ;
on this learnable set both end far above the majority baseline, within 0.15 of each
other.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
from pathlib import Path

import pytest
import torch

from forja_api.contract import Result
from forja_trainer.distributed import WorldInfo
from forja_trainer.errors import InvalidConfig
from forja_trainer.loop import ShardSampler

from ._trainer_process import start_trainer

HP = {
    "epochs": 8,
    "image_size": 24,
    "width": 8,
    "batch_size": 16,
    "augmentation": "light",
    "lr": 0.005,
}
URI = "generated://shapes?classes=4&per_class=48&size=24"
ACCURACY_TOLERANCE = 0.15


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(spec: str, tmp: Path, name: str, **env_extra: str) -> subprocess.Popen[bytes]:
    return start_trainer(spec, tmp, name, FORJA_RENDEZVOUS_TIMEOUT_SECONDS="120", **env_extra)


def _gang(spec: str, tmp: Path, prefix: str, world: int = 2) -> list[subprocess.Popen[bytes]]:
    port = str(_free_port())
    return [
        _start(
            spec,
            tmp,
            f"{prefix}{rank}",
            WORLD_SIZE=str(world),
            RANK=str(rank),
            LOCAL_RANK="0",
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=port,
        )
        for rank in range(world)
    ]


def _wait(proc: subprocess.Popen[bytes], tmp: Path, name: str) -> Result:
    code = proc.wait(timeout=600)
    log = (tmp / f"{name}.log").read_text()
    assert code == 0, log[-3000:]
    return Result.model_validate_json((tmp / f"{name}.result").read_text())


def _epochs_trained(workdir: Path) -> int:
    history = json.loads((workdir / "history" / "history.json").read_text())
    return len(history["epochs"])


@pytest.mark.slow
def test_two_workers_train_together_and_only_rank_0_writes(make_spec, tmp_path: Path) -> None:
    started = time.monotonic()
    single = _start(make_spec("image-classifier", URI, HP, store=tmp_path / "one"), tmp_path, "one")
    one = _wait(single, tmp_path, "one")
    one_seconds = time.monotonic() - started

    store = tmp_path / "two"
    started = time.monotonic()
    ranks = _gang(make_spec("image-classifier", URI, HP, store=store), tmp_path, "rank")
    rank0, rank1 = (_wait(p, tmp_path, f"rank{i}") for i, p in enumerate(ranks))
    two_seconds = time.monotonic() - started

    # Both ranks joined one world and trained every epoch.
    for rank in (0, 1):
        log = (tmp_path / f"rank{rank}.log").read_text()
        assert f"joining a world of 2 as rank {rank} (gloo" in log, log[-2000:]
        assert _epochs_trained(tmp_path / f"rank{rank}-work") == HP["epochs"]
    # Rank 0 alone wrote checkpoints and the artifact.
    assert rank0.artifact is not None and rank1.artifact is None and rank1.ok
    assert (store / "checkpoints" / "last.pt").is_file()
    assert (store / "artifacts" / "model.pt").is_file()
    assert not any((tmp_path / "rank1-work" / "checkpoints").iterdir())
    assert not any((tmp_path / "rank1-work" / "artifacts").iterdir())
    # Same data, same model: the accuracy of one worker, within tolerance.
    acc1, acc2 = one.metrics["val_accuracy"], rank0.metrics["val_accuracy"]
    baseline = rank0.metrics["baseline_accuracy"]
    print(
        f"\n1 worker: val_accuracy {acc1:.3f} in {one_seconds:.1f}s; "
        f"2 workers: val_accuracy {acc2:.3f} in {two_seconds:.1f}s (baseline {baseline:.3f})"
    )
    assert acc2 >= baseline + 0.25, rank0.metrics
    assert abs(acc2 - acc1) <= ACCURACY_TOLERANCE, (one.metrics, rank0.metrics)

    # A next attempt: every rank resumes from the same checkpoint, its digest checked.
    resumed = json.loads(make_spec("image-classifier", URI, {**HP, "epochs": HP["epochs"] + 2},
                                   store=store))
    last = store / "checkpoints" / "last.pt"
    resumed.update(
        attempt=1,
        resumeFrom=f"file://{last}",
        resumeSha256=rank0.checkpoint.sha256 if rank0.checkpoint else None,
    )
    ranks = _gang(json.dumps(resumed), tmp_path, "again")
    again0, _ = (_wait(p, tmp_path, f"again{i}") for i, p in enumerate(ranks))
    for rank in (0, 1):
        log = (tmp_path / f"again{rank}.log").read_text()
        assert f"resumed at epoch {HP['epochs']}" in log, log[-2000:]
    assert again0.metrics["epochs_trained"] == HP["epochs"] + 2


def test_world_from_env() -> None:
    assert WorldInfo.from_env({}) == WorldInfo()
    world = WorldInfo.from_env(
        {"WORLD_SIZE": "4", "RANK": "3", "MASTER_ADDR": "10.0.0.1", "MASTER_PORT": "29400"}
    )
    assert world.distributed and not world.is_primary and world.rank == 3
    with pytest.raises(InvalidConfig, match="RANK=4 is outside a world of 4"):
        WorldInfo.from_env({"WORLD_SIZE": "4", "RANK": "4", "MASTER_ADDR": "a", "MASTER_PORT": "1"})
    with pytest.raises(InvalidConfig, match="MASTER_ADDR is required"):
        WorldInfo.from_env({"WORLD_SIZE": "2", "RANK": "1"})
    with pytest.raises(InvalidConfig, match="WORLD_SIZE='two' is not an integer"):
        WorldInfo.from_env({"WORLD_SIZE": "two"})


def test_shard_sampler_splits_an_epoch_and_resumes_mid_share() -> None:
    data = torch.utils.data.TensorDataset(torch.arange(10))
    shares = [list(ShardSampler(data, 7, 3, rank=r, world=3)) for r in range(3)]
    assert all(len(s) == 4 for s in shares)  # padded to equal shares
    assert set().union(*map(set, shares)) == set(range(10))
    # the same epoch draws the same order; another epoch another one
    assert shares[0] == list(ShardSampler(data, 7, 3, rank=0, world=3))
    assert shares[0] != list(ShardSampler(data, 7, 4, rank=0, world=3))
    # a resume 2 samples into the share skips exactly those
    assert list(ShardSampler(data, 7, 3, rank=1, world=3, start=2)) == shares[1][2:]
