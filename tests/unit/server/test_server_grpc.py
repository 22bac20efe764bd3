"""The Open Inference Protocol over gRPC, served beside HTTP from one process.

A plain grpc client on the generated stubs calls every method of
``inference.GRPCInferenceService`` against a tiny real model; answers must
match the HTTP API's, and errors must come back as the protocol's status codes.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from fastapi.testclient import TestClient

from forja_api.serving import RateLimitConfig, StageArtifact
from forja_server.app import create_app
from forja_server.protocol.grpc import grpc_predict_v2_pb2 as pb
from forja_server.protocol.grpc.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub
from forja_server.repository import ModelRepository

from ._server_helpers import serve


@pytest.fixture(scope="module")
def served(clf_stage: StageArtifact, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[tuple[ModelRepository, TestClient, GRPCInferenceServiceStub]]:
    repo, _ = serve([clf_stage], tmp_path_factory.mktemp("cache"))
    app = create_app(repo, grpc_address="127.0.0.1:0")
    with TestClient(app, raise_server_exceptions=False) as http:
        port = app.state.grpc_port
        assert port
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield repo, http, GRPCInferenceServiceStub(channel)


def _x(n: int = 2, seed: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).random((n, 3, 32, 32), dtype=np.float32)


def _typed(x: np.ndarray, **kw: object) -> pb.ModelInferRequest:
    tensor = pb.ModelInferRequest.InferInputTensor(
        name="input", datatype="FP32", shape=list(x.shape),
        contents=pb.InferTensorContents(fp32_contents=x.reshape(-1).tolist()))
    return pb.ModelInferRequest(model_name="clf", id="g1", inputs=[tensor], **kw)


def _raw(x: np.ndarray, **kw: object) -> pb.ModelInferRequest:
    tensor = pb.ModelInferRequest.InferInputTensor(name="input", datatype="FP32",
                                                   shape=list(x.shape))
    return pb.ModelInferRequest(model_name="clf", inputs=[tensor],
                                raw_input_contents=[x.tobytes()], **kw)


def _code(call: object) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as info:
        call()  # type: ignore[operator]
    return info.value.code()


def test_health_and_metadata(served: tuple) -> None:
    _, _, stub = served
    assert stub.ServerLive(pb.ServerLiveRequest()).live is True
    assert stub.ServerReady(pb.ServerReadyRequest()).ready is True
    assert stub.ModelReady(pb.ModelReadyRequest(name="clf")).ready is True
    assert stub.ModelReady(pb.ModelReadyRequest(name="clf", version="1.0.0")).ready is True
    server = stub.ServerMetadata(pb.ServerMetadataRequest())
    assert server.name == "forja" and "binary_tensor_data" in server.extensions
    meta = stub.ModelMetadata(pb.ModelMetadataRequest(name="clf"))
    assert meta.name == "clf" and list(meta.versions) == ["1.0.0"]
    assert meta.platform
    (inp,) = meta.inputs
    assert (inp.name, inp.datatype, list(inp.shape)) == ("input", "FP32", [-1, 3, 32, 32])
    assert meta.outputs[0].datatype == "FP32"


def test_typed_and_raw_contents_agree_with_http(served: tuple) -> None:
    _, http, stub = served
    x = _x()
    typed = stub.ModelInfer(_typed(x))
    assert typed.model_name == "clf" and typed.model_version == "1.0.0" and typed.id == "g1"
    assert not typed.raw_output_contents
    (out,) = typed.outputs
    assert out.datatype == "FP32" and list(out.shape) == [2, 3]
    typed_values = np.asarray(out.contents.fp32_contents, dtype=np.float32).reshape(2, 3)

    raw = stub.ModelInfer(_raw(x, model_version="1.0.0"))
    assert raw.model_version == "1.0.0"
    (raw_bytes,) = raw.raw_output_contents
    raw_values = np.frombuffer(raw_bytes, dtype=np.float32).reshape(2, 3)
    np.testing.assert_allclose(raw_values, typed_values, rtol=1e-6)
    assert raw.parameters["batch_size"].int64_param >= 1

    r = http.post("/v2/models/clf/infer", json={"inputs": [{
        "name": "input", "shape": list(x.shape), "datatype": "FP32",
        "data": x.reshape(-1).tolist()}]})
    assert r.status_code == 200, r.text
    np.testing.assert_allclose(np.asarray(r.json()["outputs"][0]["data"]).reshape(2, 3),
                               typed_values, rtol=1e-5)


def test_requested_binary_output(served: tuple) -> None:
    _, _, stub = served
    wanted = pb.ModelInferRequest.InferRequestedOutputTensor(
        name="logits", parameters={"binary_data": pb.InferParameter(bool_param=True)})
    meta = stub.ModelMetadata(pb.ModelMetadataRequest(name="clf"))
    wanted.name = meta.outputs[0].name
    answer = stub.ModelInfer(_typed(_x(1), outputs=[wanted]))
    assert len(answer.raw_output_contents) == 1 and len(answer.raw_output_contents[0]) == 12
    bad = pb.ModelInferRequest.InferRequestedOutputTensor(name="nope")
    assert _code(lambda: stub.ModelInfer(_typed(_x(1), outputs=[bad]))) \
        == grpc.StatusCode.INVALID_ARGUMENT


def test_errors_map_to_status_codes(served: tuple) -> None:
    repo, http, stub = served
    x = _x(1)
    few = _typed(x)
    del few.inputs[0].contents.fp32_contents[5:]
    assert _code(lambda: stub.ModelInfer(few)) == grpc.StatusCode.INVALID_ARGUMENT
    short = _raw(x)
    short.raw_input_contents[0] = x.tobytes()[:100]
    assert _code(lambda: stub.ModelInfer(short)) == grpc.StatusCode.INVALID_ARGUMENT
    wrong_shape = _raw(np.zeros((1, 3, 16, 16), np.float32))
    assert _code(lambda: stub.ModelInfer(wrong_shape)) == grpc.StatusCode.INVALID_ARGUMENT
    bad_type = _typed(x)
    bad_type.inputs[0].datatype = "COMPLEX"
    assert _code(lambda: stub.ModelInfer(bad_type)) == grpc.StatusCode.INVALID_ARGUMENT
    nan = _raw(np.full((1, 3, 32, 32), np.nan, np.float32))
    assert _code(lambda: stub.ModelInfer(nan)) == grpc.StatusCode.INVALID_ARGUMENT

    unknown = _typed(x)
    unknown.model_name = "nope"
    assert _code(lambda: stub.ModelInfer(unknown)) == grpc.StatusCode.NOT_FOUND
    assert _code(lambda: stub.ModelMetadata(pb.ModelMetadataRequest(name="nope"))) \
        == grpc.StatusCode.NOT_FOUND
    assert _code(lambda: stub.ModelReady(pb.ModelReadyRequest(name="nope"))) \
        == grpc.StatusCode.NOT_FOUND
    assert _code(lambda: stub.ModelInfer(_typed(x, model_version="9.9.9"))) \
        == grpc.StatusCode.NOT_FOUND

    repo.draining = True
    try:
        assert stub.ServerReady(pb.ServerReadyRequest()).ready is False
        assert _code(lambda: stub.ModelInfer(_typed(x))) == grpc.StatusCode.UNAVAILABLE
    finally:
        repo.draining = False

    metrics = http.get("/metrics").text
    assert 'endpoint="grpc/infer",model="clf",status="400"' in metrics
    # A name the server does not serve is answered (NOT_FOUND) but never becomes a
    # label value: clients cannot grow the metrics without bound (as over HTTP).
    assert 'model="nope"' not in metrics
    assert 'endpoint="grpc/infer",model="clf",status="503"' in metrics


def test_http_version_paths(served: tuple) -> None:
    _, http, _ = served
    assert http.get("/v2/models/clf/versions/1.0.0").json()["versions"] == ["1.0.0"]
    assert http.get("/v2/models/clf/versions/1.0.0/ready").json() == {"ready": True}
    x = _x(1)
    r = http.post("/v2/models/clf/versions/1.0.0/infer", json={"inputs": [{
        "name": "input", "shape": list(x.shape), "datatype": "FP32",
        "data": x.reshape(-1).tolist()}]})
    assert r.status_code == 200, r.text
    assert r.json()["model_version"] == "1.0.0"
    other = http.get("/v2/models/clf/versions/2.0.0/ready")
    assert other.status_code == 404 and "serves version 1.0.0" in other.json()["error"]
    assert http.get("/v2/models/nope/versions/1.0.0").status_code == 404


def test_grpc_limits_are_resource_exhausted(clf_stage: StageArtifact, tmp_path: Path) -> None:
    repo, _ = serve([clf_stage], tmp_path, max_body_bytes=64 * 1024,
                    rate_limit=RateLimitConfig(requests_per_second=0.01, burst=2))
    app = create_app(repo, grpc_address="127.0.0.1:0")
    with TestClient(app) as http, \
            grpc.insecure_channel(f"127.0.0.1:{app.state.grpc_port}") as channel:
        stub = GRPCInferenceServiceStub(channel)
        # Over maxBodyBytes: refused by grpc before the handler (and takes no token).
        assert _code(lambda: stub.ModelInfer(_raw(_x(8)))) == grpc.StatusCode.RESOURCE_EXHAUSTED
        for _ in range(2):
            stub.ModelInfer(_raw(_x(1)))
        with pytest.raises(grpc.RpcError) as info:
            stub.ModelInfer(_raw(_x(1)))
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert int(dict(info.value.trailing_metadata())["retry-after"]) >= 1
        # Another client (by header-less peer: same) is refused too; health is never limited.
        assert stub.ServerLive(pb.ServerLiveRequest()).live
        assert 'forja_rate_limited_requests_total{protocol="grpc"} 1.0' in http.get(
            "/metrics").text


@pytest.mark.parametrize(("datatype", "field", "dtype"), [
    ("FP64", "fp64_contents", np.float64),
    ("INT32", "int_contents", np.int32),
    ("UINT8", "uint_contents", np.uint8),
    ("INT64", "int64_contents", np.int64),
])
def test_typed_contents_of_each_datatype(served: tuple, datatype: str, field: str,
                                         dtype: type) -> None:
    _, _, stub = served
    x = (np.arange(3 * 32 * 32) % 7).reshape(1, 3, 32, 32).astype(dtype)
    tensor = pb.ModelInferRequest.InferInputTensor(name="input", datatype=datatype,
                                                   shape=list(x.shape))
    getattr(tensor.contents, field).extend(x.reshape(-1).tolist())
    typed = stub.ModelInfer(pb.ModelInferRequest(model_name="clf", inputs=[tensor]))
    raw = stub.ModelInfer(_raw(x.astype(np.float32)))
    np.testing.assert_allclose(typed.outputs[0].contents.fp32_contents,
                               np.frombuffer(raw.raw_output_contents[0], np.float32),
                               rtol=1e-5)


def test_output_extensions_not_served_are_invalid_argument(served: tuple) -> None:
    _, _, stub = served
    for key, value in (("classification", pb.InferParameter(int64_param=2)),
                       ("shared_memory_region", pb.InferParameter(string_param="r"))):
        wanted = pb.ModelInferRequest.InferRequestedOutputTensor(name="output",
                                                                 parameters={key: value})
        with pytest.raises(grpc.RpcError) as info:
            stub.ModelInfer(_raw(_x(1), outputs=[wanted]))
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert key in (info.value.details() or "")
