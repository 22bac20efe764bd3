"""AdamW with a cosine or step learning-rate schedule, from the hyperparameters."""

from __future__ import annotations

from typing import Any

from torch.optim import AdamW, Optimizer
from torch.optim.lr_scheduler import ConstantLR, CosineAnnealingLR, LRScheduler, StepLR

from forja_trainer.config import BaseHyperparameters

__all__ = ["build_optimizer", "build_scheduler"]


def build_optimizer(groups: list[dict[str, Any]], hp: BaseHyperparameters) -> Optimizer:
    """AdamW; param groups may carry their own ``lr`` (a backbone at a fraction of it)."""
    return AdamW(groups, lr=hp.lr, weight_decay=hp.weight_decay, foreach=None)


def build_scheduler(optimizer: Optimizer, hp: BaseHyperparameters) -> LRScheduler:
    """Stepped once per epoch."""
    if hp.scheduler == "cosine":
        return CosineAnnealingLR(optimizer, T_max=hp.epochs, eta_min=hp.lr * hp.min_lr_ratio)
    if hp.scheduler == "step":
        return StepLR(optimizer, step_size=hp.step_size, gamma=hp.gamma)
    return ConstantLR(optimizer, factor=1.0, total_iters=0)
