"""Partial transfer: copy the pretrained tensors whose name and shape match.

Fine-tuning often starts from a checkpoint of a different (larger) architecture;
only tensors with the same name and shape can move. The report lists exactly what
moved and what did not, and why, and is logged and shipped with the model.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from forja_trainer.errors import IncompatiblePretrained

__all__ = ["TransferReport", "extract_state_dict", "load_pretrained_state", "transfer_compatible"]

log = logging.getLogger(__name__)

_WRAPPER_KEYS = ("model_state_dict", "state_dict", "params_ema", "params", "model", "net")
_PREFIXES = ("module.", "model.", "net.")


@dataclass
class TransferReport:
    transferred: list[str] = field(default_factory=list)
    shape_mismatch: dict[str, tuple[list[int], list[int]]] = field(default_factory=dict)
    """name -> (pretrained shape, model shape)."""
    missing_in_pretrained: list[str] = field(default_factory=list)
    unused_from_pretrained: list[str] = field(default_factory=list)
    transferred_parameters: int = 0
    model_parameters: int = 0
    pretrained_tensors: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "transferred": self.transferred,
            "shape_mismatch": {
                k: {"pretrained": a, "model": b} for k, (a, b) in self.shape_mismatch.items()
            },
            "missing_in_pretrained": self.missing_in_pretrained,
            "unused_from_pretrained": self.unused_from_pretrained,
            "transferred_parameters": self.transferred_parameters,
            "model_parameters": self.model_parameters,
            "pretrained_tensors": self.pretrained_tensors,
        }

    def summary(self) -> str:
        model_tensors = (
            len(self.transferred) + len(self.shape_mismatch) + len(self.missing_in_pretrained)
        )
        return (
            f"transferred {len(self.transferred)} of {model_tensors} model tensors "
            f"({self.transferred_parameters:,} of {self.model_parameters:,} parameters) from "
            f"{self.pretrained_tensors} pretrained tensors; {len(self.shape_mismatch)} shape "
            f"mismatches, {len(self.missing_in_pretrained)} missing, "
            f"{len(self.unused_from_pretrained)} unused"
        )


def extract_state_dict(obj: Any) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint: a bare state dict or one wrapped under a usual key."""
    if isinstance(obj, dict):
        for key in _WRAPPER_KEYS:
            inner = obj.get(key)
            if (
                isinstance(inner, dict)
                and inner
                and all(isinstance(v, torch.Tensor) for v in inner.values())
            ):
                obj = inner
                break
    if not isinstance(obj, dict) or not obj:
        raise IncompatiblePretrained("the pretrained file holds no state dict")
    tensors = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise IncompatiblePretrained("the pretrained file holds no tensors")
    out = {}
    for name, tensor in tensors.items():
        bare = name
        for prefix in _PREFIXES:
            if name.startswith(prefix):
                bare = name[len(prefix) :]
                break
        out[bare] = tensor
    return out


def load_pretrained_state(path: Path) -> dict[str, torch.Tensor]:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise IncompatiblePretrained(
            f"cannot load {path.name} with weights_only=True "
            f"(only plain tensors are accepted): {exc}",
            field="spec.pretrained.uri",
        ) from exc
    return extract_state_dict(obj)


def transfer_compatible(model: nn.Module, pretrained: dict[str, torch.Tensor]) -> TransferReport:
    own = model.state_dict()
    report = TransferReport(
        model_parameters=sum(t.numel() for t in own.values()),
        pretrained_tensors=len(pretrained),
    )
    update = {}
    for name, tensor in own.items():
        src = pretrained.get(name)
        if src is None:
            report.missing_in_pretrained.append(name)
        elif tuple(src.shape) != tuple(tensor.shape):
            report.shape_mismatch[name] = (list(src.shape), list(tensor.shape))
        else:
            update[name] = src.to(dtype=tensor.dtype)
            report.transferred.append(name)
            report.transferred_parameters += tensor.numel()
    report.unused_from_pretrained = sorted(set(pretrained) - set(own))
    model.load_state_dict(update, strict=False)
    log.info("pretrained transfer: %s", report.summary())
    for name in report.transferred:
        log.info("  moved     %s %s", name, list(own[name].shape))
    for name, (a, b) in report.shape_mismatch.items():
        log.info("  not moved %s: shape %s in pretrained, %s in model", name, a, b)
    for name in report.missing_in_pretrained:
        log.info("  not moved %s: absent from pretrained", name)
    return report
