"""Model architectures by name, so a state dict can be rebuilt from a manifest.

A package of its own, copied into the trainer image and the server image: torch
only, no imports of the trainers or the server (``.importlinter``), so the model
server can import it without Ultralytics, rasterio or the loop. Each module here
registers its classes with :func:`register`; :func:`build` finds them by the
manifest's ``architecture`` and constructs them with ``arch_config``::

    model = build(manifest.architecture, manifest.arch_config)
    model.load_state_dict(torch.load(weights, weights_only=True))

Adding an architecture: a new module in this package with ``@register("name")`` on
an ``nn.Module`` whose constructor takes JSON-friendly keyword arguments.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from typing import Any, TypeVar

from torch import nn

__all__ = ["UnknownArchitecture", "build", "names", "register"]

M = TypeVar("M", bound=type[nn.Module])

_REGISTRY: dict[str, type[nn.Module]] = {}
_discovered = False


class UnknownArchitecture(KeyError):  # noqa: N818 - named for the reason it reports
    """No architecture is registered under that name."""


def register(name: str) -> Callable[[M], M]:
    def decorate(cls: M) -> M:
        existing = _REGISTRY.get(name)
        if existing is not None and existing is not cls:
            raise ValueError(f"architecture {name!r} registered twice ({existing}, {cls})")
        _REGISTRY[name] = cls
        return cls

    return decorate


def _discover() -> None:
    global _discovered  # noqa: PLW0603 - a one-time import of this package's modules
    if _discovered:
        return
    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")
    _discovered = True


def names() -> list[str]:
    _discover()
    return sorted(_REGISTRY)


def build(name: str, config: dict[str, Any] | None = None) -> nn.Module:
    _discover()
    cls = _REGISTRY.get(name)
    if cls is None:
        raise UnknownArchitecture(
            f"unknown architecture {name!r}; known: {', '.join(sorted(_REGISTRY))}"
        )
    return cls(**(config or {}))
