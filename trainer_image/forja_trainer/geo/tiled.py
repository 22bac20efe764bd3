"""Tiled inference over a GeoTIFF: overlapping tiles averaged, written with the input georeference.

Tiles are processed one row of tiles at a time. Rows above the current tile row
can no longer receive contributions, so they are averaged, finalised and
written out at once; the accumulator only ever holds ``tile`` rows of the
scene. Peak memory is therefore a few tile-rows, independent of scene height.

What stays in memory besides (bench/trainer/geo_memory.py, a 3000x4000x5 scene):
the model's activations for one batch, which grow with the batch's pixels (2 MiB a
128 px tile for the bench's autoencoder, so 32 MiB at 16 tiles, 13.5% of the scene
by themselves): :attr:`TileSpec.batch_pixels` bounds a batch's pixels whatever the
tile size (1 tile of 128 px by default); the batch itself, read tile by tile into
one buffer; the blend band; one output block row, gathered so GDAL compresses each
output block once; GDAL's read cache (:mod:`forja_trainer.geo.gdalcache`).
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

DEFAULT_BATCH_PIXELS = 4 * 64 * 64
"""Input pixels a batch may hold: 4 tiles of 64 px (the trainers' default tile), 1 of
128 px. The model's activations grow with them: for the bench's autoencoder 2 MiB a
128 px tile, 32-34 MiB at 16 tiles (13.5-14.7% of a 3000x4000x5 scene by themselves).
On that scene, a whole pass peaked 20-21.5 MiB over idle at 1 tile a batch in 11.5 s,
22.6-24.4 MiB (10%, the target's edge) at 2 in 10 s, 30-32 MiB at 4 in 9 s: past a
few tiles a CPU gains little from a bigger batch."""


@dataclass(frozen=True)
class TileSpec:
    tile: int = 128
    stride: int = 64
    """``tile - stride`` pixels of overlap between neighbours."""
    batch_size: int = 16
    """The most tiles per batch; fewer where :attr:`batch_pixels` says so."""
    batch_pixels: int | None = DEFAULT_BATCH_PIXELS
    """The most input pixels per batch (at least one tile); None: ``batch_size`` alone."""

    def __post_init__(self) -> None:
        if not 0 < self.stride <= self.tile:
            raise ValueError(f"stride must be in 1..tile, got {self.stride} for tile {self.tile}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")

    @property
    def tiles_per_batch(self) -> int:
        if self.batch_pixels is None:
            return self.batch_size
        return max(1, min(self.batch_size, self.batch_pixels // (self.tile * self.tile)))


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
    per_batch = spec.tiles_per_batch
    tiles = 0
    with open_raster(src_path) as src:
        height, width = src.height, src.width
        cols = grid_starts(width, t, spec.stride)
        profile = output_profile(src.profile, out_count, out_dtype)
        blender = RowBlender(max(width, t), t)  # the plain mean of overlapping tiles
        batch = np.empty((per_batch, src.count, t, t), np.dtype(src.dtypes[0]))
        dst_path.parent.mkdir(parents=True, exist_ok=True)
        with rasterio.open(dst_path, "w", **profile) as dst:
            rows = _BlockRows(dst, int(profile.get("blockysize", height)), out_dtype)

            def write(top: int, blended: np.ndarray) -> None:
                mean_block = blended[:, :, :width]
                out = finalize(mean_block) if finalize is not None else mean_block
                out = out.astype(out_dtype, copy=False)
                rows.add(top, out)
                if on_block is not None:
                    on_block(out, Window(0, top, width, mean_block.shape[1]))

            for r in grid_starts(height, t, spec.stride):
                top = blender.top
                done = blender.start_row(r)
                if done is not None:
                    write(top, done)
                for i in range(0, len(cols), per_batch):
                    batch_cols = cols[i : i + per_batch]
                    for j, c in enumerate(batch_cols):
                        read_window(src, r, c, t, out=batch[j])
                    n = len(batch_cols)
                    pred = predict(normalise(batch[:n], mean, std, in_place=True))
                    for j, c in enumerate(batch_cols):
                        blender.add(c, pred[j])
                    del pred  # not alive beside the next batch's prediction
                    tiles += n
            write(blender.top, blender.finish(height))
            rows.flush()
        crs = src.crs.to_string() if src.crs else None
        transform = tuple(src.transform)[:6]
    return TiledResult(dst_path, height, width, tiles, crs, transform)


class _BlockRows:
    """Finished output rows gathered into whole rows of the output's blocks, then written.

    GDAL compresses a block when it leaves its cache; written 64 rows at a time under a
    small cache, a 256-row block left it part done and was compressed and appended
    again for each part (the 3000x4000 float32 heatmap came out at 105 MB; gathered,
    43 MB). Here each block is written and compressed once; the buffer is one block
    row of the output, which GDAL's cache held before anyway.
    """

    def __init__(self, dst: Any, block_rows: int, dtype: str) -> None:
        self.dst = dst
        self.block_rows = min(block_rows, dst.height)
        self.buffer = np.empty((dst.count, self.block_rows, dst.width), np.dtype(dtype))
        self.top = 0
        """Output row of the buffer's first row."""
        self.filled = 0

    def add(self, top: int, rows: np.ndarray) -> None:
        if top != self.top + self.filled:
            raise ValueError(f"rows must come in order: got row {top}, expected "
                             f"{self.top + self.filled}")
        done = 0
        while done < rows.shape[1]:
            take = min(rows.shape[1] - done, self.block_rows - self.filled)
            self.buffer[:, self.filled : self.filled + take] = rows[:, done : done + take]
            self.filled += take
            done += take
            if self.filled == self.block_rows:
                self.flush()

    def flush(self) -> None:
        if self.filled:
            window = Window(0, self.top, self.dst.width, self.filled)
            self.dst.write(self.buffer[:, : self.filled], window=window)
            self.top += self.filled
            self.filled = 0
