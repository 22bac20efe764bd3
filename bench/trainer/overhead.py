"""Runtime overhead of forja's training loop vs a plain PyTorch loop.

Same data, model, optimizer (AdamW + cosine), gradient clipping, batch size and
per-epoch validation; forja's loop adds per-epoch checkpoints (last + rotating +
best, to a file:// store), metrics history, progress, the stop-signal check and the
callbacks. Runs alternate (plain, forja, plain, ...) and the median of each is
reported, as CPU seconds of this process and wall seconds; on a shared machine
run-to-run noise is about +-10%, so the time spent inside forja's callbacks
(checkpoint writing, history, progress, clipping) is also measured directly, as a
share of the forja run. The training-curve PNG (rendered once at the end) is
reported apart.

    PYTHONPATH=operator:trainer_image python bench/trainer/overhead.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

import forja_architectures as architectures
from forja_api.contract import RenderedSpec
from forja_api.v1alpha1.trainingjob import TrainerName
from forja_trainer.artifacts import ArtifactWriter
from forja_trainer.config import BaseHyperparameters, build_job_config
from forja_trainer.context import TrainingContext
from forja_trainer.loop import FitLoop
from forja_trainer.optim import build_optimizer, build_scheduler
from forja_trainer.progress import ProgressReporter
from forja_trainer.seeding import seed_everything
from forja_trainer.trainers.base import TorchTrainer

N_TRAIN, N_VAL, SIZE, CLASSES = 2048, 512, 32, 4
HP = {"epochs": 3, "batch_size": 64, "lr": 1e-3, "grad_clip_norm": 1.0}
ARCH = {"num_classes": CLASSES, "width": 16, "depth": 3}


def make_data() -> tuple[TensorDataset, TensorDataset]:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(N_TRAIN + N_VAL, 3, SIZE, SIZE, generator=gen)
    y = torch.randint(0, CLASSES, (N_TRAIN + N_VAL,), generator=gen)
    x[torch.arange(len(y)), y % 3, :8, :8] += 2.0  # something to learn
    return TensorDataset(x[:N_TRAIN], y[:N_TRAIN]), TensorDataset(x[N_TRAIN:], y[N_TRAIN:])


def evaluate(model: nn.Module, loader: Iterable[Any]) -> dict[str, float]:
    loss, correct, n = 0.0, 0, 0
    for x, y in loader:
        logits = model(x)
        loss += float(nn.functional.cross_entropy(logits, y, reduction="sum"))
        correct += int((logits.argmax(1) == y).sum())
        n += len(y)
    return {"val_loss": loss / n, "val_accuracy": correct / n}


def plain(train: TensorDataset, val: TensorDataset) -> None:
    torch.manual_seed(1337)  # the default seed, as seed_everything on the forja side
    model = architectures.build("small-cnn", ARCH)
    hp = BaseHyperparameters.model_validate(HP)
    opt = build_optimizer([{"params": list(model.parameters())}], hp)
    sched = build_scheduler(opt, hp)
    gen = torch.Generator().manual_seed(0)
    loader = DataLoader(train, batch_size=hp.batch_size, shuffle=True, generator=gen)
    for _ in range(hp.epochs):
        model.train()
        for x, y in loader:
            opt.zero_grad(set_to_none=True)
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()  # type: ignore[no-untyped-call]
            nn.utils.clip_grad_norm_(model.parameters(), hp.grad_clip_norm or 1.0)
            opt.step()
            float(loss.detach())
        model.eval()
        with torch.no_grad():
            evaluate(model, DataLoader(val, batch_size=hp.batch_size))
        sched.step()


class BenchTrainer(TorchTrainer[BaseHyperparameters]):
    name: ClassVar[TrainerName] = TrainerName.IMAGE_CLASSIFIER
    task: ClassVar[str] = "classification"
    data: tuple[TensorDataset, TensorDataset]

    def build_datasets(self) -> tuple[Dataset[Any], Dataset[Any]]:
        return self.data

    def build_model(self) -> nn.Module:
        return architectures.build("small-cnn", ARCH)

    def training_step(self, model: nn.Module, batch: Any) -> torch.Tensor:
        x, y = batch
        return nn.functional.cross_entropy(model(x), y)

    def evaluate(self, model: nn.Module, loader: Iterable[Any]) -> dict[str, float]:
        return evaluate(model, loader)

    def export(self, model: nn.Module, writer: ArtifactWriter) -> None:
        writer.save_state_dict(model)


HOOKS = (
    "on_fit_start",
    "on_train_epoch_start",
    "on_before_optimizer_step",
    "on_train_batch_end",
    "on_train_epoch_end",
    "on_fit_end",
)


def _timed(fn: Any, key: str, spent: dict[str, float]) -> Any:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            spent[key] = spent.get(key, 0.0) + time.perf_counter() - t0

    return wrapper


def forja(
    train: TensorDataset, val: TensorDataset, root: Path, spent: dict[str, float] | None = None
) -> float:
    """Returns the seconds spent rendering the curve (reported apart); ``spent``
    collects the seconds spent in each callback's hooks."""
    rendered = RenderedSpec(
        name="bench",
        namespace="bench",
        spec={
            "model": "bench",
            "trainer": "image-classifier",
            "dataset": {"uri": "generated://bench", "format": "generated"},
            "hyperparameters": HP,
        },
        checkpoint_uri=f"file://{root}/ckpt",
        artifact_uri=f"file://{root}/art",
    )
    config = build_job_config(rendered, BaseHyperparameters)
    seed_everything(config.hyperparameters.seed)
    ctx = TrainingContext(config, torch.device("cpu"), root / "work", ProgressReporter([]))
    trainer = BenchTrainer(ctx)
    trainer.data = (train, val)
    trainer._train, trainer._val = trainer.build_datasets()
    model = trainer.build_model()
    opt = build_optimizer(trainer.param_groups(model), trainer.hp)
    loop = FitLoop(
        trainer, model, opt, build_scheduler(opt, trainer.hp), trainer.configure_callbacks()
    )
    plot_started = [0.0]
    history = trainer.history
    assert history is not None
    original_fit_end = history.on_fit_end

    def timed_fit_end(lp: FitLoop) -> None:
        plot_started[0] = time.perf_counter()
        original_fit_end(lp)
        plot_started[0] = time.perf_counter() - plot_started[0]

    history.on_fit_end = timed_fit_end  # type: ignore[method-assign,assignment]
    if spent is not None:
        for cb in loop.callbacks:
            for hook in HOOKS:
                key = f"{type(cb).__name__}.{hook}"
                setattr(cb, hook, _timed(getattr(cb, hook), key, spent))
    loop.run()
    return plot_started[0]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    train, val = make_data()
    # warm-up (first-call allocations, lazy imports) not counted
    plain(train, val)
    with tempfile.TemporaryDirectory() as tmp:
        forja(train, val, Path(tmp) / "warm")
    results: dict[str, dict[str, list[float]]] = {
        "plain": {"cpu": [], "wall": []},
        "forja": {"cpu": [], "wall": []},
    }
    plots: list[float] = []
    hook_seconds: list[float] = []
    forja_wall: list[float] = []
    for i in range(args.repeats):
        for kind in ("plain", "forja"):
            c0, w0 = time.process_time(), time.perf_counter()
            plot = 0.0
            if kind == "plain":
                plain(train, val)
            else:
                spent: dict[str, float] = {}
                with tempfile.TemporaryDirectory() as tmp:
                    plot = forja(train, val, Path(tmp) / str(i), spent)
                hook_seconds.append(sum(spent.values()) - plot)
                forja_wall.append(time.perf_counter() - w0 - plot)
            results[kind]["cpu"].append(time.process_time() - c0 - plot)
            results[kind]["wall"].append(time.perf_counter() - w0 - plot)
            if kind == "forja":
                plots.append(plot)
    med = {k: {m: statistics.median(v) for m, v in d.items()} for k, d in results.items()}
    overhead_cpu = 100 * (med["forja"]["cpu"] / med["plain"]["cpu"] - 1)
    overhead_wall = 100 * (med["forja"]["wall"] / med["plain"]["wall"] - 1)
    report = {
        "setup": f"small-cnn {ARCH}, {N_TRAIN} train / {N_VAL} val images {SIZE}x{SIZE}, "
        f"{HP['epochs']} epochs, batch {HP['batch_size']}, {args.threads} thread(s), "
        f"median of {args.repeats}",
        "plain_cpu_s": round(med["plain"]["cpu"], 3),
        "forja_cpu_s": round(med["forja"]["cpu"], 3),
        "overhead_cpu_percent": round(overhead_cpu, 2),
        "plain_wall_s": round(med["plain"]["wall"], 3),
        "forja_wall_s": round(med["forja"]["wall"], 3),
        "overhead_wall_percent": round(overhead_wall, 2),
        "callbacks_s": round(statistics.median(hook_seconds), 3),
        "callbacks_share_of_forja_run_percent": round(
            100 * statistics.median(h / w for h, w in zip(hook_seconds, forja_wall, strict=True)), 2
        ),
        "curve_png_once_s": round(statistics.median(plots), 3),
        "target_percent": 3.0,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
