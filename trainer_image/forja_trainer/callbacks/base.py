"""The callback interface: the loop calls these hooks; behaviour lives in the callbacks.

Hooks run in ascending ``order`` (checkpointing late, so it saves what the others
recorded; progress last, so it can report the checkpoint). ``state_dict`` is saved
in every checkpoint under ``state_key`` and handed back to ``load_state_dict`` on
resume, so a callback's memory (best score, patience, history) survives restarts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from torch.optim import Optimizer

    from forja_trainer.loop import FitLoop

__all__ = ["Callback"]


class Callback:
    order: ClassVar[int] = 0

    @property
    def state_key(self) -> str:
        return type(self).__name__

    def on_fit_start(self, loop: FitLoop) -> None:
        """Before the first epoch (after a resume restored state)."""

    def on_train_epoch_start(self, loop: FitLoop) -> None:
        """Before an epoch's first batch (also when an epoch resumes mid-way)."""

    def on_before_optimizer_step(self, loop: FitLoop, optimizer: Optimizer) -> None:
        """Gradients are computed and not yet applied."""

    def on_train_batch_end(self, loop: FitLoop, loss: float) -> None:
        """After an optimizer step."""

    def on_train_epoch_end(self, loop: FitLoop, metrics: dict[str, float]) -> None:
        """After validation; ``loop.state.epoch`` already counts this epoch."""

    def on_interrupt(self, loop: FitLoop) -> None:
        """The run is stopping early (SIGTERM, recoverable errors exhausted): save now."""

    def on_fit_end(self, loop: FitLoop) -> None:
        """After the last epoch or an early stop."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
