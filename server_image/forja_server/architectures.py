"""Rebuilding a state dict's architecture by name (``manifest.architecture``).

The architectures are the package ``forja_architectures`` (torch only, shared with
the trainer image and copied into this one). It imports torch, so it is imported
here only when a state dict is rebuilt, which happens only where torch is installed
(the default server image has none: ``models/torch_state_dict.py``). Names
registered here (tests, plug-ins) are looked up first.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from forja_server.errors import ArtifactError

if TYPE_CHECKING:
    import torch

__all__ = ["build_architecture", "register_architecture"]

Factory = Callable[..., "torch.nn.Module"]
_LOCAL: dict[str, Factory] = {}
SHARED_ARCHITECTURES = "forja_architectures"


def register_architecture(name: str, factory: Factory) -> None:
    _LOCAL[name] = factory


def _shared_factory(name: str) -> Factory | None:
    """``forja_architectures.build(name, config)``, if that package knows the name."""
    try:
        from forja_architectures import build, names
    except ImportError:  # no torch: nothing to rebuild with
        return None
    if name not in names():
        return None

    def via_build(**cfg: Any) -> torch.nn.Module:
        return build(name, cfg)

    return via_build


def build_architecture(name: str, config: Mapping[str, Any]) -> torch.nn.Module:
    factory = _LOCAL.get(name) or _shared_factory(name)
    if factory is None:
        raise ArtifactError(
            f"unknown architecture {name!r}: not in {SHARED_ARCHITECTURES} "
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
