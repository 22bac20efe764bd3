"""Scenes read and written window by window: a body streamed to disk or a scene named
in the store gives the map the whole scene gives, keeps nodata, refuses bad input with
4xx, and holds a strip of the scene in memory, not the scene."""

from __future__ import annotations

import asyncio
import tempfile
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from fastapi.testclient import TestClient
from rasterio.io import MemoryFile
from rasterio.transform import from_origin
from rasterio.windows import Window

from forja_api.artifact import Preprocessing
from forja_server.geotiff import predict_geotiff
from forja_server.limits import RequestLimits
from forja_tiles import blend_window, grid_starts

from . import _server_tiny_models as tm
from ._server_helpers import serve

NODATA = -9999.0
TILE = 32


def _write_scene(path: Path, arr: np.ndarray, nodata: float | None = NODATA) -> Path:
    with rasterio.open(path, "w", driver="GTiff", width=arr.shape[2], height=arr.shape[1],
                       count=arr.shape[0], dtype="float32", crs="EPSG:32630",
                       transform=from_origin(500000, 4000000, 10, 10), nodata=nodata) as dst:
        dst.write(arr)
    return path


def _scene(h: int = 713, w: int = 713) -> np.ndarray:
    img = np.random.default_rng(7).random((5, h, w), dtype=np.float32)
    img[:, :40, :50] = NODATA  # outside the swath in every band
    img[3, 300:320, 300:330] = NODATA  # one band missing: still data
    return img


def _segmenter() -> torch.nn.Module:
    torch.manual_seed(1)
    return tm.TinySegmenter(5, 2).eval()


def _run_torch(model: torch.nn.Module):
    async def run(tiles: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model(torch.from_numpy(np.ascontiguousarray(tiles))).numpy()
    return run


def _whole_scene_map(img: np.ndarray, model: torch.nn.Module, overlap: float) -> np.ndarray:
    """The reference: the scene read whole, one accumulator the size of the scene."""
    mask = img == NODATA
    x = img.copy()
    for b in range(x.shape[0]):
        x[b][mask[b]] = x[b][~mask[b]].mean(dtype=np.float64)
    stride = max(1, round(TILE * (1 - overlap)))
    window = blend_window(TILE)
    acc = np.zeros((2, *x.shape[1:]), np.float32)
    weight = np.zeros(x.shape[1:], np.float32)
    cols = grid_starts(x.shape[2], TILE, stride)
    for r in grid_starts(x.shape[1], TILE, stride):
        tiles = np.stack([x[:, r : r + TILE, c : c + TILE] for c in cols])
        with torch.no_grad():
            outs = model(torch.from_numpy(tiles)).numpy()
        for c, out in zip(cols, outs, strict=True):
            acc[:, r : r + TILE, c : c + TILE] += out * window
            weight[r : r + TILE, c : c + TILE] += window
    classes = np.argmax(acc / weight, axis=0).astype(np.uint8)
    classes[mask.all(axis=0)] = 255
    return classes


def _read(data: bytes | Path) -> tuple[np.ndarray, dict]:
    if isinstance(data, Path):
        with rasterio.open(data) as ds:
            return ds.read(1), {"nodata": ds.nodata, "crs": ds.crs, "tags": ds.tags()}
    with MemoryFile(data) as mem, mem.open() as ds:
        return ds.read(1), {"nodata": ds.nodata, "crs": ds.crs, "tags": ds.tags()}


@pytest.mark.parametrize("overlap", [0.0, 0.5])
def test_streamed_map_equals_the_whole_scene_map(tmp_path: Path, overlap: float) -> None:
    img = _scene()
    src = _write_scene(tmp_path / "scene.tif", img)
    model = _segmenter()
    kw = {"task": "segmentation", "bands": 5, "tile": TILE, "overlap": overlap,
          "preprocessing": Preprocessing(), "threshold": None, "run": _run_torch(model)}
    streamed = asyncio.run(predict_geotiff(src, out_path=tmp_path / "map.tif", **kw))
    assert streamed.path == tmp_path / "map.tif" and not streamed.data
    in_memory = asyncio.run(predict_geotiff(src.read_bytes(), **kw))
    got, meta = _read(streamed.path)
    ref = _whole_scene_map(img, model, overlap)
    assert meta["nodata"] == 255 and meta["crs"].to_epsg() == 32630
    # Same classes where the scene is whole: the blend is exact up to float rounding
    # (float64 vs float32 band means), which can flip only a near-tie.
    assert np.array_equal(got == 255, ref == 255)
    assert np.mean(got == ref) > 0.9999
    assert np.all(got[:40, :50] == 255) and np.all(got[40:, :] < 2)
    # The in-memory and the on-disk scene go through one engine: the same map and tags.
    mem_map, mem_meta = _read(in_memory.data)
    assert np.array_equal(mem_map, got) and mem_meta["tags"] == meta["tags"]
    assert float(meta["tags"]["nodata_share"]) == pytest.approx(40 * 50 / 713**2, abs=1e-6)


def test_streamed_anomaly_map_keeps_nodata_and_counts_above_the_threshold(
        tmp_path: Path) -> None:
    img = _scene(200, 150)
    img[:, :40, :50] = np.nan
    src = _write_scene(tmp_path / "scene.tif", img, nodata=float("nan"))
    torch.manual_seed(2)
    ae = tm.TinyAutoencoder(5).eval()
    result = asyncio.run(predict_geotiff(
        src, task="anomaly", bands=5, tile=TILE, overlap=0.5, preprocessing=Preprocessing(),
        threshold=None, run=_run_torch(ae), out_path=tmp_path / "map.tif"))
    err, meta = _read(result.path)
    assert np.isnan(meta["nodata"]) and np.all(np.isnan(err[:40, :50]))
    rest = ~np.isnan(err)
    assert rest.sum() == err.size - 40 * 50 and np.all(err[rest] >= 0)
    threshold = float(meta["tags"]["threshold"])
    assert threshold == pytest.approx(err[rest].mean() + 3 * err[rest].std(), rel=1e-4)
    assert float(result.tags["anomalous_share"]) == pytest.approx(
        float(np.mean(err[rest] > threshold)), abs=1e-6)


def test_streamed_memory_is_a_strip_not_the_scene(tmp_path: Path) -> None:
    h = w = 2048
    path = tmp_path / "big.tif"
    with rasterio.open(path, "w", driver="GTiff", width=w, height=h, count=5, dtype="float32",
                       crs="EPSG:32630", transform=from_origin(500000, 4000000, 10, 10),
                       nodata=NODATA, tiled=True, blockxsize=256, blockysize=256) as dst:
        rng = np.random.default_rng(0)
        for top in range(0, h, 256):
            dst.write(rng.random((5, 256, w), dtype=np.float32), window=Window(0, top, w, 256))
    scene_bytes = 5 * h * w * 4  # 84 MB of pixels

    async def run(tiles: np.ndarray) -> np.ndarray:  # a pointwise two-class "model"
        return tiles[:, :2] - tiles[:, 2:4]

    tracemalloc.start()
    try:
        asyncio.run(predict_geotiff(
            path, task="segmentation", bands=5, tile=64, overlap=0.5,
            preprocessing=Preprocessing(), threshold=None, run=run,
            out_path=tmp_path / "map.tif"))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # What the path holds: a tile batch (32 x 5 x 64 x 64 float32, 2.6 MB) and its
    # logits, a few strips of 64 rows (2.6 MB each, normalised in place), the nodata
    # mask, the finished rows being written, the blend band and its weights (1.6 MB):
    # measured 11.5 MB (numpy's allocations are deterministic). Reading the scene
    # whole would be 84 MB before any of that.
    batch = 32 * 5 * 64 * 64 * 4
    assert 6 * batch < scene_bytes / 5
    assert peak < 6 * batch, f"peak {peak / 1e6:.1f} MB"
    with rasterio.open(tmp_path / "map.tif") as ds:
        assert (ds.height, ds.width, ds.nodata) == (h, w, 255)


@pytest.fixture(scope="module")
def scenes_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("scenes")


@pytest.fixture(scope="module")
def scene_client(artifacts: Path, scenes_dir: Path,
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    seg5 = tm.write_artifact(
        artifacts, name="seg5", module=_segmenter(), architecture="tiny-segmenter",
        arch_config={"in_channels": 5, "num_classes": 2}, task="segmentation",
        input_shape=[None, 5, None, None], preprocessing={"tile": TILE})
    limits = RequestLimits(geotiff_memory_bytes=4096,
                           scene_prefixes=(f"file://{scenes_dir}/",))
    _, client = serve([seg5], tmp_path_factory.mktemp("scache"), name="seg5", limits=limits)
    with client:
        yield client


@pytest.fixture
def no_leftovers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    yield tmp_path
    assert not list(tmp_path.glob("forja-scene-*")), "a request left its scene on disk"


def test_a_large_body_and_a_named_scene_give_the_in_memory_map(
        scene_client: TestClient, scenes_dir: Path, no_leftovers: Path) -> None:
    img = _scene(150, 170)
    path = _write_scene(scenes_dir / "s.tif", img)
    body = path.read_bytes()
    assert len(body) > 4096  # over geotiff_memory_bytes: streamed to disk
    streamed = scene_client.post("/predict/geotiff?model=seg5&overlap=0.5", content=body,
                                 headers={"content-type": "image/tiff"})
    assert streamed.status_code == 200, streamed.text
    named = scene_client.post("/predict/geotiff?model=seg5&overlap=0.5",
                              json={"scene": path.as_uri()})
    assert named.status_code == 200, named.text
    expected = asyncio.run(predict_geotiff(
        body, task="segmentation", bands=5, tile=TILE, overlap=0.5,
        preprocessing=Preprocessing(), threshold=None, run=_run_torch(_segmenter())))
    want, _ = _read(expected.data)
    for r in (streamed, named):
        got, meta = _read(r.content)
        assert np.mean(got == want) > 0.9999 and meta["nodata"] == 255
        assert r.headers["x-forja-nodata-share"] == expected.tags["nodata_share"]


@pytest.mark.parametrize(
    ("scene", "status", "says"),
    [
        ("s3://forja/scene.tif", 400, "not under the scenes"),
        ("file:///etc/passwd", 400, "not under the scenes"),
        ("{dir}/../x.tif", 400, "'..'"),
        ("{dir}/%2e%2e/x.tif", 400, "escapes"),
        ("{dir}/missing.tif", 400, "no file"),
        ("{dir}/notes.txt", 415, "not a TIFF"),
        ("{dir}/three.tif", 400, "5 bands, the image has 3"),
    ],
)
def test_bad_named_scenes_are_4xx(scene_client: TestClient, scenes_dir: Path,
                                  no_leftovers: Path, scene: str, status: int,
                                  says: str) -> None:
    (scenes_dir / "notes.txt").write_text("hello")
    _write_scene(scenes_dir / "three.tif", np.zeros((3, 40, 40), np.float32))
    uri = scene.replace("{dir}", f"file://{scenes_dir}")
    r = scene_client.post("/predict/geotiff?model=seg5", json={"scene": uri})
    assert r.status_code == status, r.text
    assert says in r.json()["error"] and r.json()["field"] in ("scene", "file")


@pytest.mark.parametrize("body", [b"{}", b"{\"scene\": 3}", b"not json",
                                  b"{\"scene\": \"x\", \"more\": 1}"])
def test_malformed_scene_requests_are_400(scene_client: TestClient, body: bytes) -> None:
    r = scene_client.post("/predict/geotiff?model=seg5", content=body,
                          headers={"content-type": "application/json"})
    assert r.status_code == 400, r.text


def test_bad_streamed_bodies_are_4xx(scene_client: TestClient, scenes_dir: Path,
                                     no_leftovers: Path) -> None:
    r = scene_client.post("/predict/geotiff?model=seg5", content=b"PNG" + bytes(8000),
                          headers={"content-type": "image/tiff"})
    assert r.status_code == 415, r.text
    r = scene_client.post("/predict/geotiff?model=seg5", content=b"II*\x00" + bytes(8000),
                          headers={"content-type": "image/tiff"})
    assert r.status_code == 400, r.text
    three = _write_scene(scenes_dir / "three-body.tif", np.zeros((3, 60, 60), np.float32))
    r = scene_client.post("/predict/geotiff?model=seg5", content=three.read_bytes(),
                          headers={"content-type": "image/tiff"})
    assert r.status_code == 400 and "the image has 3" in r.json()["error"], r.text


class _FakeStore:
    """The storage module's s3 side, as the scene fetcher uses it: chunks of an object."""

    def __init__(self, objects: dict[str, bytes], down: bool = False) -> None:
        self.objects = objects
        self.down = down
        self.chunks = 0

    def read_chunks(self, uri: str, chunk_size: int = 1 << 16):
        import forja_storage as storage

        if self.down:
            raise storage.StorageError("connection refused", uri)
        if uri not in self.objects:
            raise storage.ObjectNotFound(f"no object at {uri}", uri)
        data = self.objects[uri]
        for i in range(0, len(data), chunk_size):
            self.chunks += 1
            yield data[i : i + chunk_size]


@pytest.mark.parametrize(("down", "uri", "status"), [
    (False, "s3://scenes/s.tif", 200),
    (False, "s3://scenes/missing.tif", 400),
    (True, "s3://scenes/s.tif", 503),
])
def test_a_scene_in_the_store_is_fetched_in_chunks(
        artifacts: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_leftovers: Path,
        down: bool, uri: str, status: int) -> None:
    import forja_storage as storage

    body = _write_scene(tmp_path / "s.tif", _scene(90, 110)).read_bytes()
    store = _FakeStore({"s3://scenes/s.tif": body}, down=down)
    monkeypatch.setattr(storage, "read_chunks", store.read_chunks)
    seg5 = tm.write_artifact(
        artifacts, name="seg5", module=_segmenter(), architecture="tiny-segmenter",
        arch_config={"in_channels": 5, "num_classes": 2}, task="segmentation",
        input_shape=[None, 5, None, None], preprocessing={"tile": TILE})
    _, client = serve([seg5], tmp_path / "cache", name="seg5", limits=RequestLimits())
    with client:  # the default limits: s3:// scenes only
        r = client.post("/predict/geotiff?model=seg5", json={"scene": uri})
    assert r.status_code == status, r.text
    if status == 200:
        assert store.chunks > 1  # streamed to disk, not read in one piece
        got, meta = _read(r.content)
        assert got.shape == (90, 110) and meta["nodata"] == 255
    else:
        assert r.json()["field"] == "scene"
