"""Where patches and tiles start: a regular grid with stride that covers every pixel."""

from __future__ import annotations

__all__ = ["grid_starts", "stride_for", "tile_count", "window_origins"]


def grid_starts(size: int, patch: int, stride: int) -> list[int]:
    """Start offsets along one axis for windows of ``patch`` every ``stride``.

    The last window is moved back to end exactly at ``size`` so the edge pixels
    are covered by a full window rather than skipped or padded; an axis shorter
    than one patch gets a single window at 0 (the reader pads it).
    """
    if patch < 1 or stride < 1:
        raise ValueError(f"patch and stride must be >= 1, got patch={patch} stride={stride}")
    if size <= patch:
        return [0]
    starts = list(range(0, size - patch + 1, stride))
    if starts[-1] != size - patch:
        starts.append(size - patch)
    return starts


def window_origins(height: int, width: int, patch: int, stride: int) -> list[tuple[int, int]]:
    """Row-major ``(row, col)`` origins of every patch of a ``height`` x ``width`` scene."""
    cols = grid_starts(width, patch, stride)
    return [(r, c) for r in grid_starts(height, patch, stride) for c in cols]


def stride_for(tile: int, overlap: float) -> int:
    """The step between tiles that overlap by the fraction ``overlap`` (at least 1 px)."""
    return max(1, round(tile * (1.0 - overlap)))


def tile_count(height: int, width: int, tile: int, overlap: float) -> int:
    """How many tiles a scene is cut into at ``overlap`` (known before running any)."""
    stride = stride_for(tile, overlap)
    return len(grid_starts(height, tile, stride)) * len(grid_starts(width, tile, stride))
