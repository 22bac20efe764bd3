"""Finding, validating and summarising multispectral GeoTIFF scenes without loading them.

A GeoTIFF dataset is a folder with ``images/<name>.tif`` (any number of bands)
and, for supervised tasks, ``masks/<name>.tif`` (one band of integer class ids,
same size and georeferencing). Everything here reads headers, decimated
overviews or windows, never a whole scene.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rasterio.errors import RasterioError
from rasterio.windows import Window

from forja_trainer.geo.errors import GeoDatasetError
from forja_trainer.geo.gdalcache import open_raster

__all__ = [
    "Scene",
    "band_stats",
    "check_mask_classes",
    "discover_scenes",
    "iter_row_windows",
    "open_scene",
]

TIF_SUFFIXES = (".tif", ".tiff")


@dataclass(frozen=True)
class Scene:
    """One image (and optional mask) as validated headers."""

    image: Path
    mask: Path | None
    height: int
    width: int
    count: int
    crs: str | None
    transform: tuple[float, ...]
    block: tuple[int, int] = (256, 256)
    """Rows and columns of the image's internal blocks (tiles or strips): GDAL decodes
    and caches whole blocks, so reads that share blocks are cheap together."""


def open_scene(image: Path, mask: Path | None = None) -> Scene:
    """Read and check the headers of an image and its mask; errors name the file."""
    try:
        with open_raster(image) as src:
            if not np.issubdtype(np.dtype(src.dtypes[0]), np.number):
                raise GeoDatasetError(str(image), f"band dtype {src.dtypes[0]} is not numeric")
            scene = Scene(
                image=image,
                mask=mask,
                height=src.height,
                width=src.width,
                count=src.count,
                crs=src.crs.to_string() if src.crs else None,
                transform=tuple(src.transform)[:6],
                block=src.block_shapes[0],
            )
    except RasterioError as exc:
        raise GeoDatasetError(str(image), f"not a readable raster ({exc})") from exc
    if mask is not None:
        try:
            with open_raster(mask) as msk:
                if msk.count != 1:
                    raise GeoDatasetError(str(mask), f"a mask needs 1 band, found {msk.count}")
                if (msk.height, msk.width) != (scene.height, scene.width):
                    raise GeoDatasetError(
                        str(mask),
                        f"mask is {msk.height}x{msk.width} but its image is "
                        f"{scene.height}x{scene.width}",
                    )
                if not np.issubdtype(np.dtype(msk.dtypes[0]), np.integer):
                    raise GeoDatasetError(
                        str(mask), f"mask dtype {msk.dtypes[0]} is not an integer class id"
                    )
                if msk.crs and scene.crs and msk.crs.to_string() != scene.crs:
                    raise GeoDatasetError(
                        str(mask), f"mask CRS {msk.crs} differs from image CRS {scene.crs}"
                    )
        except RasterioError as exc:
            raise GeoDatasetError(str(mask), f"not a readable raster ({exc})") from exc
    return scene


def discover_scenes(
    root: Path, *, images: str = "images", masks: str | None = "masks", require_masks: bool = False
) -> list[Scene]:
    """All scenes under ``root/images`` (with ``root/masks`` of the same name when present).

    Every scene must have the same band count, the property a model is built for.
    """
    image_dir = root / images
    if not image_dir.is_dir():
        raise GeoDatasetError(str(image_dir), "missing: a geotiff dataset needs an images/ folder")
    paths = sorted(p for p in image_dir.iterdir() if p.suffix.lower() in TIF_SUFFIXES)
    if not paths:
        raise GeoDatasetError(str(image_dir), "no .tif images found")
    scenes: list[Scene] = []
    for path in paths:
        mask: Path | None = None
        if masks is not None:
            candidate = root / masks / path.name
            if candidate.exists():
                mask = candidate
            elif require_masks:
                raise GeoDatasetError(str(candidate), f"missing: no mask for image {path.name}")
        scenes.append(open_scene(path, mask))
    counts = {s.count for s in scenes}
    if len(counts) > 1:
        detail = ", ".join(f"{s.image.name}={s.count}" for s in scenes)
        raise GeoDatasetError(str(image_dir), f"scenes have different band counts: {detail}")
    return scenes


def iter_row_windows(height: int, width: int, rows: int = 256) -> list[Window]:
    """Full-width row strips: a streaming pass over a scene with bounded memory."""
    return [Window(0, r, width, min(rows, height - r)) for r in range(0, height, rows)]


def check_mask_classes(scene: Scene, num_classes: int) -> list[int]:
    """Class ids present in the mask (streamed); raises if any is outside ``0..num_classes-1``."""
    if scene.mask is None:
        return []
    seen: set[int] = set()
    with open_raster(scene.mask) as msk:
        for window in iter_row_windows(scene.height, scene.width):
            seen.update(int(v) for v in np.unique(msk.read(1, window=window)))
    bad = sorted(v for v in seen if v < 0 or v >= num_classes)
    if bad:
        raise GeoDatasetError(
            str(scene.mask), f"class ids {bad} outside 0..{num_classes - 1} (num_classes)"
        )
    return sorted(seen)


def band_stats(
    scenes: Sequence[Scene], max_pixels: int = 1_000_000
) -> tuple[list[float], list[float]]:
    """Per-band mean and std from decimated reads (about ``max_pixels`` per scene).

    A decimated read lets GDAL sample the scene at a coarser resolution, so the
    statistics of a 3000x4000 scene cost a few MB instead of the whole scene.
    """
    total = np.zeros(scenes[0].count, dtype=np.float64)
    total_sq = np.zeros_like(total)
    n = 0
    for scene in scenes:
        factor = max(1.0, float(np.sqrt(scene.height * scene.width / max_pixels)))
        shape = (
            scene.count,
            max(1, int(scene.height / factor)),
            max(1, int(scene.width / factor)),
        )
        with open_raster(scene.image) as src:
            data = src.read(out_shape=shape).astype(np.float64).reshape(scene.count, -1)
        total += data.sum(axis=1)
        total_sq += (data**2).sum(axis=1)
        n += data.shape[1]
    mean = total / n
    std = np.sqrt(np.maximum(total_sq / n - mean**2, 0.0))
    std = np.where(std < 1e-6, 1.0, std)  # a constant band must not divide by zero
    return [float(v) for v in mean], [float(v) for v in std]
