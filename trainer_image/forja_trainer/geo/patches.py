"""A lazy dataset of windowed patches over GeoTIFF scenes.

Only the patch index (three int32 per patch) lives in memory; each item is one
windowed read. That is what keeps training memory flat however large the
scenes are (ModelAI's lazy dataset took training from ~900 MB to tens of MB).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from rasterio.io import DatasetReader
from rasterio.windows import Window
from torch.utils.data import Dataset

from forja_tiles import grid_starts
from forja_trainer.geo.gdalcache import open_raster
from forja_trainer.geo.scenes import Scene

__all__ = ["GeoPatchDataset", "normalise", "read_window"]


def normalise(
    data: np.ndarray, mean: Sequence[float], std: Sequence[float], *, in_place: bool = False
) -> np.ndarray:
    """``(x - mean) / std`` per band of a ``(bands, H, W)`` or ``(N, bands, H, W)`` array.

    ``in_place`` reuses ``data``'s buffer when it is float32 already (a batch made for
    this alone): one batch in memory instead of three.
    """
    m = np.asarray(mean, dtype=np.float32).reshape(-1, 1, 1)
    s = np.asarray(std, dtype=np.float32).reshape(-1, 1, 1)
    if in_place:
        x = data.astype(np.float32, copy=False)
        x -= m
        x /= s
        return x
    return ((data.astype(np.float32, copy=False) - m) / s).astype(np.float32, copy=False)


def read_window(
    src: DatasetReader,
    row: int,
    col: int,
    size: int,
    indexes: int | list[int] | None = None,
    *,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Read a ``size`` x ``size`` window, zero-padded where it runs past the scene.

    ``out`` (of the window's shape and the raster's dtype) is filled in place: a batch
    of tiles read straight into its slots, with no copy beside it.
    """
    window = Window(col, row, size, size)
    if row + size <= src.height and col + size <= src.width:
        data: np.ndarray = src.read(indexes, window=window, out=out)
        return data
    padded: np.ndarray = src.read(indexes, window=window, out=out, boundless=True, fill_value=0)
    return padded


class GeoPatchDataset(Dataset[tuple[torch.Tensor, torch.Tensor] | torch.Tensor]):
    """Patches of ``patch`` px every ``stride`` px over each scene, read on demand.

    Items are normalised float32 ``(bands, patch, patch)`` tensors, paired with
    an int64 ``(patch, patch)`` mask when ``with_masks``. Open files are cached
    per process and dropped on pickling, so DataLoader workers open their own.
    ``opener`` is rasterio's: a picklable callable returning a file object for a
    path (an fsspec filesystem's ``open``, or one that counts what is read).
    """

    def __init__(
        self,
        scenes: Sequence[Scene],
        *,
        patch: int,
        stride: int,
        mean: Sequence[float],
        std: Sequence[float],
        with_masks: bool = False,
        opener: Callable[..., Any] | None = None,
    ) -> None:
        if with_masks and any(s.mask is None for s in scenes):
            raise ValueError("with_masks needs a mask for every scene")
        self.scenes = list(scenes)
        self.patch = patch
        self.stride = stride
        self.mean = list(mean)
        self.std = list(std)
        self.with_masks = with_masks
        self.opener = opener
        # Built in numpy, row-major as window_origins: a list of tuples first cost 1.4 MiB
        # of RSS for the 11,532 patches of a 3000x4000 scene.
        parts = [np.zeros((0, 3), np.int32)]
        for i, scene in enumerate(self.scenes):
            rows = np.asarray(grid_starts(scene.height, patch, stride), np.int32)
            cols = np.asarray(grid_starts(scene.width, patch, stride), np.int32)
            r, c = np.meshgrid(rows, cols, indexing="ij")
            parts.append(np.stack([np.full(r.size, i, np.int32), r.ravel(), c.ravel()], axis=1))
        self.index = np.concatenate(parts)
        self._open: dict[str, DatasetReader] = {}

    def __len__(self) -> int:
        return int(self.index.shape[0])

    def _reader(self, path: str) -> DatasetReader:
        reader = self._open.get(path)
        if reader is None:
            reader = open_raster(path, opener=self.opener)
            self._open[path] = reader
        return reader

    def sample_groups(self) -> np.ndarray:
        """The raster block each patch starts in, as one id per patch across all scenes.

        :class:`~forja_trainer.loop.EpochSampler` draws the patches of one block after
        another, so GDAL decodes a block once for its patches (a patch reaches at most
        the blocks right and below) and a small block cache suffices. Drawn at random
        over the scene instead, each patch decoded up to four blocks of its own, or the
        cache grew to hold the whole scene decoded. A block narrower than a patch (a
        striped TIFF's rows) groups by the patch's size instead.
        """
        ids = np.zeros(len(self), np.int64)
        first = 0
        for i, scene in enumerate(self.scenes):
            mine = self.index[:, 0] == i
            rows, cols = (max(side, self.patch) for side in scene.block)
            across = -(-scene.width // cols)
            ids[mine] = first + (self.index[mine, 1] // rows) * across + self.index[mine, 2] // cols
            first += -(-scene.height // rows) * across
        return ids

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor] | torch.Tensor:
        scene_idx, row, col = (int(v) for v in self.index[i])
        scene = self.scenes[scene_idx]
        image = read_window(self._reader(str(scene.image)), row, col, self.patch)
        x = torch.from_numpy(normalise(image, self.mean, self.std))
        if not self.with_masks:
            return x
        assert scene.mask is not None
        mask = read_window(self._reader(str(scene.mask)), row, col, self.patch, indexes=1)
        return x, torch.from_numpy(mask.astype(np.int64))

    def close(self) -> None:
        for reader in self._open.values():
            reader.close()
        self._open.clear()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_open"] = {}
        return state
