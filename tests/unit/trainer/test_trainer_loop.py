"""The robust loop on a tiny regression problem: OOM halving, recoverable errors,
early stopping, gradient clipping, checkpoint rotation, mid-epoch stop and resume."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from forja_api.contract import CheckpointRef, RenderedSpec
from forja_api.v1alpha1.trainingjob import TrainerName
from forja_storage import sha256_file
from forja_trainer.artifacts import ArtifactWriter
from forja_trainer.callbacks import Callback, GradientClipping
from forja_trainer.callbacks.model_checkpoint import load_checkpoint
from forja_trainer.config import BaseHyperparameters, build_job_config
from forja_trainer.context import TrainingContext
from forja_trainer.errors import InvalidConfig, OutOfMemory, RetryableError, Terminated
from forja_trainer.loop import FitLoop
from forja_trainer.progress import ProgressReporter
from forja_trainer.seeding import seed_everything
from forja_trainer.trainers.base import TorchTrainer


class ToyTrainer(TorchTrainer[BaseHyperparameters]):
    """y = x @ w with noise; the loss is MSE. Hooks let tests inject failures."""

    name: ClassVar[TrainerName] = TrainerName.SMOKE_VERIFIER
    task: ClassVar[str] = "regression"
    fail: Any = None  # called with (trainer, batch) before each step

    def build_datasets(self) -> tuple[Dataset[Any], Dataset[Any]]:
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(64, 4, generator=gen)
        y = x @ torch.tensor([1.0, -2.0, 0.5, 3.0]) + 0.01 * torch.randn(64, generator=gen)
        return TensorDataset(x[:48], y[:48]), TensorDataset(x[48:], y[48:])

    def build_model(self) -> nn.Module:
        return nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.1), nn.Linear(8, 1))

    def training_step(self, model: nn.Module, batch: Any) -> torch.Tensor:
        if self.fail is not None:
            self.fail(self, batch)
        x, y = batch
        return nn.functional.mse_loss(model(x).squeeze(1), y)

    def evaluate(self, model: nn.Module, loader: Iterable[Any]) -> dict[str, float]:
        total, n = 0.0, 0
        for x, y in loader:
            total += float(nn.functional.mse_loss(model(x).squeeze(1), y, reduction="sum"))
            n += len(y)
        return {"val_loss": total / n}

    def export(self, model: nn.Module, writer: ArtifactWriter) -> None:
        writer.save_state_dict(model)


def make_trainer(tmp_path: Path, store: Path, **hp: Any) -> ToyTrainer:
    resume_from = hp.pop("_resume", None)
    resume_sha256 = hp.pop("_resume_sha256", None)
    rendered = RenderedSpec(
        name="toy",
        namespace="t",
        spec={
            "model": "m",
            "trainer": "smoke-verifier",
            "dataset": {"uri": "generated://toy", "format": "generated"},
            "hyperparameters": {"epochs": 4, "batch_size": 16, "lr": 0.05, **hp},
            "checkpoint": {"intervalEpochs": 1, "keep": 2},
        },
        checkpoint_uri=f"file://{store}/ckpt",
        artifact_uri=f"file://{store}/art",
        resume_from=resume_from,
        resume_sha256=resume_sha256,
    )
    config = build_job_config(rendered, BaseHyperparameters)
    seed_everything(config.hyperparameters.seed)
    ctx = TrainingContext(
        config=config,
        device=torch.device("cpu"),
        workdir=tmp_path / "work",
        progress=ProgressReporter([]),
    )
    return ToyTrainer(ctx)


def test_trains_rotates_checkpoints_and_writes_history(tmp_path: Path) -> None:
    store = tmp_path / "s"
    trainer = make_trainer(tmp_path, store)
    outcome = trainer.run()
    names = sorted(p.name for p in (store / "ckpt").iterdir())
    # keep=2; latest.json names last.pt and its digest for the next attempt.
    assert names == ["best.pt", "epoch-0003.pt", "epoch-0004.pt", "last.pt", "latest.json"]
    pointer = CheckpointRef.model_validate_json((store / "ckpt" / "latest.json").read_text())
    assert pointer.sha256 == sha256_file(store / "ckpt" / "last.pt") and pointer.epoch == 4
    last = load_checkpoint(store / "ckpt" / "last.pt")
    assert last["epoch"] == 4 and set(last) >= {
        "model_state_dict",
        "optimizer_state_dict",
        "config",
    }
    history = json.loads((store / "art" / "history.json").read_text())
    assert [row["epoch"] for row in history["epochs"]] == [1, 2, 3, 4]
    assert history["stop_reason"] == "completed"
    assert (store / "art" / "training_curve.png").read_bytes()[:4] == b"\x89PNG"
    assert outcome.metrics["val_loss"] < history["epochs"][0]["val_loss"]
    manifest = json.loads((store / "art" / "forja-model.json").read_text())
    assert set(manifest["files"]) == {"weights", "history", "curve"}


def test_cosine_and_step_schedules(tmp_path: Path) -> None:
    trainer = make_trainer(tmp_path, tmp_path / "s", scheduler="step", step_size=2, gamma=0.5)
    trainer.run()
    history = json.loads((tmp_path / "s" / "art" / "history.json").read_text())["epochs"]
    assert [row["lr"] for row in history] == pytest.approx([0.05, 0.05, 0.025, 0.025])
    trainer = make_trainer(tmp_path / "b", tmp_path / "c", scheduler="cosine", min_lr_ratio=0.0)
    trainer.run()
    lrs = [
        r["lr"] for r in json.loads((tmp_path / "c" / "art" / "history.json").read_text())["epochs"]
    ]
    assert lrs[0] == pytest.approx(0.05) and lrs[1] < lrs[0] and lrs[3] < lrs[2]


def test_cuda_oom_halves_the_batch_and_finishes(tmp_path: Path) -> None:
    trainer = make_trainer(tmp_path, tmp_path / "s", batch_size=16)

    def fail(tr: ToyTrainer, batch: Any) -> None:
        if len(batch[0]) > 4:  # a GPU that only fits 4 samples
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")

    trainer.fail = fail
    trainer.run()
    assert trainer.loop is not None
    assert trainer.loop.state.batch_size == 4
    history = json.loads((tmp_path / "s" / "art" / "history.json").read_text())["epochs"]
    assert {row["batch_size"] for row in history} == {4}


def test_cuda_oom_at_the_floor_exits_retryable_with_checkpoint(tmp_path: Path) -> None:
    trainer = make_trainer(tmp_path, tmp_path / "s", batch_size=8, min_batch_size=4)

    def fail(tr: ToyTrainer, batch: Any) -> None:
        raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    trainer.fail = fail
    with pytest.raises(OutOfMemory, match="batch size 4"):
        trainer.run()
    assert (tmp_path / "s" / "ckpt" / "last.pt").is_file()


def test_recoverable_errors_are_retried_then_give_up(tmp_path: Path) -> None:
    calls = {"n": 0}

    def flaky(tr: ToyTrainer, batch: Any) -> None:
        calls["n"] += 1
        if calls["n"] in (5, 9):
            raise ConnectionError("dataset read reset by peer")

    trainer = make_trainer(tmp_path, tmp_path / "s", max_recoverable_retries=2)
    trainer.fail = flaky
    trainer.run()
    assert trainer.loop is not None and trainer.loop.state.recoverable_retries == 2

    def broken(tr: ToyTrainer, batch: Any) -> None:
        raise ConnectionError("store gone")

    trainer = make_trainer(tmp_path / "b", tmp_path / "s2", max_recoverable_retries=1)
    trainer.fail = broken
    with pytest.raises(RetryableError, match="ConnectionError persisted after 1"):
        trainer.run()
    assert (tmp_path / "s2" / "ckpt" / "last.pt").is_file()


def test_early_stopping_records_its_reason(tmp_path: Path) -> None:
    trainer = make_trainer(
        tmp_path, tmp_path / "s", epochs=10, early_stopping_patience=2, early_stopping_min_delta=1e6
    )
    outcome = trainer.run()
    assert outcome.stop_reason == "early-stopping:patience-exhausted"
    assert outcome.metrics["epochs_trained"] == 3
    history = json.loads((tmp_path / "s" / "art" / "history.json").read_text())
    assert history["stop_reason"] == "early-stopping:patience-exhausted"


def test_gradient_clipping_bounds_the_update(tmp_path: Path) -> None:
    trainer = make_trainer(tmp_path, tmp_path / "s", grad_clip_norm=0.001, epochs=1, lr=1.0)
    clip = next(cb for cb in trainer.configure_callbacks() if isinstance(cb, GradientClipping))
    assert clip.max_norm == 0.001
    model = trainer.build_model()
    before = [p.detach().clone() for p in model.parameters()]
    x, y = torch.randn(8, 4), torch.randn(8)
    nn.functional.mse_loss(model(x).squeeze(1), y).backward()
    opt = torch.optim.SGD(model.parameters(), lr=1.0)

    class _Loop:
        pass

    clip.on_before_optimizer_step(_Loop(), opt)  # type: ignore[arg-type]
    opt.step()
    with torch.no_grad():
        moved = torch.sqrt(
            sum(((p - b) ** 2).sum() for p, b in zip(model.parameters(), before, strict=True))
        )
    assert float(moved) <= 0.001 + 1e-6
    assert clip.last_norm is not None and clip.last_norm > 0.001


class _StopAt(Callback):
    """Plays SIGTERM arriving mid-epoch at a given global step."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, loop: FitLoop, loss: float) -> None:
        if loop.state.global_step == self.step:
            loop.ctx.stop.request()


def test_stop_mid_epoch_then_resume_matches_uninterrupted_run(tmp_path: Path) -> None:
    # 48 samples / batch 16 = 3 steps per epoch; step 7 is inside epoch 3.
    reference = make_trainer(tmp_path / "ref", tmp_path / "ref-store")
    reference.run()
    ref = load_checkpoint(tmp_path / "ref-store" / "ckpt" / "last.pt")

    store = tmp_path / "store"
    first = make_trainer(tmp_path / "a", store)
    original = first.configure_callbacks
    first.configure_callbacks = lambda: [*original(), _StopAt(7)]  # type: ignore[method-assign]
    with pytest.raises(Terminated):
        first.run()
    mid = load_checkpoint(store / "ckpt" / "last.pt")
    assert mid["epoch"] == 2 and mid["loop"]["samples_seen"] == 16

    second = make_trainer(tmp_path / "b", store, _resume=f"file://{store}/ckpt/last.pt")
    second.run()
    final = load_checkpoint(store / "ckpt" / "last.pt")
    for key, tensor in ref["model_state_dict"].items():
        assert torch.allclose(final["model_state_dict"][key], tensor, atol=1e-6, rtol=0), key
    for key in ("val_loss", "train_loss"):
        assert final["metrics"][key] == pytest.approx(ref["metrics"][key], abs=1e-6)
    hist = final["callbacks"]["MetricsHistory"]["history"]
    assert [row["epoch"] for row in hist] == [1, 2, 3, 4]


def test_a_checkpoint_changed_after_it_was_written_is_never_loaded(tmp_path: Path) -> None:
    store = tmp_path / "store"
    make_trainer(tmp_path / "a", store, epochs=2).run()
    last = store / "ckpt" / "last.pt"
    recorded = sha256_file(last)
    payload = torch.load(last, weights_only=False)
    payload["epoch"] = 1  # someone rewrote it: same shape, other content
    torch.save(payload, last)
    resume = f"file://{store}/ckpt/last.pt"
    with pytest.raises(InvalidConfig, match="changed after it was written"):
        make_trainer(tmp_path / "b", store, _resume=resume, _resume_sha256=recorded).run()
    # The operator's record may be stale (rate-limited reports); the pointer is not.
    make_trainer(tmp_path / "c", store, epochs=2).run()
    stale = "0" * 64
    make_trainer(tmp_path / "d", store, epochs=3, _resume=resume, _resume_sha256=stale).run()


def test_a_resume_point_outside_the_jobs_checkpoints_is_refused(tmp_path: Path) -> None:
    other = tmp_path / "other-job"
    make_trainer(tmp_path / "a", other, epochs=1).run()
    store = tmp_path / "store"
    escape = f"file://{store}/ckpt/../../other-job/ckpt/last.pt"
    for uri in (f"file://{other}/ckpt/last.pt", escape):
        with pytest.raises(InvalidConfig, match="outside this job's checkpoint prefix"):
            make_trainer(tmp_path / "b", store, _resume=uri).run()
