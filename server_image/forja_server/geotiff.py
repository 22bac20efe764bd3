"""GeoTIFF in -> GeoTIFF out for segmentation and anomaly models, window by window.

A scene is cut into tiles of the model's patch size with overlap, the tiles go
through the batcher like any request, and each output pixel is the average of
every tile that covered it, weighted by a window that falls off toward each
tile's edges (a model is least sure near the border it cannot see past, and a
tile entering or leaving the average then moves the result by almost nothing,
so class changes do not line up with tile edges). Segmentation answers one
uint8 band of class ids; anomaly models one float32 band of reconstruction error
(MSE over bands), with the threshold and the share of anomalous pixels as tags.
Pixels that are nodata in every band of the input are nodata in the output,
which declares its nodata value; the output keeps the input's CRS and transform.

Nothing reads the scene whole: tiles are cut from full-width strips of one tile's
height (windowed reads), the blend is kept only for the rows tiles still touch
(:class:`forja_tiles.RowBlender`), and finished rows are written out at once. A
scene in memory (a small request body) is read and written through rasterio's
``MemoryFile``; a scene on disk (a large body streamed to a temporary file, or a
scene named in the artifact store) is read in place and its map written to a
file, so memory is bounded by a tile batch and a strip, not by the scene.
"""

from __future__ import annotations

import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from forja_api.artifact import Preprocessing
from forja_server.errors import InvalidInput, UnsupportedMediaType
from forja_server.limits import DEFAULT_LIMITS, MAX_OVERLAP, RequestLimits
from forja_tiles import RowBlender, blend_window, grid_starts, stride_for, tile_count

__all__ = [
    "TIFF_MAGIC", "GeoResult", "nodata_mask", "predict_geotiff", "tiled_average",
]

Array = npt.NDArray[Any]
RunTiles = Callable[[Array], Awaitable[Array]]

TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
"""The first four bytes of a TIFF (and a BigTIFF), little- and big-endian."""
GDAL_CACHE_MB = 16
"""GDAL's block cache defaults to 5% of RAM; bounded so a scene's blocks do not pile up."""
STATS_ROWS = 64
"""Rows per strip of the pass that finds each band's mean of valid pixels."""


def _pad_mode(height: int, width: int, tile: int) -> Literal["reflect", "edge"] | None:
    """How a scene smaller than one tile is padded (reflection, or its edge when too thin
    to reflect), or None when it needs no padding."""
    ph, pw = max(0, tile - height), max(0, tile - width)
    if not (ph or pw):
        return None
    small = height <= 1 or width <= 1 or ph >= height or pw >= width
    return "edge" if small else "reflect"


async def tiled_average(
    image: Array, tile: int, overlap: float, run: RunTiles, chunk: int = 32
) -> Array:
    """Run ``run`` over overlapping tiles of a CHW image and blend the outputs per pixel
    (average weighted by :func:`forja_tiles.blend_window`)."""
    _, h, w = image.shape
    rows: list[Array] = []
    async for block in _blend_rows(lambda top, bottom: image[:, top:bottom], h, w, tile=tile,
                                   overlap=overlap, run=run, chunk=chunk):
        rows.append(block)
    return np.concatenate(rows, axis=1)


async def _blend_rows(
    read: Callable[[int, int], Array], h: int, w: int, *, tile: int, overlap: float,
    run: RunTiles, chunk: int,
) -> AsyncIterator[Array]:
    """Blended model outputs of a ``h`` x ``w`` scene, yielded as ``(K, rows, w)`` blocks
    top to bottom; ``read(top, bottom)`` gives the scene's model-ready rows."""
    mode = _pad_mode(h, w, tile)
    ph, pw = max(0, tile - h), max(0, tile - w)
    stride = stride_for(tile, overlap)
    cols = grid_starts(max(w, tile), tile, stride)
    blender = RowBlender(max(w, tile), tile, blend_window(tile))
    for r in grid_starts(max(h, tile), tile, stride):
        done = blender.start_row(r)
        if done is not None:
            yield done[:, :, :w]
        strip = read(r, min(r + tile, h))
        if mode is not None:  # smaller than one tile: pad by reflection, crop afterwards
            strip = np.pad(strip, ((0, 0), (0, ph), (0, pw)), mode=mode)
        for i in range(0, len(cols), chunk):
            part = cols[i : i + chunk]
            out = await run(np.stack([strip[:, :, c : c + tile] for c in part]))
            for c, o in zip(part, out, strict=True):
                blender.add(c, o)
        del strip, out  # not alive while the rows above are finished and the next is read
    yield blender.finish(h)[:, :, :w]


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


@dataclass
class GeoResult:
    """The map: ``data`` for a scene answered in memory, ``path`` (a file the caller
    sends and removes) for a scene answered on disk."""

    tags: dict[str, str]
    data: bytes = b""
    path: Path | None = None


def _normalise(img: Array, pre: Preprocessing) -> Array:
    """``img`` scaled and normalised, in place when it is float32 already (a strip read
    for this alone): one strip in memory, not three."""
    # Scenes are scaled by 1 unless the model says otherwise (images by 1/255).
    x = img.astype(np.float32, copy=False)
    x *= np.float32(pre.scale if pre.scale is not None else 1.0)
    for key, op, stat in (("mean", np.subtract, pre.mean), ("std", np.divide, pre.std)):
        if stat is not None:
            v = np.asarray(stat, dtype=np.float32)
            if v.ndim == 1 and v.size not in (1, x.shape[0]):
                raise InvalidInput(f"the model's band {key} has {v.size} values, the "
                                   f"image {x.shape[0]} bands", field="file")
            op(x, v.reshape(-1, 1, 1) if v.ndim == 1 else v, out=x)
    return x


@dataclass
class _Scene:
    """Model-ready rows of an open scene: normalised, nodata filled, finite."""

    src: Any  # rasterio DatasetReader
    pre: Preprocessing
    fill: list[float] | None = None
    """Per band, the mean of its valid (normalised) pixels; None when no band has nodata."""

    @property
    def declares_nodata(self) -> bool:
        return any(v is not None for v in self.src.nodatavals)

    def raw(self, top: int, bottom: int) -> tuple[Array, Array | None]:
        from rasterio.windows import Window

        image = self.src.read(window=Window(0, top, self.src.width, bottom - top))
        mask = nodata_mask(image, self.src.nodatavals)  # before the pixels change in place
        return _normalise(image, self.pre), mask

    def find_fill(self) -> None:
        """One streamed pass: each band's mean over its valid pixels (float64 sums)."""
        total = np.zeros(self.src.count, np.float64)
        count = np.zeros(self.src.count, np.int64)
        for top in range(0, self.src.height, STATS_ROWS):
            x, mask = self.raw(top, min(top + STATS_ROWS, self.src.height))
            assert mask is not None
            for b in range(x.shape[0]):
                valid = x[b][~mask[b]]
                total[b] += float(valid.sum(dtype=np.float64))
                count[b] += valid.size
        self.fill = [float(t / n) if n else 0.0 for t, n in zip(total, count, strict=True)]

    def rows(self, top: int, bottom: int) -> tuple[Array, Array | None]:
        """``(bands, rows, width)`` model input and, when the scene declares nodata, where
        every band is nodata (nothing to predict from)."""
        x, mask = self.raw(top, bottom)
        if mask is not None:
            # Nodata values (often -9999 or 0) would reach valid pixels through the model's
            # receptive field; each band's mean of valid pixels is the most neutral stand-in.
            assert self.fill is not None
            for b in range(x.shape[0]):
                x[b][mask[b]] = self.fill[b]
        if not np.all(np.isfinite(x)):
            x = np.nan_to_num(x)
        if mask is None:
            return x, None
        everywhere: Array = np.all(mask, axis=0)
        return x, everywhere


def _class_nodata(classes: int) -> tuple[str, float]:
    """Output dtype of a class map and its nodata value: the dtype's largest, never a class."""
    return ("uint8", 255.0) if classes < 255 else ("uint16", 65535.0)


@dataclass
class _Scores:
    """What the tags say, summed block by block as the map is written."""

    pixels: int = 0
    nodata: int = 0
    classes: Array = field(default_factory=lambda: np.zeros(0, np.int64))
    total: float = 0.0
    total_sq: float = 0.0
    above: int = 0

    def add_classes(self, band: Array) -> None:
        counts = np.bincount(band.ravel())
        if counts.size > self.classes.size:
            counts[: self.classes.size] += self.classes
            self.classes = counts
        else:
            self.classes[: counts.size] += counts

    def add_errors(self, scored: Array, limit: float | None) -> None:
        self.total += float(scored.sum(dtype=np.float64))
        self.total_sq += float(np.square(scored, dtype=np.float64).sum())
        if limit is not None:
            self.above += int(np.count_nonzero(scored > limit))


def _check_request(task: str, overlap: float, head: bytes) -> None:
    if task not in ("segmentation", "anomaly"):
        raise InvalidInput(f"GeoTIFF output is for segmentation and anomaly models, not {task}",
                           field="model")
    if not 0.0 <= overlap <= MAX_OVERLAP:
        raise InvalidInput(f"overlap must be in [0, {MAX_OVERLAP}]", field="overlap")
    if not head.startswith(TIFF_MAGIC):
        raise UnsupportedMediaType("body: not a TIFF file", field="file")


def _check_header(src: Any, *, bands: int | None, tile: int, overlap: float, max_values: int,
                  max_tiles: int) -> None:
    # Everything here is known from the header: refuse before reading pixels.
    if bands is not None and src.count != bands:
        raise InvalidInput(f"file: the model takes {bands} bands, the image has "
                           f"{src.count}", field="file")
    values = src.width * src.height * src.count
    if values > max_values:
        raise InvalidInput(
            f"file: {src.width}x{src.height} with {src.count} bands is over the "
            f"{max_values}-value limit", field="file")
    tiles = tile_count(src.height, src.width, tile, overlap)
    if tiles > max_tiles:
        raise InvalidInput(
            f"file: {src.width}x{src.height} at overlap {overlap} makes {tiles} "
            f"tiles of {tile}, over the limit of {max_tiles}; use a smaller "
            f"scene or less overlap", field="file")


@contextmanager
def _quiet_rasterio() -> Iterator[None]:
    """Plain (not georeferenced) TIFFs are fine; unreadable ones are the client's fault."""
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning, RasterioIOError

    try:
        # In bytes: rasterio hands an integer GDAL_CACHEMAX to GDALSetCacheMax64 as it
        # is (16 was a 16-byte cache: every window decoded its blocks again).
        with warnings.catch_warnings(), rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB * 2**20):
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            yield
    except RasterioIOError as exc:
        raise InvalidInput(f"file: not a readable GeoTIFF: {exc}", field="file") from None


def _output_profile(src: Any, dtype: str, fill: float | None) -> dict[str, Any]:
    profile: dict[str, Any] = src.profile.copy()
    profile.pop("nodata", None)
    if fill is not None:
        profile["nodata"] = fill
    profile.update(count=1, dtype=dtype, driver="GTiff", compress="deflate")
    for key in ("blockxsize", "blockysize", "tiled", "photometric", "interleave"):
        profile.pop(key, None)
    return profile


async def predict_geotiff(
    scene: bytes | Path,
    *,
    task: str,
    bands: int | None,
    tile: int,
    overlap: float,
    preprocessing: Preprocessing,
    threshold: float | None,
    run: RunTiles,
    limits: RequestLimits = DEFAULT_LIMITS,
    out_path: Path | None = None,
) -> GeoResult:
    """The map of a scene given as bytes (answered in ``GeoResult.data``) or as a file on
    disk (answered in the file ``out_path``, which then must be given)."""
    from rasterio.io import MemoryFile

    if isinstance(scene, Path):
        with scene.open("rb") as fh:
            head = fh.read(4)
        max_values, max_tiles = limits.max_scene_values, limits.max_scene_tiles
    else:
        head = scene[:4]
        max_values, max_tiles = limits.max_geotiff_values, limits.max_tiles
    _check_request(task, overlap, head)
    with _quiet_rasterio(), ExitStack() as stack:
        if isinstance(scene, Path):
            import rasterio

            src = stack.enter_context(rasterio.open(scene))
        else:
            src = stack.enter_context(stack.enter_context(MemoryFile(scene)).open())
        _check_header(src, bands=bands, tile=tile, overlap=overlap, max_values=max_values,
                      max_tiles=max_tiles)
        source = _Scene(src, preprocessing)
        if source.declares_nodata:
            source.find_fill()
        return await _write_map(source, stack, task=task, tile=tile, overlap=overlap,
                                threshold=threshold, run=run, out_path=out_path)


async def _write_map(
    source: _Scene, stack: ExitStack, *, task: str, tile: int, overlap: float,
    threshold: float | None, run: RunTiles, out_path: Path | None,
) -> GeoResult:
    import rasterio
    from rasterio.io import MemoryFile
    from rasterio.windows import Window

    src = source.src
    h, w = src.height, src.width
    blocks = _blend_rows(lambda top, bottom: source.rows(top, bottom)[0], h, w, tile=tile,
                         overlap=overlap, run=run, chunk=32)
    first = await anext(blocks)
    channels = first.shape[0]
    dtype, nodata_value = (_class_nodata(channels) if task == "segmentation"
                           else ("float32", float("nan")))
    profile = _output_profile(src, dtype, nodata_value if source.declares_nodata else None)
    memory = None
    if out_path is None:
        memory = stack.enter_context(MemoryFile())
        dst = stack.enter_context(memory.open(**profile))
    else:
        dst = stack.enter_context(rasterio.open(out_path, "w+", **profile))
    scores = _Scores()
    top = 0
    block: Array | None = first
    while block is not None:
        n = block.shape[1]
        x, nodata = source.rows(top, top + n) if task == "anomaly" or source.declares_nodata \
            else (None, None)
        valid = ~nodata if nodata is not None else None
        if task == "segmentation":
            if channels > 1:
                band = np.argmax(block, axis=0).astype(dtype)
            else:
                band = (block[0] >= (0.0 if threshold is None else threshold)).astype(dtype)
            scores.add_classes(band[valid] if valid is not None else band)
        else:
            assert x is not None
            band = np.mean((block - x) ** 2, axis=0).astype(np.float32)
            scores.add_errors(band[valid] if valid is not None else band, threshold)
        scores.pixels += band.size
        if nodata is not None:
            band[nodata] = nodata_value
            scores.nodata += int(nodata.sum())
        dst.write(band[None], window=Window(0, top, w, n))
        top += n
        block = await anext(blocks, None)
    tags = _tags(task, scores, dst, tile=tile, overlap=overlap, threshold=threshold,
                 declares_nodata=source.declares_nodata)
    dst.update_tags(**tags)
    dst.close()
    if memory is not None:
        return GeoResult(tags, data=memory.read())
    return GeoResult(tags, path=out_path)


def _tags(task: str, scores: _Scores, dst: Any, *, tile: int, overlap: float,
          threshold: float | None, declares_nodata: bool) -> dict[str, str]:
    tags: dict[str, str] = {"forja_task": task, "forja_tile": str(tile),
                            "forja_overlap": str(overlap)}
    valid = scores.pixels - scores.nodata
    n = max(1, valid)
    if task == "segmentation":
        counts = np.trim_zeros(scores.classes, "b")
        tags.update({f"class_{i}_share": f"{c / n:.6f}" for i, c in enumerate(counts)})
    else:
        if threshold is not None:
            limit, above = float(threshold), float(scores.above)
        else:
            mean = scores.total / n
            std = float(np.sqrt(max(scores.total_sq / n - mean**2, 0.0)))
            limit = mean + 3 * std if valid else 0.0
            above = float(_count_above(dst, limit))
        tags.update({"threshold": f"{limit:.6g}", "anomalous_share": f"{above / n:.6f}"})
    if declares_nodata:
        tags["nodata_share"] = f"{scores.nodata / max(1, scores.pixels):.6f}"
    return tags


def _count_above(dst: Any, limit: float) -> int:
    """Pixels of the written error map over ``limit`` (a second, streamed pass: the
    threshold is known only once every error is)."""
    from rasterio.windows import Window

    above = 0
    for top in range(0, dst.height, STATS_ROWS):
        band = dst.read(1, window=Window(0, top, dst.width, min(STATS_ROWS, dst.height - top)))
        above += int(np.count_nonzero(band > limit))  # NaN (nodata) compares false
    return above
