"""Limits that hold: what one request may cost, answered with 4xx (never 5xx), and
the time limit and disconnects that cancel a request's work."""

from __future__ import annotations

import asyncio
import io
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import uvicorn
from fastapi.testclient import TestClient
from PIL import Image
from rasterio.io import MemoryFile
from rasterio.transform import from_origin

from forja_api.serving import ServingConfig
from forja_server.app import create_app
from forja_server.limits import RequestLimits
from forja_server.repository import ModelRepository

from . import _server_tiny_models as tm
from ._server_helpers import serve
from .test_server_cli import _start


def _png(w: int, h: int, value: int = 128) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (w, h), (value, value, value)).save(buf, format="PNG")
    return buf.getvalue()


def _tiff(bands: int, size: int, keep: int | None = None) -> bytes:
    """A GeoTIFF; ``keep`` cuts it after that many bytes (header intact, pixels gone)."""
    img = np.random.default_rng(0).random((bands, size, size), dtype=np.float32)
    with MemoryFile() as mem:
        with mem.open(driver="GTiff", width=size, height=size, count=bands,
                      dtype="float32", crs="EPSG:32630",
                      transform=from_origin(500000, 4000000, 10, 10)) as dst:
            dst.write(img)
        data = mem.read()
    return data[:keep] if keep else data


@pytest.fixture(scope="module")
def limited(artifacts: Path, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[tuple[ModelRepository, TestClient]]:
    rgb_seg = tm.write_artifact(
        artifacts, name="rgb-seg", module=tm.TinySegmenter(3, 2), architecture="tiny-segmenter",
        arch_config={"in_channels": 3, "num_classes": 2}, task="segmentation",
        input_shape=[None, 3, None, None])
    stages = [tm.classifier(artifacts), tm.segmenter(artifacts), tm.unet(artifacts), rgb_seg]
    repo, client = serve(stages, tmp_path_factory.mktemp("lcache"), name="limits",
                         limits=RequestLimits(timeout_seconds=5.0))
    with client:
        yield repo, client


def test_pixels_are_limited_per_request_not_per_image(limited) -> None:
    _, client = limited
    big = _png(5000, 5000)  # 25 M pixels: alone it passes, three are 75 M > 64 M
    r = client.post("/predict/batch?model=clf",
                    files=[("files", (f"{i}.png", big, "image/png")) for i in range(3)])
    assert r.status_code == 400, r.text
    assert "over 64000000 pixels together" in r.json()["error"]
    assert r.json()["field"] == "files[2]"
    one = client.post("/predict?model=clf", files={"file": ("a.png", big, "image/png")})
    assert one.status_code == 200, one.text


def test_geotiff_bands_are_checked_before_reading(limited) -> None:
    _, client = limited
    # The header says 2 bands; the pixels are cut off, so reading them would fail.
    r = client.post("/predict/geotiff?model=seg", content=_tiff(2, 256, keep=4096),
                    headers={"content-type": "image/tiff"})
    assert r.status_code == 400, r.text
    assert "the model takes 4 bands, the image has 2" in r.json()["error"]


def test_geotiff_values_and_tiles_are_checked_before_reading(artifacts: Path,
                                                             tmp_path: Path) -> None:
    _, client = serve([tm.segmenter(artifacts)], tmp_path, name="seg",
                      limits=RequestLimits(max_geotiff_values=100_000, max_tiles=10))
    with client:
        r = client.post("/predict/geotiff?model=seg", content=_tiff(4, 256, keep=4096),
                        headers={"content-type": "image/tiff"})
        assert r.status_code == 400 and "100000-value limit" in r.json()["error"], r.text
        r = client.post("/predict/geotiff?model=seg&overlap=0.5", content=_tiff(4, 128),
                        headers={"content-type": "image/tiff"})
        assert r.status_code == 400 and "over the limit of 10" in r.json()["error"], r.text
        r = client.post("/predict/geotiff?model=seg&overlap=0", content=_tiff(4, 64),
                        headers={"content-type": "image/tiff"})
        assert r.status_code == 200, r.text


@pytest.mark.parametrize("overlap", ["0.8", "0.99", "0.999999"])
def test_overlap_is_bounded(limited, overlap: str) -> None:
    _, client = limited
    r = client.post(f"/predict/geotiff?model=seg&overlap={overlap}", content=_tiff(4, 64),
                    headers={"content-type": "image/tiff"})
    assert r.status_code == 400, r.text
    assert r.json()["field"].endswith("overlap")


def test_unknown_model_names_create_no_metric_series(limited) -> None:
    _, client = limited
    for i in range(3):
        r = client.post(f"/v2/models/made-up-{i}/infer", json={"inputs": [
            {"name": "x", "shape": [1], "datatype": "FP32", "data": [1.0]}]})
        assert r.status_code == 404
        assert client.get(f"/v2/models/made-up-{i}").status_code == 404
        assert client.post(f"/predict?model=made-up-{i}", json={"tensor": [1]}
                           ).status_code == 404
    metrics = client.get("/metrics").text
    assert "made-up" not in metrics
    assert 'model="clf"' in metrics or "forja_requests_total" in metrics


def test_side_lengths_must_be_the_models_multiple(limited) -> None:
    repo, client = limited
    assert repo.models["unet"].side_multiple == 4
    assert repo.models["seg"].side_multiple == 1  # no pooling: any size runs

    def infer(h: int, w: int) -> Any:
        return client.post("/v2/models/unet/infer", json={"inputs": [{
            "name": "input", "shape": [1, 4, h, w], "datatype": "FP32",
            "data": [0.1] * (4 * h * w)}]})

    bad = infer(30, 32)
    assert bad.status_code == 400, bad.text
    assert "multiples of 4" in bad.json()["error"]
    assert infer(28, 36).status_code == 200


def test_mixed_sizes_to_free_side_lengths_are_a_client_error(limited) -> None:
    _, client = limited
    files = [("files", ("a.png", _png(32, 32), "image/png")),
             ("files", ("b.png", _png(40, 24), "image/png"))]
    r = client.post("/predict/batch?model=rgb-seg", files=files)
    assert r.status_code == 400, r.text
    assert "one batch needs one size" in r.json()["error"]
    same = client.post("/predict/batch?model=rgb-seg", files=files[:1] * 2)
    assert same.status_code == 200, same.text
    r = client.post("/predict/batch?model=seg", json={"tensors": [
        np.zeros((4, 8, 8)).tolist(), np.zeros((4, 8, 12)).tolist()]})
    assert r.status_code == 400, r.text


@pytest.mark.parametrize(("datatype", "fill", "odd"), [
    ("INT64", 1, 1.5), ("INT32", 2, 2.5), ("INT8", 1, 300), ("UINT8", 1, -1),
    ("BOOL", True, 1), ("INT16", 1, "2"), ("FP32", 0.5, "x"),
])
def test_v2_datatype_must_match_the_data(limited, datatype: str, fill: Any, odd: Any) -> None:
    """The shape fits the model; one value does not fit the declared datatype."""
    _, client = limited
    data = [fill] * (3 * 32 * 32 - 1) + [odd]
    r = client.post("/v2/models/clf/infer", json={"inputs": [
        {"name": "input", "shape": [1, 3, 32, 32], "datatype": datatype, "data": data}]})
    assert r.status_code == 400, r.text
    assert r.json()["field"] == "data"
    good = client.post("/v2/models/clf/infer", json={"inputs": [
        {"name": "input", "shape": [1, 3, 32, 32], "datatype": datatype,
         "data": [fill] * (3 * 32 * 32)}]})
    assert good.status_code == 200, good.text


def test_a_request_over_its_time_limit_is_cancelled_with_503(artifacts: Path,
                                                             tmp_path: Path) -> None:
    repo, client = serve([tm.classifier(artifacts)], tmp_path, name="clf",
                         limits=RequestLimits(timeout_seconds=0.5))
    batcher = repo.batcher("clf")
    fast = batcher._predict

    def slow(batch: np.ndarray) -> dict[str, np.ndarray]:
        time.sleep(1.5)
        return fast(batch)

    batcher._predict = slow
    with client:
        started = time.monotonic()
        r = client.post("/predict?model=clf", json={"tensor": np.zeros((3, 32, 32)).tolist()})
        took = time.monotonic() - started
    assert r.status_code == 503, r.text
    assert "within the server's 0.5 s limit" in r.json()["error"]
    assert took < 1.4


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_client_that_goes_away_cancels_its_queued_work(artifacts: Path,
                                                         tmp_path: Path) -> None:
    """Over a real socket: request A holds the model for a second, B queues behind it,
    then B's client disconnects. B's sample must never run, and B counts as 499."""
    stage = tm.classifier(artifacts)
    repo = ModelRepository(ServingConfig(name="clf", stages=[stage]), tmp_path,
                           limits=RequestLimits(timeout_seconds=30))
    repo.load_all()
    batcher = repo.batcher("clf")
    fast = batcher._predict
    ran: list[int] = []

    def slow(batch: np.ndarray) -> dict[str, np.ndarray]:
        ran.append(batch.shape[0])
        time.sleep(1.0)
        return fast(batch)

    batcher._predict = slow
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(repo), host="127.0.0.1", port=port,
                                           log_config=None, lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        body = (b'{"tensor": ' + str(np.zeros((3, 32, 32)).tolist()).encode() + b"}")
        request = (f"POST /predict?model=clf HTTP/1.1\r\nHost: x\r\nContent-Type: "
                   f"application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body
        a = socket.create_connection(("127.0.0.1", port))
        a.sendall(request)
        time.sleep(0.3)  # A is running
        b = socket.create_connection(("127.0.0.1", port))
        b.sendall(request)
        time.sleep(0.3)  # B is queued behind A
        b.close()
        a.settimeout(10)
        assert a.recv(64).startswith(b"HTTP/1.1 200")
        a.close()
        time.sleep(1.5)  # long enough for B's sample to have run, had it not been dropped
        assert ran == [1], ran
        metrics = repo.metrics.requests.labels(model="clf", endpoint="predict", status="499")
        assert metrics._value.get() == 1
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        asyncio.run(repo.close())


def test_a_load_failure_of_any_kind_exits_with_the_reason(artifacts: Path,
                                                          tmp_path: Path) -> None:
    # The graph runs at batch 1 and raises ONNX Runtime's own error type (not an
    # OSError or ValueError) when the warm-up tries the batch size of 8.
    stage = tm.fixed_batch_one(artifacts)
    proc = _start(ServingConfig(name="batch-one", stages=[stage], port=_free_port()), tmp_path)
    try:
        out, _ = proc.communicate(timeout=90)
    finally:
        proc.kill()
    assert proc.returncode == 3, out[-2000:]
    assert "could not load the model" in out
    assert "RuntimeException" in out or "Fail" in out or "InvalidArgument" in out, out[-2000:]


def test_zero_sized_shapes_cannot_hide_an_impossible_product(limited) -> None:
    # Found by the 500-example fuzz: numpy refused to reshape an empty array to it (500).
    _, client = limited
    r = client.post("/v2/models/clf/infer", json={"inputs": [{
        "name": "input", "shape": [0, 18599, 18665, 123857, 214512], "datatype": "BOOL",
        "data": []}]})
    assert r.status_code == 400, r.text
    assert "too large" in r.json()["error"]


@pytest.mark.parametrize(("datatype", "value"), [("FP16", 70000.0), ("FP32", 1e39)])
def test_floats_outside_the_datatype_are_a_client_error(limited, datatype: str,
                                                        value: float) -> None:
    # Found by the 500-example fuzz: the cast overflowed (a warning, an error under -W error).
    _, client = limited
    r = client.post("/v2/models/clf/infer", json={"inputs": [{
        "name": "input", "shape": [1, 3, 32, 32], "datatype": datatype,
        "data": [value] * (3 * 32 * 32)}]})
    assert r.status_code == 400, r.text
    assert "outside the range" in r.json()["error"]
    r = client.post("/predict?model=clf", json={"tensor": np.full((3, 32, 32), 1e39).tolist()})
    assert r.status_code == 400, r.text
