"""YOLO weights as tensors only: what forja loads from outside the process, and writes.

An Ultralytics ``.pt`` is a pickle of whole modules: unpickling one constructs
Ultralytics classes (``DetectionModel`` ``eval``s the activation string of the
file's config), so loading it runs what the file says, digest or not. forja loads
pretrained weights and its own checkpoints with ``torch.load(weights_only=True)``
and no extra allowed globals, into a model built from the trusted architecture
yaml (``hp.model``, shipped with the package), and writes its checkpoints in that
same form (``TENSOR_CHECKPOINT_FORMAT``): tensors, numbers, strings, lists, dicts.
"""

from __future__ import annotations

import pickle
import warnings
from collections.abc import Mapping
from copy import deepcopy
from pathlib import Path
from typing import Any

__all__ = [
    "TENSOR_CHECKPOINT_FORMAT",
    "NotTensorsOnlyError",
    "load_tensors",
    "resume_state",
    "save_tensor_checkpoint",
    "state_dict_of",
    "transfer",
]

TENSOR_CHECKPOINT_FORMAT = "forja-yolo-tensors/1"
_TORCH_DEFAULT_MODULES = ("builtins", "torch", "traceback")

_CONVERT = (
    "it is a pickled Ultralytics checkpoint (whole modules), which forja never loads: "
    "loading one runs code from the file. Convert it where you trust it: "
    "`torch.save(YOLO('<file>.pt').model.float().state_dict(), 'weights.pt')` "
    "and give that file (and its sha256) instead"
)


class NotTensorsOnlyError(ValueError):
    """The file is not a tensors-only state dict or forja checkpoint: permanent."""


def load_tensors(path: Path, what: str) -> dict[str, Any]:
    """``torch.load(weights_only=True)`` with no allowed globals beyond torch's own."""
    import torch  # noqa: PLC0415 - the trainer image has torch; the operator never imports this
    from torch.serialization import get_safe_globals  # noqa: PLC0415

    # Globals allowed process-wide (add_safe_globals) widen weights_only to the classes
    # they name; torch's own (exceptions, torch types) are all tensors only means.
    extra = [
        g
        for g in get_safe_globals()
        if str(getattr(g, "__module__", "")).split(".")[0] not in _TORCH_DEFAULT_MODULES
    ]
    if extra:
        raise NotTensorsOnlyError(
            f"{what}: refusing to load while extra globals are allowed ({extra[:3]})"
        )
    try:
        with warnings.catch_warnings():
            # torch warns about a file's pickle protocol before its restricted unpickler
            # reads it; the unpickler's verdict is the one that counts, not the warning.
            warnings.filterwarnings("ignore", "Detected pickle protocol", UserWarning)
            loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise NotTensorsOnlyError(f"{what}: {_CONVERT} ({_first_line(exc)})") from None
    except (RuntimeError, EOFError, OSError) as exc:
        why = _first_line(exc)
        raise NotTensorsOnlyError(f"{what}: not a torch file of tensors: {why}") from None
    if not isinstance(loaded, dict):
        kind = type(loaded).__name__
        raise NotTensorsOnlyError(f"{what}: expected a dict of tensors, got {kind}")
    return loaded


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]


def state_dict_of(loaded: Mapping[str, Any], what: str) -> dict[str, Any]:
    """The model's state dict: a bare one, or ``model`` of a forja checkpoint."""
    import torch  # noqa: PLC0415

    state = loaded.get("model") if loaded.get("format") == TENSOR_CHECKPOINT_FORMAT else loaded
    if not isinstance(state, Mapping) or not state:
        raise NotTensorsOnlyError(f"{what}: no state dict in the file")
    bad = [k for k, v in state.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise NotTensorsOnlyError(f"{what}: not a state dict of tensors (e.g. {bad[0]!r})")
    return dict(state)


def transfer(model: Any, state: Mapping[str, Any]) -> int:
    """Load the tensors whose name and shape match into ``model``; how many did."""
    own = model.state_dict()
    matched = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    model.load_state_dict(matched, strict=False)
    return len(matched)


def save_tensor_checkpoint(trainer: Any, path: Path) -> Path:
    """The trainer's resumable state as tensors and numbers (no modules) at ``path``."""
    import torch  # noqa: PLC0415

    ema = trainer.ema.ema if trainer.ema is not None else trainer.model
    stopper = {
        k: v
        for k, v in vars(trainer.stopper).items()
        if isinstance(v, (int, float, bool, str)) or v is None
    }
    checkpoint = {
        "format": TENSOR_CHECKPOINT_FORMAT,
        "model": {k: v.float() for k, v in deepcopy(ema).state_dict().items()},
        "optimizer": trainer.optimizer.state_dict(),
        "updates": int(trainer.ema.updates) if trainer.ema is not None else 0,
        "epoch": int(trainer.epoch),
        "best_fitness": None if trainer.best_fitness is None else float(trainer.best_fitness),
        "stopper": stopper,
    }
    tmp = path.with_suffix(".tmp")
    torch.save(checkpoint, tmp)
    tmp.replace(path)
    return path


def resume_state(loaded: Mapping[str, Any], what: str) -> dict[str, Any]:
    """A forja tensor checkpoint's parts, checked; anything else is refused."""
    if loaded.get("format") != TENSOR_CHECKPOINT_FORMAT:
        raise NotTensorsOnlyError(
            f"{what}: not a forja YOLO checkpoint ({TENSOR_CHECKPOINT_FORMAT}); "
            "checkpoints of earlier forja versions are pickles and are not resumed"
        )
    state = state_dict_of(loaded, what)
    optimizer, epoch = loaded.get("optimizer"), loaded.get("epoch")
    if not isinstance(optimizer, dict) or not isinstance(epoch, int) or epoch < 0:
        raise NotTensorsOnlyError(f"{what}: checkpoint without optimizer state or epoch")
    return {**loaded, "model": state}


def restore(trainer: Any, ckpt: Mapping[str, Any]) -> None:
    """Continue a run at the epoch after ``ckpt``'s: optimizer, EMA, best, early stopping."""
    groups = zip(ckpt["optimizer"]["param_groups"], trainer.optimizer.param_groups, strict=True)
    for saved, group in groups:
        saved["fused"] = group.get("fused")  # the device, not the checkpoint, picks the kernel
    trainer.optimizer.load_state_dict(ckpt["optimizer"])
    if trainer.ema is not None:
        trainer.ema.ema.load_state_dict(ckpt["model"])
        trainer.ema.updates = int(ckpt.get("updates") or 0)
    trainer.best_fitness = ckpt.get("best_fitness")
    trainer.stopper.__dict__.update(ckpt.get("stopper") or {})
    trainer.start_epoch = ckpt["epoch"] + 1
    trainer.scheduler.last_epoch = trainer.start_epoch - 1
