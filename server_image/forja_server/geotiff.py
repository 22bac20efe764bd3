"""GeoTIFF in -> GeoTIFF out for segmentation and anomaly models.

A scene is cut into tiles of the model's patch size with overlap, the tiles go
through the batcher like any request, and each output pixel is the average of
every tile that covered it; the result is written with the input's CRS and
transform (rasterio, in memory). Segmentation answers one uint8 band of class
ids; anomaly models one float32 band of reconstruction error (MSE over bands),
with the threshold and the share of anomalous pixels as tags.
"""

from __future__ import annotations

import warnings
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from forja_server.errors import InvalidInput, UnsupportedMediaType

__all__ = ["GeoResult", "predict_geotiff", "tile_starts", "tiled_average"]

Array = npt.NDArray[Any]
RunTiles = Callable[[Array], Awaitable[Array]]
MAX_PIXELS = 64_000_000


def tile_starts(size: int, tile: int, stride: int) -> list[int]:
    """Tile origins covering [0, size): regular steps, the last one flush with the end."""
    if size <= tile:
        return [0]
    starts = list(range(0, size - tile + 1, stride))
    if starts[-1] != size - tile:
        starts.append(size - tile)
    return starts


async def tiled_average(
    image: Array, tile: int, overlap: float, run: RunTiles, chunk: int = 32
) -> Array:
    """Run ``run`` over overlapping tiles of a CHW image and average the outputs per pixel."""
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
    for i in range(0, len(origins), chunk):
        part = origins[i : i + chunk]
        tiles = np.stack([image[:, y : y + tile, x : x + tile] for y, x in part])
        out = await run(tiles)
        if acc is None:
            acc = np.zeros((out.shape[1], hh, ww), dtype=np.float32)
        for (y, x), o in zip(part, out, strict=True):
            acc[:, y : y + tile, x : x + tile] += o
            weight[y : y + tile, x : x + tile] += 1.0
    assert acc is not None
    return (acc / weight)[:, :h, :w]


@dataclass
class GeoResult:
    data: bytes
    tags: dict[str, str]


def _normalise(img: Array, pre: dict[str, Any]) -> Array:
    x = img.astype(np.float32) * float(pre.get("scale", 1.0))
    for key, op in (("mean", np.subtract), ("std", np.divide)):
        stat = pre.get(f"band_{key}", pre.get(key))  # trainers write band_mean/band_std
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
    preprocessing: dict[str, Any],
    threshold: float | None,
    run: RunTiles,
) -> GeoResult:
    from rasterio.errors import NotGeoreferencedWarning, RasterioIOError
    from rasterio.io import MemoryFile

    if task not in ("segmentation", "anomaly"):
        raise InvalidInput(f"GeoTIFF output is for segmentation and anomaly models, not {task}",
                           field="model")
    if not 0.0 <= overlap < 1.0:
        raise InvalidInput("overlap must be in [0, 1)", field="overlap")
    if not data.startswith((b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")):
        raise UnsupportedMediaType("body: not a TIFF file", field="file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with MemoryFile(data) as mem, mem.open() as src:
                if src.width * src.height > MAX_PIXELS:
                    raise InvalidInput(f"file: {src.width}x{src.height} is over the "
                                       f"{MAX_PIXELS}-pixel limit", field="file")
                image = src.read()
                profile = src.profile.copy()
    except RasterioIOError as exc:
        raise InvalidInput(f"file: not a readable GeoTIFF: {exc}", field="file") from None
    if bands is not None and image.shape[0] != bands:
        raise InvalidInput(f"file: the model takes {bands} bands, the image has "
                           f"{image.shape[0]}", field="file")
    x = _normalise(image, preprocessing)
    if not np.all(np.isfinite(x)):
        x = np.nan_to_num(x)
    out = await tiled_average(x, tile, overlap, run)
    tags: dict[str, str] = {"forja_task": task, "forja_tile": str(tile),
                            "forja_overlap": str(overlap)}
    if task == "segmentation":
        if out.shape[0] > 1:
            band = np.argmax(out, axis=0).astype(np.uint8)
        else:
            band = (out[0] >= (0.0 if threshold is None else threshold)).astype(np.uint8)
        dtype = "uint8"
        counts = np.bincount(band.reshape(-1))
        tags.update({f"class_{i}_share": f"{c / band.size:.6f}" for i, c in enumerate(counts)})
    else:
        band = np.mean((out - x) ** 2, axis=0).astype(np.float32)
        limit = float(threshold) if threshold is not None else float(band.mean() + 3 * band.std())
        dtype = "float32"
        tags.update({"threshold": f"{limit:.6g}",
                     "anomalous_share": f"{float(np.mean(band > limit)):.6f}"})
    profile.update(count=1, dtype=dtype, driver="GTiff", compress="deflate")
    profile.pop("nodata", None)
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
