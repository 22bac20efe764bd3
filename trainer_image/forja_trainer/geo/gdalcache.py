"""GDAL's block cache, bounded in every process that reads scenes.

GDAL keeps the decoded blocks of every raster read in one process-wide cache whose
default cap is 5% of RAM: 1.2 GiB on a 24 GiB machine, more than a 3000x4000x5
float32 scene (229 MiB), so random patches over a scene kept all of it decoded
(244 MiB of RSS after 1,500 patches). Nothing in a pod set a cap, so the geo
code sets one itself: every module of :mod:`forja_trainer.geo` opens rasters with
:func:`open_raster`, which caps the cache first in whichever process reads
(DataLoader workers included), and the bound holds outside Kubernetes too.

The cap is ``FORJA_GDAL_CACHE_MB`` (default :data:`DEFAULT_CACHE_MB`); a
``GDAL_CACHEMAX`` set by hand in the environment is GDAL's own knob and wins.
A small cap costs no speed as long as reads come block by block
(:meth:`forja_trainer.geo.GeoPatchDataset.sample_groups`): the blocks a patch
needs are the ones the patch before it decoded.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import rasterio
from rasterio.env import get_gdal_config, set_gdal_config
from rasterio.io import DatasetReader

__all__ = ["CACHE_ENV", "DEFAULT_CACHE_MB", "cache_mb", "cap_block_cache", "open_raster"]

CACHE_ENV = "FORJA_GDAL_CACHE_MB"
DEFAULT_CACHE_MB = 4
"""Three 256x256 blocks of a 5-band float32 scene: drawn block by block, a patch finds
the blocks it spans decoded by the patch before it. Measured on a 3000x4000x5 scene
(bench/trainer/geo_memory.py), 100 training steps peaked 28-30 MiB over idle at 8 MB,
23-24 MiB at 4 MB in the same 2.7 s, 21-24 MiB at 2 MB in twice the time."""


def cache_mb() -> int:
    """The cap in MB: ``FORJA_GDAL_CACHE_MB`` or the default; an error names the variable."""
    raw = os.environ.get(CACHE_ENV, "").strip()
    if not raw:
        return DEFAULT_CACHE_MB
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{CACHE_ENV}={raw!r}: expected a whole number of MB") from None
    if value < 1:
        raise ValueError(f"{CACHE_ENV}={raw!r}: the cache needs at least 1 MB")
    return value


def cap_block_cache() -> int:
    """Cap GDAL's block cache for this process (idempotent); returns the cap in bytes.

    Set as GDAL's process-wide cap, not in a ``rasterio.Env``: it must hold while a
    dataset reads, long after the call that opened it returned (an outer
    ``rasterio.Env`` restores it on exit). In bytes: rasterio hands an integer
    ``GDAL_CACHEMAX`` to ``GDALSetCacheMax64`` as it is, so
    ``rasterio.Env(GDAL_CACHEMAX=16)``, used here before, was a 16-byte cache and
    every tile decoded its blocks again (only GDAL's own environment variable reads
    small numbers as MB).
    """
    if "GDAL_CACHEMAX" not in os.environ:
        want = cache_mb() * 2**20
        if get_gdal_config("GDAL_CACHEMAX") != want:
            set_gdal_config("GDAL_CACHEMAX", want)
    cap: int = get_gdal_config("GDAL_CACHEMAX")
    return cap


def open_raster(path: Path | str, **kwargs: Any) -> DatasetReader:
    """``rasterio.open`` with GDAL's block cache capped first."""
    cap_block_cache()
    reader: DatasetReader = rasterio.open(path, **kwargs)
    return reader
