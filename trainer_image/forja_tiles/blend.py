"""Blending overlapping tile outputs into one map, a band of rows at a time."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["WINDOW_FLOOR", "RowBlender", "blend_window"]

Array = npt.NDArray[Any]

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


class RowBlender:
    """The weighted average of overlapping tile outputs, kept for one band of rows.

    Tiles come one tile row at a time, top to bottom (the order of
    :func:`forja_tiles.grid.grid_starts`). :meth:`start_row` moves the band down to
    the next tile row and returns the rows above it, which no later tile can touch:
    they are final. :meth:`finish` returns the rest. The band holds ``tile`` rows of
    ``width`` columns for each output channel, whatever the scene's height.

    ``window`` weighs each tile's pixels (e.g. :func:`blend_window`); None is the
    plain mean.
    """

    def __init__(self, width: int, tile: int, window: Array | None = None) -> None:
        self.width = width
        self.tile = tile
        self.window = (np.ones((tile, tile), np.float32) if window is None
                       else np.asarray(window, np.float32))
        if self.window.shape != (tile, tile):
            raise ValueError(f"window is {self.window.shape}, tiles are {tile}x{tile}")
        self.top = 0
        """Scene row of the band's first row."""
        self._acc: Array | None = None
        self._weight = np.zeros((tile, width), np.float32)

    def add(self, col: int, out: Array) -> None:
        """Add one tile's ``(channels, tile, tile)`` output at column ``col`` of the band."""
        t = self.tile
        if self._acc is None:
            self._acc = np.zeros((out.shape[0], t, self.width), np.float32)
        self._acc[:, :, col : col + t] += out * self.window
        self._weight[:, col : col + t] += self.window

    def start_row(self, row: int) -> Array | None:
        """Move the band to start at scene row ``row``; the ``(channels, row - top, width)``
        blend of the rows passed over, or None when there were none."""
        shift = row - self.top
        if shift <= 0 or self._acc is None:
            return None
        if shift > self.tile:
            raise ValueError(f"tile rows may not skip pixels: row {row}, band at {self.top}")
        done = self._blend(shift)
        keep = self.tile - shift
        self._acc[:, :keep] = self._acc[:, shift:]
        self._acc[:, keep:] = 0
        self._weight[:keep] = self._weight[shift:]
        self._weight[keep:] = 0
        self.top = row
        return done

    def finish(self, bottom: int) -> Array:
        """The blend of the band's rows up to scene row ``bottom`` (the scene's height)."""
        if self._acc is None:
            raise ValueError("no tile was added")
        return self._blend(bottom - self.top)

    def _blend(self, rows: int) -> Array:
        assert self._acc is not None
        out: Array = self._acc[:, :rows] / self._weight[:rows]
        return out
