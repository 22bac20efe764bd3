"""GeoTIFF in -> GeoTIFF out for segmentation and anomaly models.

A scene is cut into tiles of the model's patch size with overlap, the tiles go
through the batcher like any request, and each output pixel is the average of
every tile that covered it, weighted by a window that falls off toward each
tile's edges (a model is least sure near the border it cannot see past, and a
tile entering or leaving the average then moves the result by almost nothing,
so class changes do not line up with tile edges). The result is written with
the input's CRS and transform (rasterio, in memory). Segmentation answers one
uint8 band of class ids; anomaly models one float32 band of reconstruction error
(MSE over bands), with the threshold and the share of anomalous pixels as tags.
Pixels that are nodata in every band of the input are nodata in the output,
which declares its nodata value.
"""

from __future__ import annotations

import warnings
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from forja_api.artifact import Preprocessing
from forja_server.errors import InvalidInput, UnsupportedMediaType
from forja_server.limits import DEFAULT_LIMITS, MAX_OVERLAP, RequestLimits

__all__ = [
    "GeoResult", "blend_window", "nodata_mask", "predict_geotiff", "tile_count", "tile_starts",
    "tiled_average",
]

Array = npt.NDArray[Any]
RunTiles = Callable[[Array], Awaitable[Array]]


def tile_count(height: int, width: int, tile: int, overlap: float) -> int:
    """How many tiles :func:`tiled_average` cuts a scene into (before running any)."""
    stride = max(1, round(tile * (1.0 - overlap)))
    return len(tile_starts(max(height, tile), tile, stride)) * len(
        tile_starts(max(width, tile), tile, stride))


def tile_starts(size: int, tile: int, stride: int) -> list[int]:
    """Tile origins covering [0, size): regular steps, the last one flush with the end."""
    if size <= tile:
        return [0]
    starts = list(range(0, size - tile + 1, stride))
    if starts[-1] != size - tile:
        starts.append(size - tile)
    return starts


WINDOW_FLOOR = 1e-3
"""Least weight of a tile's pixel: keeps every weight positive (a scene's own edge is
covered only by tile edges) while a tile's border still counts next to nothing."""


def blend_window(tile: int) -> Array:
    """Separable Hann weights of a ``tile`` x ``tile`` output, highest at its centre.

    Sampled at pixel centres, so at 50% overlap neighbouring windows sum to one and
    the blend is a smooth cross-fade; at no overlap each pixel has one tile and the
    weights cancel out.
    """
    w = np.sin(np.pi * (np.arange(tile, dtype=np.float64) + 0.5) / tile) ** 2
    w = np.maximum(w, WINDOW_FLOOR)
    return np.outer(w, w).astype(np.float32)


async def tiled_average(
    image: Array, tile: int, overlap: float, run: RunTiles, chunk: int = 32
) -> Array:
    """Run ``run`` over overlapping tiles of a CHW image and blend the outputs per pixel
    (average weighted by :func:`blend_window`)."""
    _, h, w = image.shape
    ph, pw = max(0, tile - h), max(0, tile - w)
    if ph or pw:  # a scene smaller than one tile: pad by reflection, crop afterwards
        small = h <= 1 or w <= 1 or ph >= h or pw >= w
        mode: Literal["reflect", "edge"] = "edge" if small else "reflect"
        image = np.pad(image, ((0, 0), (0, ph), (0, pw)), mode=mode)
    _, hh, ww = image.shape
    stride = max(1, round(tile * (1.0 - overlap)))
    origins = [(y, x) for y in tile_starts(hh, tile, stride) for x in tile_starts(ww, tile, stride)]
    acc: Array | None = None
    weight = np.zeros((hh, ww), dtype=np.float32)
    window = blend_window(tile)
    for i in range(0, len(origins), chunk):
        part = origins[i : i + chunk]
        tiles = np.stack([image[:, y : y + tile, x : x + tile] for y, x in part])
        out = await run(tiles)
        if acc is None:
            acc = np.zeros((out.shape[1], hh, ww), dtype=np.float32)
        for (y, x), o in zip(part, out, strict=True):
            acc[:, y : y + tile, x : x + tile] += o * window
            weight[y : y + tile, x : x + tile] += window
    assert acc is not None
    return (acc / weight)[:, :h, :w]


def nodata_mask(image: Array, nodatavals: Sequence[float | None]) -> Array | None:
    """Per band, where a CHW image holds its band's declared nodata value (NaN included);
    None when no band declares one."""
    if all(v is None for v in nodatavals):
        return None
    mask = np.zeros(image.shape, dtype=bool)
    for b, v in enumerate(nodatavals):
        if v is not None:
            mask[b] = np.isnan(image[b]) if np.isnan(v) else image[b] == v
    return mask


def _fill_nodata(x: Array, mask: Array) -> Array:
    # Nodata values (often -9999 or 0) would reach valid pixels through the model's
    # receptive field; each band's mean of valid pixels is the most neutral stand-in.
    for b in range(x.shape[0]):
        if mask[b].any():
            valid = x[b][~mask[b]]
            x[b][mask[b]] = float(valid.mean()) if valid.size else 0.0
    return x


def _class_nodata(classes: int) -> tuple[str, int]:
    """Output dtype of a class map and its nodata value: the dtype's largest, never a class."""
    return ("uint8", 255) if classes < 255 else ("uint16", 65535)


@dataclass
class GeoResult:
    data: bytes
    tags: dict[str, str]


def _normalise(img: Array, pre: Preprocessing) -> Array:
    # Scenes are scaled by 1 unless the model says otherwise (images by 1/255).
    x = img.astype(np.float32) * float(pre.scale if pre.scale is not None else 1.0)
    for key, op, stat in (("mean", np.subtract, pre.mean), ("std", np.divide, pre.std)):
        if stat is not None:
            v = np.asarray(stat, dtype=np.float32)
            if v.ndim == 1 and v.size not in (1, x.shape[0]):
                raise InvalidInput(f"the model's band {key} has {v.size} values, the "
                                   f"image {x.shape[0]} bands", field="file")
            x = op(x, v.reshape(-1, 1, 1) if v.ndim == 1 else v)
    return x


async def predict_geotiff(
    data: bytes,
    *,
    task: str,
    bands: int | None,
    tile: int,
    overlap: float,
    preprocessing: Preprocessing,
    threshold: float | None,
    run: RunTiles,
    limits: RequestLimits = DEFAULT_LIMITS,
) -> GeoResult:
    from rasterio.errors import NotGeoreferencedWarning, RasterioIOError
    from rasterio.io import MemoryFile

    if task not in ("segmentation", "anomaly"):
        raise InvalidInput(f"GeoTIFF output is for segmentation and anomaly models, not {task}",
                           field="model")
    if not 0.0 <= overlap <= MAX_OVERLAP:
        raise InvalidInput(f"overlap must be in [0, {MAX_OVERLAP}]", field="overlap")
    if not data.startswith((b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")):
        raise UnsupportedMediaType("body: not a TIFF file", field="file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with MemoryFile(data) as mem, mem.open() as src:
                # Everything below is known from the header: refuse before reading pixels.
                if bands is not None and src.count != bands:
                    raise InvalidInput(f"file: the model takes {bands} bands, the image has "
                                       f"{src.count}", field="file")
                values = src.width * src.height * src.count
                if values > limits.max_geotiff_values:
                    raise InvalidInput(
                        f"file: {src.width}x{src.height} with {src.count} bands is over the "
                        f"{limits.max_geotiff_values}-value limit", field="file")
                tiles = tile_count(src.height, src.width, tile, overlap)
                if tiles > limits.max_tiles:
                    raise InvalidInput(
                        f"file: {src.width}x{src.height} at overlap {overlap} makes {tiles} "
                        f"tiles of {tile}, over the limit of {limits.max_tiles}; use a smaller "
                        f"scene or less overlap", field="file")
                image = src.read()
                profile = src.profile.copy()
                nodatavals = src.nodatavals
    except RasterioIOError as exc:
        raise InvalidInput(f"file: not a readable GeoTIFF: {exc}", field="file") from None
    band_nodata = nodata_mask(image, nodatavals)
    x = _normalise(image, preprocessing)
    if band_nodata is not None:
        x = _fill_nodata(x, band_nodata)
    if not np.all(np.isfinite(x)):
        x = np.nan_to_num(x)
    # Only where every band is nodata is there nothing to predict from.
    nodata = band_nodata.all(axis=0) if band_nodata is not None else np.zeros(x.shape[1:], bool)
    valid = ~nodata
    out = await tiled_average(x, tile, overlap, run)
    tags: dict[str, str] = {"forja_task": task, "forja_tile": str(tile),
                            "forja_overlap": str(overlap)}
    fill: float
    if task == "segmentation":
        dtype, fill = _class_nodata(out.shape[0])
        if out.shape[0] > 1:
            band = np.argmax(out, axis=0).astype(dtype)
        else:
            band = (out[0] >= (0.0 if threshold is None else threshold)).astype(dtype)
        counts = np.bincount(band[valid])
        n = max(1, int(valid.sum()))
        tags.update({f"class_{i}_share": f"{c / n:.6f}" for i, c in enumerate(counts)})
    else:
        band = np.mean((out - x) ** 2, axis=0).astype(np.float32)
        scored = band[valid]
        limit = (float(threshold) if threshold is not None else
                 float(scored.mean() + 3 * scored.std()) if scored.size else 0.0)
        dtype, fill = "float32", float("nan")
        share = float(np.mean(scored > limit)) if scored.size else 0.0
        tags.update({"threshold": f"{limit:.6g}", "anomalous_share": f"{share:.6f}"})
    profile.pop("nodata", None)
    if band_nodata is not None:
        band[nodata] = fill
        profile["nodata"] = fill
        tags["nodata_share"] = f"{float(nodata.mean()):.6f}"
    profile.update(count=1, dtype=dtype, driver="GTiff", compress="deflate")
    for key in ("blockxsize", "blockysize", "tiled", "photometric", "interleave"):
        profile.pop(key, None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with MemoryFile() as mem:
            with mem.open(**profile) as dst:
                dst.write(band[None])
                dst.update_tags(**tags)
            result = mem.read()
    return GeoResult(result, tags)
