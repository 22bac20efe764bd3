from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from forja_trainer.geo import (
    GeoDatasetError,
    GeoPatchDataset,
    TileSpec,
    band_stats,
    check_mask_classes,
    discover_scenes,
    grid_starts,
    normalise,
    open_scene,
    predict_tiled,
)
from forja_trainer.geo.synthetic import make_geotiff_dataset, write_scene


@pytest.mark.parametrize(
    ("size", "patch", "stride"), [(100, 32, 16), (64, 64, 32), (20, 32, 8), (97, 32, 32)]
)
def test_grid_covers_every_pixel_with_full_windows(size: int, patch: int, stride: int) -> None:
    starts = grid_starts(size, patch, stride)
    covered = np.zeros(size, bool)
    for s in starts:
        covered[s : s + patch] = True
        assert s + patch <= max(size, patch)
    assert covered.all()
    assert starts == sorted(set(starts))


def test_patch_dataset_is_lazy_and_reads_windows(tmp_path: Path) -> None:
    make_geotiff_dataset(tmp_path, scenes=2, size=(96, 80), val_scenes=0)
    scenes = discover_scenes(tmp_path, require_masks=True)
    mean, std = band_stats(scenes)
    ds = GeoPatchDataset(scenes, patch=32, stride=16, mean=mean, std=std, with_masks=True)
    # Only the index is held: 3 int32 per patch.
    assert ds.index.nbytes == len(ds) * 12
    assert len(ds) == 2 * len(grid_starts(96, 32, 16)) * len(grid_starts(80, 32, 16))
    x, y = ds[len(ds) - 1]
    assert x.shape == (5, 32, 32) and y.shape == (32, 32)
    with rasterio.open(scenes[1].image) as src:
        raw = src.read(window=rasterio.windows.Window(48, 64, 32, 32))
    expected = (raw - np.array(mean).reshape(-1, 1, 1)) / np.array(std).reshape(-1, 1, 1)
    np.testing.assert_allclose(x.numpy(), expected, rtol=1e-5, atol=1e-5)
    ds.close()


def test_tiled_inference_averages_overlaps_and_keeps_georeferencing(tmp_path: Path) -> None:
    files = write_scene(tmp_path / "s.tif", height=70, width=90, seed=3)
    out = tmp_path / "out.tif"
    calls: list[int] = []

    def predict(batch: np.ndarray) -> np.ndarray:
        calls.append(len(batch))
        return batch[:, :2] * 2.0

    res = predict_tiled(
        files.image,
        out,
        predict,
        spec=TileSpec(32, 12, 5),
        mean=[0.0] * 5,
        std=[1.0] * 5,
        out_count=2,
    )
    with rasterio.open(files.image) as src, rasterio.open(out) as dst:
        assert dst.crs == src.crs and dst.transform == src.transform
        assert (dst.count, dst.height, dst.width) == (2, 70, 90)
        np.testing.assert_allclose(dst.read(), src.read()[:2] * 2.0, rtol=1e-5)
    assert res.tiles == sum(calls) == len(grid_starts(70, 32, 12)) * len(grid_starts(90, 32, 12))
    assert max(calls) <= 5


def test_tiled_inference_on_a_scene_smaller_than_a_tile(tmp_path: Path) -> None:
    files = write_scene(tmp_path / "s.tif", height=20, width=24)
    out = tmp_path / "o.tif"
    predict_tiled(
        files.image,
        out,
        lambda b: b[:, :1],
        spec=TileSpec(32, 16),
        mean=[0.0] * 5,
        std=[1.0] * 5,
        out_count=1,
    )
    with rasterio.open(files.image) as src, rasterio.open(out) as dst:
        np.testing.assert_allclose(dst.read(1), src.read(1), rtol=1e-6)


def _write(path: Path, data: np.ndarray, dtype: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        height=data.shape[1],
        width=data.shape[2],
        count=data.shape[0],
        dtype=dtype,
        crs="EPSG:4326",
        transform=from_origin(0, 10, 0.1, 0.1),
    ) as dst:
        dst.write(data.astype(dtype))


def test_dataset_validation_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(GeoDatasetError, match="images"):
        discover_scenes(tmp_path)
    _write(tmp_path / "images" / "a.tif", np.zeros((5, 16, 16)), "float32")
    with pytest.raises(GeoDatasetError, match=r"masks/a\.tif: missing"):
        discover_scenes(tmp_path, require_masks=True)
    _write(tmp_path / "masks" / "a.tif", np.zeros((1, 16, 12)), "uint8")
    with pytest.raises(GeoDatasetError, match="mask is 16x12 but its image is 16x16"):
        discover_scenes(tmp_path, require_masks=True)
    _write(tmp_path / "masks" / "a.tif", np.full((1, 16, 16), 3), "uint8")
    scene = discover_scenes(tmp_path, require_masks=True)[0]
    with pytest.raises(GeoDatasetError, match=r"class ids \[3\] outside 0\.\.1"):
        check_mask_classes(scene, 2)
    _write(tmp_path / "images" / "b.tif", np.zeros((4, 16, 16)), "float32")
    with pytest.raises(GeoDatasetError, match=r"different band counts: a\.tif=5, b\.tif=4"):
        discover_scenes(tmp_path, masks=None)
    (tmp_path / "images" / "b.tif").write_bytes(b"not a tiff")
    with pytest.raises(GeoDatasetError, match=r"b\.tif: not a readable raster"):
        discover_scenes(tmp_path, masks=None)


def test_band_stats_match_a_full_read_on_a_small_scene(tmp_path: Path) -> None:
    files = write_scene(tmp_path / "s.tif", height=64, width=64, seed=1)
    mean, std = band_stats([open_scene(files.image)])
    with rasterio.open(files.image) as src:
        data = src.read().reshape(5, -1)
    np.testing.assert_allclose(mean, data.mean(axis=1), rtol=1e-4)
    np.testing.assert_allclose(std, data.std(axis=1), rtol=1e-3)


def test_normalise_in_place_gives_the_same_values_in_the_same_buffer() -> None:
    batch = np.random.default_rng(0).random((3, 4, 8, 8), dtype=np.float32)
    mean, std = [0.1, 0.2, 0.3, 0.4], [1.0, 2.0, 0.5, 4.0]
    expected = normalise(batch, mean, std)
    got = normalise(batch, mean, std, in_place=True)
    assert got is batch  # no second or third batch in memory
    np.testing.assert_array_equal(got, expected)
    ints = np.arange(2 * 4 * 2 * 2, dtype=np.uint16).reshape(2, 4, 2, 2)
    np.testing.assert_array_equal(normalise(ints, mean, std, in_place=True),
                                  normalise(ints, mean, std))
