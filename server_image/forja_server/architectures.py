"""Rebuilding a state dict's architecture by name (``manifest.architecture``).

The architectures live in ``forja_trainer.architectures`` (torch only, no trainer
imports) so the server image can build them without the trainers. Names
registered here (tests, plug-ins) are looked up first.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from forja_server.errors import ArtifactError

if TYPE_CHECKING:
    import torch

__all__ = ["build_architecture", "register_architecture"]

Factory = Callable[..., "torch.nn.Module"]
_LOCAL: dict[str, Factory] = {}
TRAINER_ARCHITECTURES = "forja_trainer.architectures"


def register_architecture(name: str, factory: Factory) -> None:
    _LOCAL[name] = factory


def _trainer_factory(name: str) -> Factory | None:
    """``forja_trainer.architectures.build(name, config)``, if that package knows the name."""
    try:
        mod = importlib.import_module(TRAINER_ARCHITECTURES)
    except ImportError:
        return None
    if name not in mod.names():
        return None
    build = mod.build

    def via_build(**cfg: Any) -> torch.nn.Module:
        module: torch.nn.Module = build(name, cfg)
        return module

    return via_build


def build_architecture(name: str, config: Mapping[str, Any]) -> torch.nn.Module:
    factory = _LOCAL.get(name) or _trainer_factory(name)
    if factory is None:
        raise ArtifactError(
            f"unknown architecture {name!r}: not in {TRAINER_ARCHITECTURES} "
            f"nor registered ({sorted(_LOCAL)})",
            field="architecture",
        )
    try:
        return factory(**dict(config))
    except TypeError as exc:
        raise ArtifactError(
            f"architecture {name!r} refused arch_config {dict(config)}: {exc}",
            field="arch_config",
        ) from exc
