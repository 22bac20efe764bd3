"""The shared tile maths: the grid covers every pixel, the window cross-fades, and the
row-by-row blend equals the blend of the whole scene."""

from __future__ import annotations

import numpy as np
import pytest

from forja_tiles import RowBlender, blend_window, grid_starts, stride_for, tile_count


def test_tile_starts_cover_the_edge() -> None:
    assert grid_starts(100, 32, 16) == [0, 16, 32, 48, 64, 68]
    assert grid_starts(20, 32, 16) == [0]


def test_tile_count_and_stride_follow_the_overlap() -> None:
    assert stride_for(32, 0.5) == 16 and stride_for(32, 0.0) == 32 and stride_for(2, 0.99) == 1
    assert tile_count(100, 20, 32, 0.5) == 6 * 1


def test_blend_window_cross_fades_at_half_overlap() -> None:
    w = blend_window(32)
    assert w.shape == (32, 32) and np.all(w > 0)
    assert w[16, 16] > 0.99 and w[0, 0] < 1e-4  # centre counts, corners next to nothing
    # Neighbours 16 px apart sum to one in each axis: a smooth cross-fade.
    w1 = np.sqrt(np.diag(w))  # the separable 1-D window
    np.testing.assert_allclose(w1[:16] + w1[16:], 1.0, atol=2e-3)
    np.testing.assert_allclose(w, np.outer(w1, w1), rtol=1e-5)


@pytest.mark.parametrize(("tile", "stride"), [(16, 16), (16, 8), (16, 5), (16, 3)])
def test_row_blend_equals_the_whole_scene_blend(tile: int, stride: int) -> None:
    rng = np.random.default_rng(0)
    h, w = 57, 41
    window = blend_window(tile)
    rows, cols = grid_starts(h, tile, stride), grid_starts(w, tile, stride)
    outs = {(r, c): rng.random((2, tile, tile), dtype=np.float32) for r in rows for c in cols}
    # The whole-scene reference: one accumulator the size of the scene.
    acc = np.zeros((2, h, w), np.float32)
    weight = np.zeros((h, w), np.float32)
    for (r, c), o in outs.items():
        acc[:, r : r + tile, c : c + tile] += o * window
        weight[r : r + tile, c : c + tile] += window
    blender = RowBlender(w, tile, window)
    blocks = []
    for r in rows:
        done = blender.start_row(r)
        if done is not None:
            assert done.shape[1] == r - sum(b.shape[1] for b in blocks)
            blocks.append(done)
        for c in cols:
            blender.add(c, outs[(r, c)])
    blocks.append(blender.finish(h))
    np.testing.assert_array_equal(np.concatenate(blocks, axis=1), acc / weight)


def test_row_blender_refuses_skipped_rows_and_wrong_windows() -> None:
    blender = RowBlender(8, 4)
    blender.add(0, np.ones((1, 4, 4), np.float32))
    with pytest.raises(ValueError, match="skip pixels"):
        blender.start_row(5)
    with pytest.raises(ValueError, match="window is"):
        RowBlender(8, 4, np.ones((3, 3)))
