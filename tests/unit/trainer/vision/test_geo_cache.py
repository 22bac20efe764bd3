"""GDAL's block cache is capped by the trainer, and patches are read block by block.

Reads are counted on real GeoTIFFs through rasterio's ``opener``: a file object that
records each read at the offset of one of the image's blocks (GDAL reads a block's
bytes when it decodes it, and only then).
"""

from __future__ import annotations

import io
import itertools
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import rasterio
import rasterio.shutil
from rasterio.env import get_gdal_config, set_gdal_config

from forja_trainer.geo import GeoPatchDataset, TileSpec, open_scene, predict_tiled
from forja_trainer.geo.gdalcache import CACHE_ENV, DEFAULT_CACHE_MB, cap_block_cache, open_raster
from forja_trainer.geo.synthetic import write_scene
from forja_trainer.loop import EpochSampler

MiB = 2**20


class ReadLog:
    """The offsets GDAL read from, per file (a picklable opener for rasterio)."""

    def __init__(self) -> None:
        self.offsets: list[int] = []

    def __call__(self, path: str, mode: str = "rb") -> io.FileIO:
        log = self.offsets

        class Counted(io.FileIO):
            def readinto(self, buffer: bytearray | memoryview) -> int | None:  # type: ignore[override]
                log.append(self.tell())
                return super().readinto(buffer)

            def read(self, size: int = -1) -> bytes | None:
                log.append(self.tell())
                return super().read(size)

        return Counted(path, "rb")


def block_offsets(path: Path) -> set[int]:
    with open_raster(path) as src:
        rows = -(-src.height // src.block_shapes[0][0])
        cols = -(-src.width // src.block_shapes[0][1])
        return {
            int(src.get_tag_item(f"BLOCK_OFFSET_{c}_{r}", "TIFF", bidx=1))
            for r in range(rows)
            for c in range(cols)
        }


@pytest.fixture(autouse=True)
def _restore_gdal_cache(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The cap is process-wide: put back what the test process had."""
    monkeypatch.delenv("GDAL_CACHEMAX", raising=False)
    monkeypatch.delenv(CACHE_ENV, raising=False)
    before = get_gdal_config("GDAL_CACHEMAX")
    yield
    set_gdal_config("GDAL_CACHEMAX", before)


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """768x768x5 float32 in 256x256 deflate blocks: nine blocks of 1.25 MiB decoded."""
    path = tmp_path_factory.mktemp("geo-cache") / "scene.tif"
    write_scene(path, height=768, width=768, bands=5, seed=4)
    return path


def test_the_cap_is_megabytes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    set_gdal_config("GDAL_CACHEMAX", 512 * MiB)  # as GDAL's 5%-of-RAM default might be
    assert cap_block_cache() == DEFAULT_CACHE_MB * MiB
    assert get_gdal_config("GDAL_CACHEMAX") == DEFAULT_CACHE_MB * MiB
    monkeypatch.setenv(CACHE_ENV, "3")
    assert cap_block_cache() == 3 * MiB
    monkeypatch.setenv(CACHE_ENV, "lots")
    with pytest.raises(ValueError, match=CACHE_ENV):
        cap_block_cache()
    monkeypatch.setenv(CACHE_ENV, "0")
    with pytest.raises(ValueError, match="at least 1 MB"):
        cap_block_cache()


def test_gdals_own_variable_set_by_hand_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    set_gdal_config("GDAL_CACHEMAX", 40 * MiB)
    monkeypatch.setenv("GDAL_CACHEMAX", "40")
    monkeypatch.setenv(CACHE_ENV, "3")
    assert cap_block_cache() == 40 * MiB


def test_reading_patches_caps_the_cache_and_the_cap_holds(
    scene: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The dataset caps the cache itself; the proof is in what GDAL reads again: two passes
    over every block decode each twice under a 2 MB cap (one block fits), once uncapped."""
    blocks = block_offsets(scene)
    assert len(blocks) == 9

    def block_reads_of_two_passes() -> tuple[int, int]:
        log = ReadLog()
        ds = GeoPatchDataset(
            [open_scene(scene)], patch=256, stride=256, mean=[0.0] * 5, std=[1.0] * 5, opener=log
        )
        passes = []
        for _ in range(2):
            start = len(log.offsets)
            for i in range(len(ds)):
                ds[i]
            passes.append(sum(1 for o in log.offsets[start:] if o in blocks))
        ds.close()
        return passes[0], passes[1]

    set_gdal_config("GDAL_CACHEMAX", 512 * MiB)
    monkeypatch.setenv("GDAL_CACHEMAX", "512")  # by hand: left alone, the whole scene stays
    assert block_reads_of_two_passes() == (9, 0)
    monkeypatch.delenv("GDAL_CACHEMAX")
    monkeypatch.setenv(CACHE_ENV, "2")
    assert block_reads_of_two_passes() == (9, 9)
    assert get_gdal_config("GDAL_CACHEMAX") == 2 * MiB


def test_the_epoch_order_draws_patches_block_by_block(scene: Path) -> None:
    ds = GeoPatchDataset([open_scene(scene)], patch=32, stride=32, mean=[0.0] * 5, std=[1.0] * 5)
    groups = ds.sample_groups()
    assert groups.shape == (len(ds),) and len(ds) == 24 * 24
    rows, cols = ds.index[:, 1] // 256, ds.index[:, 2] // 256
    assert np.array_equal(groups, rows * 3 + cols)
    sampler = EpochSampler(len(ds), seed=7, epoch=2, groups=groups)
    order = sampler.order()
    assert sorted(order) == list(range(len(ds)))  # every patch once
    visited = [int(g) for g in groups[order]]
    runs = [g for i, g in enumerate(visited) if i == 0 or g != visited[i - 1]]
    assert sorted(runs) == list(range(9))  # one run per block: never back to a block
    assert runs != list(range(9))  # blocks in a shuffled order...
    first = order[:64]
    assert first != sorted(first)  # ...and patches shuffled within one
    assert order == EpochSampler(len(ds), seed=7, epoch=2, groups=groups).order()
    assert order != EpochSampler(len(ds), seed=7, epoch=3, groups=groups).order()
    resumed = EpochSampler(len(ds), seed=7, epoch=2, start=100, groups=groups)
    assert list(resumed) == order[100:]
    with pytest.raises(ValueError, match="groups has shape"):
        EpochSampler(len(ds) + 1, seed=7, epoch=2, groups=groups)


def test_block_by_block_an_epoch_decodes_each_block_once_under_a_small_cap(
    scene: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """1.25 MiB blocks, a 2 MB cap: patches drawn at random decode a block for nearly every
    patch; drawn block by block, each of the nine blocks once."""
    monkeypatch.setenv(CACHE_ENV, "2")
    blocks = block_offsets(scene)

    def block_reads(groups: np.ndarray | None) -> int:
        log = ReadLog()
        ds = GeoPatchDataset(
            [open_scene(scene)], patch=32, stride=32, mean=[0.0] * 5, std=[1.0] * 5, opener=log
        )
        for i in EpochSampler(len(ds), seed=1, epoch=0, groups=groups):
            ds[i]
        ds.close()
        return sum(1 for o in log.offsets if o in blocks)

    ds = GeoPatchDataset([open_scene(scene)], patch=32, stride=32, mean=[0.0] * 5, std=[1.0] * 5)
    assert block_reads(ds.sample_groups()) == 9
    assert block_reads(None) > 400  # of 576 patches: 8 in 9 land on another block


def test_overlapping_patches_by_block_stay_near_one_decode_per_block(scene: Path) -> None:
    """The trainers' shape: 64 px patches every 32 px cross block edges, reaching the
    blocks right and below. Under the default cap (three blocks), block by block decodes
    a block at most about once for each of the four groups that reach it (28-32 decodes
    for nine blocks); drawn at random, about 430 for 529 patches."""
    blocks = block_offsets(scene)

    def block_reads(by_block: bool) -> int:
        log = ReadLog()
        ds = GeoPatchDataset(
            [open_scene(scene)], patch=64, stride=32, mean=[0.0] * 5, std=[1.0] * 5, opener=log
        )
        groups = ds.sample_groups() if by_block else None
        for i in EpochSampler(len(ds), seed=3, epoch=0, groups=groups):
            ds[i]
        ds.close()
        assert get_gdal_config("GDAL_CACHEMAX") == DEFAULT_CACHE_MB * MiB
        return sum(1 for o in log.offsets if o in blocks)

    grouped = block_reads(by_block=True)
    assert 9 <= grouped <= 4 * 9, grouped
    assert block_reads(by_block=False) > 8 * grouped


def test_a_batch_of_tiles_is_bounded_by_its_pixels() -> None:
    """The model's activations grow with a batch's pixels: 16 tiles of 128 px held 32 MiB
    of them, 13.5% of a 3000x4000x5 scene; the default budget is 4 tiles of 64 px."""
    assert TileSpec(64, 32, 16).tiles_per_batch == 4
    assert TileSpec(128, 64, 16).tiles_per_batch == 1
    assert TileSpec(512, 256, 16).tiles_per_batch == 1
    assert TileSpec(128, 64, 16, batch_pixels=None).tiles_per_batch == 16
    assert TileSpec(32, 16, 3).tiles_per_batch == 3


def test_tiled_inference_writes_each_output_block_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under a cache too small for an output block row, rows written as they finished
    (32 at a time here) left 256-row blocks part done: each was compressed and appended again
    per part. Gathered into block rows, the file is as small as a clean copy of it."""
    monkeypatch.setenv(CACHE_ENV, "1")
    files = write_scene(tmp_path / "s.tif", height=600, width=1100, bands=5, seed=2)
    out = tmp_path / "out.tif"
    calls: list[int] = []
    seen: list[tuple[int, int]] = []

    def predict(batch: np.ndarray) -> np.ndarray:
        calls.append(len(batch))
        return batch[:, :1] * 3.0

    res = predict_tiled(
        files.image,
        out,
        predict,
        spec=TileSpec(64, 32, 16),
        mean=[0.0] * 5,
        std=[1.0] * 5,
        out_count=1,
        on_block=lambda block, window: seen.append((window.row_off, window.height)),
    )
    assert max(calls) == 4 and sum(calls) == res.tiles
    # on_block still sees every finished band of rows, in order, covering the scene.
    assert seen[0][0] == 0 and sum(h for _, h in seen) == 600
    assert all(a + h == b for (a, h), (b, _) in itertools.pairwise(seen))
    with rasterio.open(files.image) as src, rasterio.open(out) as dst:
        np.testing.assert_allclose(dst.read(1), src.read(1) * 3.0, rtol=1e-6)
    clean = tmp_path / "clean.tif"
    rasterio.shutil.copy(out, clean, driver="GTiff", compress="deflate", tiled=True,
                         blockxsize=256, blockysize=256)
    assert out.stat().st_size <= 1.05 * clean.stat().st_size
