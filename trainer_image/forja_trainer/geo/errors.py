"""Errors of the GeoTIFF data layer.

::

    GeoError                 catch-all for this package
    └── GeoDatasetError      a scene or mask is missing, unreadable or inconsistent

Each error names the file (and, where it applies, the property) it is about, so
a trainer can turn it into an ``InvalidDataset`` result a person can act on.
"""

from __future__ import annotations

__all__ = ["GeoDatasetError", "GeoError"]


class GeoError(Exception):
    """Base of every error raised by ``forja_trainer.geo``."""


class GeoDatasetError(GeoError, ValueError):
    """A GeoTIFF dataset cannot be used as given."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
