"""What the ecosystem's clients send over REST (KServe's and Triton's Python clients,
tests/integration/isvc/test_isvc_clients.py runs them for real): the request's
``model_name``/``model_version``, requested outputs in binary (``binary_data``,
``binary_data_output``), and the extensions this server refuses by name."""

from __future__ import annotations

import numpy as np
import orjson
import pytest
from fastapi.testclient import TestClient

URL = "/v2/models/clf/infer"


def _x(n: int = 2) -> np.ndarray:
    return np.random.default_rng(5).random((n, 3, 32, 32), dtype=np.float32)


def _body(x: np.ndarray, **extra: object) -> dict:
    return {"id": "c1", "inputs": [{"name": "input", "shape": list(x.shape), "datatype": "FP32",
                                    "data": x.reshape(-1).tolist()}], **extra}


def _split(r) -> tuple[dict, bytes]:  # type: ignore[no-untyped-def]
    n = int(r.headers["inference-header-content-length"])
    return orjson.loads(r.content[:n]), r.content[n:]


def test_model_name_and_version_in_the_body_must_match(clf_client: TestClient) -> None:
    x = _x()
    ok = clf_client.post(URL, json=_body(x, model_name="clf", model_version="1.0.0"))
    assert ok.status_code == 200, ok.text
    other = clf_client.post(URL, json=_body(x, model_name="other"))
    assert other.status_code == 400 and other.json()["field"] == "model_name", other.text
    old = clf_client.post(URL, json=_body(x, model_version="0.9.0"))
    assert old.status_code == 404 and "serves version 1.0.0" in old.json()["error"], old.text
    still_strict = clf_client.post(URL, json=_body(x, modelName="clf"))
    assert still_strict.status_code == 400, still_strict.text


def test_requested_binary_output_comes_after_the_json_header(clf_client: TestClient) -> None:
    x = _x()
    as_json = clf_client.post(URL, json=_body(x)).json()["outputs"][0]
    r = clf_client.post(URL, json=_body(x, outputs=[{"name": "output",
                                                     "parameters": {"binary_data": True}}]))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/octet-stream"
    header, raw = _split(r)
    (out,) = header["outputs"]
    assert "data" not in out and out["parameters"] == {"binary_data_size": 2 * 3 * 4}
    assert out["shape"] == [2, 3] and out["datatype"] == "FP32"
    assert header["model_version"] == "1.0.0" and header["id"] == "c1"
    np.testing.assert_array_equal(np.frombuffer(raw, np.float32),
                                  np.asarray(as_json["data"], np.float32))


def test_binary_data_output_and_the_outputs_own_flag(clf_client: TestClient) -> None:
    x = _x(1)
    r = clf_client.post(URL, json=_body(x, parameters={"binary_data_output": True}))
    header, raw = _split(r)
    assert header["outputs"][0]["parameters"]["binary_data_size"] == len(raw) == 12
    # The output's own binary_data: false wins over the request's default: plain JSON.
    r = clf_client.post(URL, json=_body(x, parameters={"binary_data_output": True},
                                        outputs=[{"name": "output",
                                                  "parameters": {"binary_data": False}}]))
    assert "inference-header-content-length" not in r.headers
    assert len(r.json()["outputs"][0]["data"]) == 3


@pytest.mark.parametrize(("extra", "field"), [
    ({"outputs": [{"name": "output", "parameters": {"binary_data": "yes"}}]}, "binary_data"),
    ({"parameters": {"binary_data_output": 1}}, "binary_data_output"),
    ({"outputs": [{"name": "output", "parameters": {"classification": 2}}]}, "classification"),
    ({"outputs": [{"name": "output", "parameters": {"shared_memory_region": "r",
                                                    "shared_memory_byte_size": 12}}]},
     "shared_memory_region"),
])
def test_what_the_server_does_not_do_is_a_400(clf_client: TestClient, extra: dict,
                                              field: str) -> None:
    r = clf_client.post(URL, json=_body(_x(1), **extra))
    assert r.status_code == 400 and r.json()["field"] == field, r.text


def test_parameters_it_does_not_use_are_accepted(clf_client: TestClient) -> None:
    # Triton's client sends these when asked (sequence, priority, timeout): the protocol
    # lets parameters carry anything, so they are ignored, not refused.
    r = clf_client.post(URL, json=_body(_x(1), parameters={"priority": 1, "timeout": 100,
                                                           "sequence_id": 0}))
    assert r.status_code == 200, r.text
