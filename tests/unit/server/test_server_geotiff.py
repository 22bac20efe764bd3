"""GeoTIFF in -> GeoTIFF out: tiling with overlap averaging, georeferencing kept."""

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

from forja_server.geotiff import tile_starts, tiled_average

from . import _server_tiny_models as tm
from ._server_helpers import serve


def test_tile_starts_cover_the_edge() -> None:
    assert tile_starts(100, 32, 16) == [0, 16, 32, 48, 64, 68]
    assert tile_starts(20, 32, 16) == [0]


def test_tiled_average_of_a_pointwise_model_is_exact() -> None:
    img = np.random.default_rng(0).random((2, 70, 53), dtype=np.float32)

    async def run(tiles: np.ndarray) -> np.ndarray:
        return tiles * 3.0

    out = asyncio.run(tiled_average(img, 32, 0.5, run))
    np.testing.assert_allclose(out, img * 3.0, rtol=1e-6)


def _geotiff(arr: np.ndarray) -> bytes:
    with MemoryFile() as mem:
        with mem.open(driver="GTiff", width=arr.shape[2], height=arr.shape[1],
                      count=arr.shape[0], dtype="float32", crs="EPSG:32630",
                      transform=from_origin(500000, 4000000, 10, 10)) as dst:
            dst.write(arr)
        return mem.read()


@pytest.fixture(scope="module")
def geo(artifacts, tmp_path_factory) -> Iterator[TestClient]:
    stages = [tm.segmenter(artifacts), tm.autoencoder(artifacts)]
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
