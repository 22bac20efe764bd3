"""GeoTIFF in -> GeoTIFF out: tiling with windowed overlap blending, georeferencing and
nodata kept."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import numpy as np
import pytest
import rasterio
import torch
from fastapi.testclient import TestClient
from rasterio.io import MemoryFile
from rasterio.transform import from_origin

from forja_server.geotiff import tiled_average
from forja_tiles import grid_starts

from . import _server_tiny_models as tm
from ._server_helpers import serve


def test_tiled_average_of_a_pointwise_model_is_exact() -> None:
    img = np.random.default_rng(0).random((2, 70, 53), dtype=np.float32)

    async def run(tiles: np.ndarray) -> np.ndarray:
        return tiles * 3.0

    out = asyncio.run(tiled_average(img, 32, 0.5, run))
    np.testing.assert_allclose(out, img * 3.0, rtol=1e-6)


def _geotiff(arr: np.ndarray, nodata: float | None = None) -> bytes:
    with MemoryFile() as mem:
        with mem.open(driver="GTiff", width=arr.shape[2], height=arr.shape[1],
                      count=arr.shape[0], dtype="float32", crs="EPSG:32630",
                      transform=from_origin(500000, 4000000, 10, 10), nodata=nodata) as dst:
            dst.write(arr)
        return mem.read()


@pytest.fixture(scope="module")
def geo(artifacts, tmp_path_factory) -> Iterator[TestClient]:
    stages = [tm.segmenter(artifacts), tm.autoencoder(artifacts),
              tm.positional_segmenter(artifacts)]
    _, client = serve(stages, tmp_path_factory.mktemp("gcache"), name="geo")
    with client:
        yield client


def test_segmentation_map_keeps_crs_and_transform(geo: TestClient) -> None:
    img = np.random.default_rng(1).random((4, 75, 90), dtype=np.float32)
    r = geo.post("/predict/geotiff?model=seg&overlap=0.5", content=_geotiff(img),
                 headers={"content-type": "image/tiff"})
    assert r.status_code == 200, r.text
    with MemoryFile(r.content) as mem, mem.open() as ds:
        assert ds.crs == rasterio.crs.CRS.from_epsg(32630)
        assert ds.transform == from_origin(500000, 4000000, 10, 10)
        assert (ds.count, ds.height, ds.width, ds.dtypes[0]) == (1, 75, 90, "uint8")
        mask = ds.read(1)
    torch.manual_seed(1)
    ref = tm.TinySegmenter(4, 2).eval()
    with torch.no_grad():
        logits = ref(torch.from_numpy(img)[None])[0].numpy()
    # The 3x3 conv sees padding at tile borders, so interiors match exactly and
    # overlap averaging keeps the rest close.
    agree = np.mean(mask == np.argmax(logits, axis=0))
    assert agree > 0.97
    assert float(r.headers["x-forja-class-0-share"]) + float(
        r.headers.get("x-forja-class-1-share", 0)) == pytest.approx(1.0, abs=1e-5)


def test_anomaly_map_and_share(geo: TestClient) -> None:
    img = np.random.default_rng(2).random((4, 64, 64), dtype=np.float32)
    r = geo.post("/predict/geotiff?model=ae", content=_geotiff(img),
                 headers={"content-type": "image/tiff"})
    assert r.status_code == 200, r.text
    with MemoryFile(r.content) as mem, mem.open() as ds:
        err = ds.read(1)
        assert ds.dtypes[0] == "float32" and ds.crs.to_epsg() == 32630
        threshold = float(ds.tags()["threshold"])
    assert err.shape == (64, 64) and np.all(err >= 0)
    assert float(r.headers["x-forja-anomalous-share"]) == pytest.approx(
        float(np.mean(err > threshold)), abs=1e-5)


@pytest.mark.parametrize(
    ("url", "content", "status"),
    [
        ("/predict/geotiff?model=seg", b"PNG....", 415),
        ("/predict/geotiff?model=seg", b"II*\x00garbage", 400),
        ("/predict/geotiff?model=seg&overlap=1.5", b"II*\x00", 400),
        ("/predict/geotiff?model=nope", b"II*\x00", 404),
    ],
)
def test_bad_geotiff_requests_are_4xx(geo: TestClient, url: str, content: bytes,
                                      status: int) -> None:
    assert geo.post(url, content=content).status_code == status


def test_band_count_must_match(geo: TestClient) -> None:
    img = np.zeros((3, 40, 40), np.float32)
    r = geo.post("/predict/geotiff?model=seg", content=_geotiff(img))
    assert r.status_code == 400 and "4 bands" in r.json()["error"]


def _seam_lift(mask: np.ndarray, tile: int, overlap: float) -> float:
    """How many times more often than chance the map's class changes fall on tile edges.

    A change between columns j-1 and j (rows likewise) is on an edge when a tile starts
    or ends at j; chance is the share of such boundaries among all of them.
    """
    stride = max(1, round(tile * (1.0 - overlap)))
    on, total, edge_lines, lines = 0, 0, 0, 0
    for m in (mask, mask.T):
        starts = grid_starts(m.shape[1], tile, stride)
        edges = np.zeros(m.shape[1], bool)  # edges[j]: a tile border between j-1 and j
        edges[[s for s in starts if s > 0]] = True
        edges[[s + tile for s in starts if s + tile < m.shape[1]]] = True
        changes = m[:, 1:] != m[:, :-1]  # changes[:, j-1]: between j-1 and j
        on += int(changes[:, edges[1:]].sum())
        total += int(changes.sum())
        edge_lines += int(edges[1:].sum())
        lines += m.shape[1] - 1
    assert total > 200, "too few class changes to judge"
    return (on / total) / (edge_lines / lines)


def _smooth_scene(h: int, w: int) -> np.ndarray:
    # A slowly varying band 0 (features much larger than a tile): its own class
    # boundaries fall anywhere, so only the tiling can line them up with tile edges.
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.zeros((4, h, w), np.float32)
    img[0] = 0.6 * np.sin(x / 23.0 + 0.4) * np.cos(y / 31.0 - 0.3) + 0.2 * np.sin((x + y) / 41.0)
    img[1:] = np.random.default_rng(5).random((3, h, w), dtype=np.float32)
    return img


@pytest.mark.parametrize("overlap", [0.5, 0.75])
def test_class_changes_do_not_line_up_with_tile_edges(geo: TestClient, overlap: float) -> None:
    """A model that is less sure of itself toward a tile's borders (here: positionally
    biased) left seams every stride with plain averaging; the window blends them out."""
    img = _smooth_scene(301, 277)
    r = geo.post(f"/predict/geotiff?model=posseg&overlap={overlap}", content=_geotiff(img),
                 headers={"content-type": "image/tiff"})
    assert r.status_code == 200, r.text
    with MemoryFile(r.content) as mem, mem.open() as ds:
        mask = ds.read(1)
    assert set(np.unique(mask)) == {0, 1}
    assert _seam_lift(mask, 32, overlap) < 1.5


def _nodata_scene(nodata: float) -> np.ndarray:
    img = np.random.default_rng(3).random((4, 80, 96), dtype=np.float32)
    img[:, :24, :30] = nodata  # a corner outside the swath, in every band
    img[2, 50:60, 50:60] = nodata  # one band missing: still a pixel with data
    return img


def test_nodata_corner_stays_nodata_in_a_class_map(geo: TestClient) -> None:
    img = _nodata_scene(-9999.0)
    r = geo.post("/predict/geotiff?model=seg&overlap=0.5", content=_geotiff(img, -9999.0),
                 headers={"content-type": "image/tiff"})
    assert r.status_code == 200, r.text
    with MemoryFile(r.content) as mem, mem.open() as ds:
        assert ds.nodata == 255 and ds.profile["nodata"] == 255
        mask = ds.read(1)
        valid = ds.read_masks(1) > 0
    corner = np.zeros(mask.shape, bool)
    corner[:24, :30] = True
    assert np.all(mask[corner] == 255) and np.all(~valid[corner])
    assert np.all(mask[~corner] < 2) and np.all(valid[~corner])
    assert float(r.headers["x-forja-nodata-share"]) == pytest.approx(corner.mean(), abs=1e-5)
    # Shares are of the pixels with data.
    assert float(r.headers["x-forja-class-0-share"]) + float(
        r.headers.get("x-forja-class-1-share", 0)) == pytest.approx(1.0, abs=1e-5)
    # -9999 does not leak into its neighbours: the model saw each band's mean there.
    filled = img.copy()
    for band in filled:
        band[band == -9999.0] = band[band != -9999.0].mean()
    torch.manual_seed(1)
    ref = tm.TinySegmenter(4, 2).eval()
    with torch.no_grad():
        logits = ref(torch.from_numpy(filled)[None])[0].numpy()
    ring = np.zeros(mask.shape, bool)
    ring[:26, :32] = True
    ring &= ~corner
    assert np.mean(mask[ring] == np.argmax(logits, axis=0)[ring]) > 0.97
    assert np.mean(mask[~corner] == np.argmax(logits, axis=0)[~corner]) > 0.97


def test_nodata_stays_nodata_in_an_anomaly_map(geo: TestClient) -> None:
    img = _nodata_scene(float("nan"))
    r = geo.post("/predict/geotiff?model=ae", content=_geotiff(img, float("nan")),
                 headers={"content-type": "image/tiff"})
    assert r.status_code == 200, r.text
    with MemoryFile(r.content) as mem, mem.open() as ds:
        assert np.isnan(ds.nodata)
        err = ds.read(1)
        threshold = float(ds.tags()["threshold"])
    assert np.all(np.isnan(err[:24, :30]))
    rest = np.ones(err.shape, bool)
    rest[:24, :30] = False
    assert np.all(np.isfinite(err[rest])) and np.all(err[rest] >= 0)
    assert float(r.headers["x-forja-anomalous-share"]) == pytest.approx(
        float(np.mean(err[rest] > threshold)), abs=1e-5)


def test_an_input_without_nodata_declares_none(geo: TestClient) -> None:
    img = np.random.default_rng(4).random((4, 40, 40), dtype=np.float32)
    r = geo.post("/predict/geotiff?model=seg", content=_geotiff(img))
    assert r.status_code == 200, r.text
    with MemoryFile(r.content) as mem, mem.open() as ds:
        assert ds.nodata is None
    assert "x-forja-nodata-share" not in r.headers


def test_the_block_cache_bound_is_megabytes_not_bytes() -> None:
    """GDAL reads the bound as bytes when rasterio sets it: 16 was a 16-byte cache."""
    from rasterio.env import get_gdal_config

    from forja_server.geotiff import GDAL_CACHE_MB, _quiet_rasterio

    with _quiet_rasterio():
        assert get_gdal_config("GDAL_CACHEMAX") == GDAL_CACHE_MB * 2**20
