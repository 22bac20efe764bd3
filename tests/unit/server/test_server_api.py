"""The v2 protocol, the simple API, errors, limits and metrics over HTTP."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import orjson
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from ._server_helpers import serve


def _png(color: tuple[int, int, int] = (255, 0, 0), size: tuple[int, int] = (40, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


def _infer_body(x: np.ndarray) -> dict:
    return {"id": "r1", "inputs": [{"name": "input", "shape": list(x.shape),
                                    "datatype": "FP32", "data": x.reshape(-1).tolist()}]}


def test_health_and_metadata(clf_client: TestClient) -> None:
    assert clf_client.get("/v2/health/live").json() == {"live": True}
    assert clf_client.get("/v2/health/ready").json() == {"ready": True}
    assert clf_client.get("/v2/models/clf/ready").json() == {"ready": True}
    meta = clf_client.get("/v2/models/clf").json()
    assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 3, 32, 32]}]
    assert meta["versions"] == ["1.0.0"]
    assert "binary_tensor_data" in clf_client.get("/v2").json()["extensions"]


def test_v2_infer_json_and_binary_agree(clf_client: TestClient) -> None:
    x = np.random.default_rng(1).random((3, 3, 32, 32), dtype=np.float32)
    r = clf_client.post("/v2/models/clf/infer", json=_infer_body(x))
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["id"] == "r1" and out["model_name"] == "clf"
    (o,) = out["outputs"]
    assert o["shape"] == [3, 3] and o["datatype"] == "FP32"
    timing = dict(p.strip().split(";dur=") for p in r.headers["server-timing"].split(","))
    assert float(timing["total"]) >= float(timing["forward"]) > 0
    header = orjson.dumps({"inputs": [{"name": "input", "shape": [3, 3, 32, 32],
                                       "datatype": "FP32",
                                       "parameters": {"binary_data_size": x.nbytes}}]})
    rb = clf_client.post("/v2/models/clf/infer", content=header + x.tobytes(),
                         headers={"inference-header-content-length": str(len(header)),
                                  "content-type": "application/octet-stream"})
    assert rb.status_code == 200, rb.text
    np.testing.assert_allclose(rb.json()["outputs"][0]["data"], o["data"], rtol=1e-6)


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"inputs": []}, 400, "inputs"),
        ({"inputs": [{"name": "input", "shape": [1, 3, 32, 32], "datatype": "FP32",
                      "data": [1.0]}]}, 400, "data"),
        ({"inputs": [{"name": "input", "shape": [1, 3, 16, 16], "datatype": "FP32",
                      "data": [0.0] * 768}]}, 400, "inputs"),
        ({"inputs": [{"name": "input", "shape": [1], "datatype": "BYTES",
                      "data": ["a"]}]}, 400, "datatype"),
        ({"inputs": [{"name": "input", "shape": [1, 1], "datatype": "FP32",
                      "data": ["x"]}]}, 400, "data"),
        ({"inputs": [{"name": "input", "shape": [0, 3, 32, 32], "datatype": "FP32",
                      "data": []}]}, 400, None),
    ],
)
def test_v2_bad_requests_are_400_with_a_field(clf_client: TestClient, body: dict,
                                              status: int, field: str | None) -> None:
    r = clf_client.post("/v2/models/clf/infer", json=body)
    assert r.status_code == status, r.text
    assert r.json()["error"]
    if field:
        assert field in r.json().get("field", "") or field in r.json()["error"]


def test_unknown_model_is_404_and_garbage_is_400(clf_client: TestClient) -> None:
    assert clf_client.post("/v2/models/nope/infer", json={}).status_code == 404
    assert clf_client.get("/v2/models/nope").status_code == 404
    r = clf_client.post("/v2/models/clf/infer", content=b"{not json",
                        headers={"content-type": "application/json"})
    assert r.status_code == 400
    r = clf_client.post("/v2/models/clf/infer", content=b"{}",
                        headers={"inference-header-content-length": "99"})
    assert r.status_code == 400 and "inference-header-content-length" in r.json()["error"]


def test_predict_image_upload_json_and_tensor(clf_client: TestClient) -> None:
    up = clf_client.post("/predict", files={"file": ("x.png", _png(), "image/png")})
    assert up.status_code == 200, up.text
    pred = up.json()["prediction"]
    assert pred["label"] in ("cat", "dog", "smoke")
    raw = clf_client.post("/predict", content=_png(), headers={"content-type": "image/png"})
    js = clf_client.post("/predict", json={"image": base64.b64encode(_png()).decode()})
    assert raw.json()["prediction"] == pred == js.json()["prediction"]
    t = clf_client.post("/predict", json={"tensor": np.zeros((3, 32, 32)).tolist()})
    assert t.status_code == 200 and "label" in t.json()["prediction"]
    assert set(up.json()["timings_ms"]) >= {"preprocess", "predict", "postprocess"}


def test_predict_batch_answers_each_image(clf_client: TestClient) -> None:
    files = [("files", (f"{i}.png", _png((i * 60, 0, 0)), "image/png")) for i in range(4)]
    r = clf_client.post("/predict/batch", files=files)
    assert r.status_code == 200, r.text
    assert len(r.json()["predictions"]) == 4
    js = clf_client.post("/predict/batch",
                         json={"images": [base64.b64encode(_png()).decode()] * 2})
    assert len(js.json()["predictions"]) == 2


@pytest.mark.parametrize(
    ("kwargs", "status"),
    [
        ({"content": b"not an image", "headers": {"content-type": "image/png"}}, 400),
        ({"json": {"image": "%%%"}}, 400),
        ({"json": {}}, 400),
        ({"json": {"image": "aGk=", "tensor": [1]}}, 400),
        ({"json": {"tensor": [[1.0, "a"]]}}, 400),
        ({"content": b"x", "headers": {"content-type": "text/plain"}}, 415),
        ({"content": b"--x\r\nbroken", "headers": {"content-type": "multipart/form-data"}}, 400),
    ],
)
def test_predict_bad_input_is_4xx(clf_client: TestClient, kwargs: dict, status: int) -> None:
    r = clf_client.post("/predict", **kwargs)
    assert r.status_code == status, r.text
    assert r.json()["error"]


def test_stats_and_metrics(clf_client: TestClient) -> None:
    clf_client.post("/predict", json={"tensor": np.zeros((3, 32, 32)).tolist()})
    stats = clf_client.get("/stats").json()
    m = stats["models"]["clf"]
    assert m["requests"] >= 1 and m["runtime"] == "onnxruntime" and m["format"] == \
        "torch-state-dict"
    text = clf_client.get("/metrics").text
    assert 'forja_requests_total{endpoint="predict",model="clf",status="200"}' in text
    assert 'forja_stage_latency_seconds_bucket{le="0.001",model="clf",stage="predict"}' in text
    assert "forja_batch_size_bucket" in text and "forja_requests_in_flight" in text


def test_body_limit_is_413(clf_stage, tmp_path: Path) -> None:
    _, client = serve([clf_stage], tmp_path, max_body_bytes=2048)
    with client:
        r = client.post("/predict", content=b"x" * 4096, headers={"content-type": "image/png"})
        assert r.status_code == 413 and "body" in r.json()["error"]

        def chunks():  # no content-length: the limit applies while streaming
            for _ in range(8):
                yield b"x" * 1024

        r = client.post("/predict", content=chunks(), headers={"content-type": "image/png"})
        assert r.status_code == 413


def test_draining_turns_readiness_false_first(clf_stage, tmp_path: Path) -> None:
    repo, client = serve([clf_stage], tmp_path)
    with client:
        assert client.get("/v2/health/ready").status_code == 200
        repo.draining = True
        assert client.get("/v2/health/ready").status_code == 503
        assert client.get("/v2/health/live").status_code == 200
        assert client.post("/predict", json={"tensor": [[[0.0]]]}).status_code == 503


def test_openapi_document_lists_the_apis(clf_client: TestClient) -> None:
    doc = clf_client.get("/openapi.json").json()
    for path in ("/v2/health/live", "/v2/health/ready", "/v2/models/{model_name}",
                 "/v2/models/{model_name}/ready", "/v2/models/{model_name}/infer",
                 "/predict", "/predict/batch", "/predict/geotiff", "/stats"):
        assert path in doc["paths"], path
    body = doc["paths"]["/v2/models/{model_name}/infer"]["post"]["requestBody"]
    assert body["content"]["application/json"]["schema"]["$ref"].endswith("InferenceRequest")
    assert "InferenceRequest" in doc["components"]["schemas"]
