"""Tiled inference over a GeoTIFF: overlapping tiles averaged, written with the input georeference.

Tiles are processed one row of tiles at a time. Rows above the current tile row
can no longer receive contributions, so they are averaged, finalised and
written out at once; the accumulator only ever holds ``tile`` rows of the
scene. Peak memory is therefore a few tile-rows, independent of scene height.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.windows import Window

from forja_tiles import RowBlender, grid_starts
from forja_trainer.geo.gdalcache import open_raster
from forja_trainer.geo.patches import normalise, read_window

__all__ = ["Finalize", "Predict", "TileSpec", "TiledResult", "output_profile", "predict_tiled"]

Predict = Callable[[np.ndarray], np.ndarray]
"""``(N, bands, tile, tile)`` normalised float32 -> ``(N, K, tile, tile)`` float32."""
Finalize = Callable[[np.ndarray], np.ndarray]
"""Averaged ``(K, rows, width)`` -> the ``(out_count, rows, width)`` array to write."""
BlockHook = Callable[[np.ndarray, Window], None]

@dataclass(frozen=True)
class TileSpec:
    tile: int = 128
    stride: int = 64
    """``tile - stride`` pixels of overlap between neighbours."""
    batch_size: int = 16

    def __post_init__(self) -> None:
        if not 0 < self.stride <= self.tile:
            raise ValueError(f"stride must be in 1..tile, got {self.stride} for tile {self.tile}")


@dataclass(frozen=True)
class TiledResult:
    path: Path
    height: int
    width: int
    tiles: int
    crs: str | None
    transform: tuple[float, ...]


def output_profile(src_profile: dict[str, Any], count: int, dtype: str) -> dict[str, Any]:
    """A GeoTIFF profile with the source's size, CRS and transform and a new band layout."""
    width, height = int(src_profile["width"]), int(src_profile["height"])
    profile: dict[str, Any] = {
        "driver": "GTiff",
        "width": width,
        "height": height,
        "count": count,
        "dtype": dtype,
        "crs": src_profile.get("crs"),
        "transform": src_profile.get("transform"),
        "compress": "deflate",
    }
    if width >= 256 and height >= 256:
        profile.update(tiled=True, blockxsize=256, blockysize=256)
    return profile


def predict_tiled(
    src_path: Path,
    dst_path: Path,
    predict: Predict,
    *,
    spec: TileSpec,
    mean: Sequence[float],
    std: Sequence[float],
    out_count: int,
    out_dtype: str = "float32",
    finalize: Finalize | None = None,
    on_block: BlockHook | None = None,
) -> TiledResult:
    """Run ``predict`` over overlapping tiles of ``src_path`` and write ``dst_path``.

    Overlaps are averaged (each output pixel is the mean of every tile that
    covered it), ``finalize`` turns the averaged channels into the written
    bands (e.g. argmax to a class map), and ``on_block`` sees each written
    block, e.g. to count anomalous pixels without re-reading the output.
    """
    t = spec.tile
    tiles = 0
    with open_raster(src_path) as src:
        height, width = src.height, src.width
        cols = grid_starts(width, t, spec.stride)
        profile = output_profile(src.profile, out_count, out_dtype)
        blender = RowBlender(max(width, t), t)  # the plain mean of overlapping tiles
        dst_path.parent.mkdir(parents=True, exist_ok=True)
        with rasterio.open(dst_path, "w", **profile) as dst:

            def write(top: int, blended: np.ndarray) -> None:
                mean_block = blended[:, :, :width]
                out = finalize(mean_block) if finalize is not None else mean_block
                window = Window(0, top, width, mean_block.shape[1])
                dst.write(out.astype(out_dtype, copy=False), window=window)
                if on_block is not None:
                    on_block(out, window)

            for r in grid_starts(height, t, spec.stride):
                top = blender.top
                done = blender.start_row(r)
                if done is not None:
                    write(top, done)
                for i in range(0, len(cols), spec.batch_size):
                    batch_cols = cols[i : i + spec.batch_size]
                    batch = np.stack([read_window(src, r, c, t) for c in batch_cols])
                    pred = predict(normalise(batch, mean, std, in_place=True))
                    del batch  # not alive beside the next batch
                    for j, c in enumerate(batch_cols):
                        blender.add(c, pred[j])
                    tiles += len(batch_cols)
            write(blender.top, blender.finish(height))
        crs = src.crs.to_string() if src.crs else None
        transform = tuple(src.transform)[:6]
    return TiledResult(dst_path, height, width, tiles, crs, transform)
