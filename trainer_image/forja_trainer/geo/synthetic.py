"""Small learnable multispectral scenes for tests, samples and benchmarks.

A scene is a smooth per-band background with pixel noise, plus round
"objects" (class 1 in the mask) with their own spectral signature, plus
optional small square "anomalies" with a signature no normal pixel has.
It is written strip by strip, so even a 3000x4000x5 benchmark scene never sits
in memory whole.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin
from rasterio.windows import Window

__all__ = ["SceneFiles", "make_geotiff_dataset", "write_scene"]

OBJECT_SIGNATURE = np.array([-0.6, 0.9, 0.5, -0.4, 0.7], dtype=np.float32)
ANOMALY_SIGNATURE = np.array([2.5, -2.0, 2.5, -2.0, 2.5], dtype=np.float32)
STRIP_ROWS = 256


@dataclass(frozen=True)
class SceneFiles:
    image: Path
    mask: Path | None
    anomalies: Path | None


def _signature(base: np.ndarray, bands: int) -> np.ndarray:
    return np.resize(base, bands).reshape(bands, 1, 1)


def write_scene(
    image: Path,
    *,
    height: int,
    width: int,
    bands: int = 5,
    seed: int = 0,
    mask: Path | None = None,
    anomalies: Path | None = None,
    n_objects: int | None = None,
    n_anomalies: int = 0,
    crs: str = "EPSG:32630",
    origin: tuple[float, float] = (500_000.0, 4_500_000.0),
    pixel_size: float = 10.0,
) -> SceneFiles:
    """Write one scene (float32 bands) and optionally its class mask and anomaly mask (uint8)."""
    rng = np.random.default_rng(seed)
    if n_objects is None:
        n_objects = max(2, height * width // 1500)
    radius = rng.uniform(4, 10, n_objects)
    centres = np.column_stack([rng.uniform(0, height, n_objects), rng.uniform(0, width, n_objects)])
    side = rng.integers(3, 7, n_anomalies)
    corners = np.column_stack(
        [
            rng.integers(0, max(1, height - 8), n_anomalies),
            rng.integers(0, max(1, width - 8), n_anomalies),
        ]
    )
    base = rng.uniform(0.8, 1.2, (bands, 1, 1)).astype(np.float32)
    freq = rng.uniform(1 / 400, 1 / 120, (bands, 2)).astype(np.float32)
    phase = rng.uniform(0, 2 * np.pi, (bands, 2)).astype(np.float32)
    transform = from_origin(origin[0], origin[1], pixel_size, pixel_size)
    common = {
        "driver": "GTiff",
        "height": height,
        "width": width,
        "crs": crs,
        "transform": transform,
        "compress": "deflate",
    }
    if height >= 256 and width >= 256:
        common.update(tiled=True, blockxsize=256, blockysize=256)
    image.parent.mkdir(parents=True, exist_ok=True)
    outs = {"image": rasterio.open(image, "w", count=bands, dtype="float32", **common)}
    for key, path in (("mask", mask), ("anomalies", anomalies)):
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            outs[key] = rasterio.open(path, "w", count=1, dtype="uint8", **common)
    try:
        obj_sig = _signature(OBJECT_SIGNATURE, bands)
        ano_sig = _signature(ANOMALY_SIGNATURE, bands)
        xs = np.arange(width, dtype=np.float32)
        for top in range(0, height, STRIP_ROWS):
            n = min(STRIP_ROWS, height - top)
            ys = np.arange(top, top + n, dtype=np.float32)
            yy, xx = np.meshgrid(ys, xs, indexing="ij")
            strip_rng = np.random.default_rng([seed, top])
            data = base + 0.3 * (
                np.sin(2 * np.pi * freq[:, :1, None] * yy + phase[:, :1, None])
                * np.cos(2 * np.pi * freq[:, 1:, None] * xx + phase[:, 1:, None])
            )
            data += strip_rng.normal(0, 0.05, data.shape).astype(np.float32)
            cls = np.zeros((n, width), dtype=np.uint8)
            near = np.abs(centres[:, 0] - (top + n / 2)) <= radius + n / 2
            for (cy, cx), r in zip(centres[near], radius[near], strict=True):
                cls[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = 1
            data = np.where(cls[None] == 1, data + obj_sig, data)
            ano = np.zeros((n, width), dtype=np.uint8)
            for (ay, ax), s in zip(corners, side, strict=True):
                y0, y1 = max(ay, top), min(ay + s, top + n)
                if y0 < y1:
                    ano[y0 - top : y1 - top, ax : ax + s] = 1
            data = np.where(ano[None] == 1, base + ano_sig, data).astype(np.float32)
            window = Window(0, top, width, n)
            outs["image"].write(data, window=window)
            if "mask" in outs:
                outs["mask"].write(cls[None], window=window)
            if "anomalies" in outs:
                outs["anomalies"].write(ano[None], window=window)
    finally:
        for out in outs.values():
            out.close()
    return SceneFiles(image, mask, anomalies)


def make_geotiff_dataset(
    root: Path,
    *,
    scenes: int = 2,
    size: tuple[int, int] = (128, 128),
    bands: int = 5,
    seed: int = 0,
    masks: bool = True,
    val_scenes: int = 1,
    eval_anomalies: int = 0,
) -> Path:
    """A dataset folder: ``images/`` + ``masks/`` (train), ``val/`` likewise, and
    with ``eval_anomalies`` > 0 an ``eval/`` folder whose scenes carry anomalies
    and ``eval/anomalies/`` ground truth (the training scenes stay normal)."""
    h, w = size
    for i in range(scenes):
        write_scene(
            root / "images" / f"scene{i}.tif",
            height=h,
            width=w,
            bands=bands,
            seed=seed + i,
            mask=root / "masks" / f"scene{i}.tif" if masks else None,
        )
    for i in range(val_scenes):
        write_scene(
            root / "val" / "images" / f"val{i}.tif",
            height=h,
            width=w,
            bands=bands,
            seed=seed + 1000 + i,
            mask=root / "val" / "masks" / f"val{i}.tif" if masks else None,
        )
    if eval_anomalies:
        write_scene(
            root / "eval" / "images" / "eval0.tif",
            height=h,
            width=w,
            bands=bands,
            seed=seed + 2000,
            anomalies=root / "eval" / "anomalies" / "eval0.tif",
            n_anomalies=eval_anomalies,
        )
    return root
