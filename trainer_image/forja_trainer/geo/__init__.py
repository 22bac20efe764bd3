"""Multispectral GeoTIFF data: lazy windowed patches, tiled inference, synthetic scenes.

Built on rasterio; nothing here ever reads a whole scene into memory.
"""

from forja_tiles import grid_starts, window_origins
from forja_trainer.geo.errors import GeoDatasetError, GeoError
from forja_trainer.geo.patches import GeoPatchDataset, normalise, read_window
from forja_trainer.geo.scenes import (
    Scene,
    band_stats,
    check_mask_classes,
    discover_scenes,
    open_scene,
)
from forja_trainer.geo.tiled import TiledResult, TileSpec, predict_tiled

__all__ = [
    "GeoDatasetError",
    "GeoError",
    "GeoPatchDataset",
    "Scene",
    "TileSpec",
    "TiledResult",
    "band_stats",
    "check_mask_classes",
    "discover_scenes",
    "grid_starts",
    "normalise",
    "open_scene",
    "predict_tiled",
    "read_window",
    "window_origins",
]
