"""Clip the global gradient norm before each optimizer step."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from forja_trainer.callbacks.base import Callback

if TYPE_CHECKING:
    from torch.optim import Optimizer

    from forja_trainer.loop import FitLoop

__all__ = ["GradientClipping"]


class GradientClipping(Callback):
    def __init__(self, max_norm: float) -> None:
        self.max_norm = max_norm
        self.last_norm: float | None = None

    def on_before_optimizer_step(self, loop: FitLoop, optimizer: Optimizer) -> None:
        params = [p for group in optimizer.param_groups for p in group["params"]]
        # foreach=None lets torch pick the fused path; the returned norm is pre-clipping.
        norm = torch.nn.utils.clip_grad_norm_(params, self.max_norm)
        self.last_norm = float(norm)
