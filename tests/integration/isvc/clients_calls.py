"""The ecosystem's own clients calling a served model; run in hack/client-venv.sh's venv.

    client-venv/bin/python clients_calls.py --http http://IP:80 --grpc IP:8081 \
        --model M --version V --input x.npy --project kserve|triton

Prints one JSON object: {client: {call: result}}, where a result is
``{"ok": true, ...what the client parsed}`` or ``{"ok": false, "error": ...}``, so
that the test (in the project's venv) asserts on every call and a failure names the
client and the call. Clients: KServe's ``InferenceRESTClient`` and
``InferenceGRPCClient`` (protocol v2), Triton's ``tritonclient.http`` and
``tritonclient.grpc``. Nothing here imports forja: these are the clients a user has.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import traceback
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np

OUTPUTS = ("logits", "probabilities")
ONE = "probabilities"


def _arrays(named: dict[str, Any]) -> dict[str, Any]:
    return {k: np.asarray(v, dtype=np.float64).tolist() for k, v in named.items()}


async def _call(results: dict[str, Any], name: str, fn: Callable[[], Awaitable[Any]]) -> None:
    try:
        value = await fn()
        results[name] = {"ok": True, **(value if isinstance(value, dict) else {"value": value})}
    except Exception as exc:
        results[name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}",
                         "trace": traceback.format_exc(limit=3)}


def _sync(fn: Callable[[], Any]) -> Callable[[], Awaitable[Any]]:
    async def run() -> Any:
        return fn()

    return run


# --- KServe ---------------------------------------------------------------------------
def _kserve_response(resp: Any, headers: dict[str, str] | None = None) -> dict[str, Any]:
    out = {
        "names": [o.name for o in resp.outputs],
        "datatypes": [o.datatype for o in resp.outputs],
        "outputs": _arrays({o.name: o.as_numpy() for o in resp.outputs}),
        "model_name": resp.model_name,
    }
    if headers is not None:
        out["binary_response"] = "inference-header-content-length" in {
            k.lower() for k in headers}
    return out


def _kserve_request(model: str, x: np.ndarray, *, binary: bool, outputs: list[str] | None,
                    grpc_typed: bool = False, version: str | None = None) -> Any:
    from kserve import InferInput, InferRequest
    from kserve.protocol.infer_type import RequestedOutput

    if grpc_typed:  # a list travels in typed contents (fp32_contents) over gRPC
        inp = InferInput("input", list(x.shape), "FP32", data=x.reshape(-1).tolist())
    else:
        inp = InferInput("input", list(x.shape), "FP32")
        inp.set_data_from_numpy(x, binary_data=binary)
    requested = None
    if outputs is not None:
        requested = [RequestedOutput(n, parameters={"binary_data": binary}) for n in outputs]
    return InferRequest(model, [inp], request_id="req-1", request_outputs=requested,
                        model_version=version)


async def kserve_rest(base: str, model: str, version: str, x: np.ndarray) -> dict[str, Any]:
    from kserve import InferenceRESTClient, RESTConfig

    r: dict[str, Any] = {}
    client = InferenceRESTClient(RESTConfig(protocol="v2", timeout=30))

    async def infer(binary: bool, outputs: list[str] | None) -> dict[str, Any]:
        headers: dict[str, str] = {}
        resp = await client.infer(base, _kserve_request(model, x, binary=binary,
                                                        outputs=outputs),
                                  model_name=model, response_headers=headers)
        return _kserve_response(resp, headers)

    async def metadata() -> dict[str, Any]:
        # KServe's REST client has no metadata call: its own httpx session does the GET.
        resp = await client._client.get(f"{base}/v2/models/{model}", timeout=30)
        resp.raise_for_status()
        return dict(resp.json())

    await _call(r, "live", lambda: client.is_server_live(base))
    await _call(r, "ready", lambda: client.is_server_ready(base))
    await _call(r, "model_ready", lambda: client.is_model_ready(base, model))
    await _call(r, "metadata", metadata)
    await _call(r, "infer_json", lambda: infer(False, None))
    await _call(r, "infer_binary", lambda: infer(True, list(OUTPUTS)))
    await _call(r, "infer_one_output", lambda: infer(True, [ONE]))
    await _call(r, "infer_one_output_json", lambda: infer(False, [ONE]))
    await client.close()
    return r


async def kserve_grpc(target: str, model: str, version: str, x: np.ndarray) -> dict[str, Any]:
    from kserve import InferenceGRPCClient
    from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb

    r: dict[str, Any] = {}
    client = InferenceGRPCClient(target, timeout=30)

    async def infer(**kw: Any) -> dict[str, Any]:
        resp = await client.infer(_kserve_request(model, x, **kw))
        return {**_kserve_response(resp), "model_version": resp.model_version,
                "raw_outputs": [o.name for o in resp.outputs if o._raw_data is not None]}

    async def metadata() -> dict[str, Any]:
        # The client has no metadata call: KServe's own stub and messages parse ours.
        m = await client._client_stub.ModelMetadata(pb.ModelMetadataRequest(name=model),
                                                    timeout=30)
        return {"name": m.name, "versions": list(m.versions), "platform": m.platform,
                "inputs": [{"name": t.name, "datatype": t.datatype, "shape": list(t.shape)}
                           for t in m.inputs],
                "outputs": [t.name for t in m.outputs]}

    await _call(r, "live", client.is_server_live)
    await _call(r, "ready", client.is_server_ready)
    await _call(r, "model_ready", lambda: client.is_model_ready(model))
    await _call(r, "metadata", metadata)
    await _call(r, "infer_json", lambda: infer(binary=False, outputs=None, grpc_typed=True))
    await _call(r, "infer_binary", lambda: infer(binary=True, outputs=list(OUTPUTS),
                                                 version=version))
    await _call(r, "infer_one_output", lambda: infer(binary=True, outputs=[ONE]))
    await _call(r, "infer_one_output_json", lambda: infer(binary=False, outputs=[ONE],
                                                          grpc_typed=True))
    await client.close()
    return r


# --- Triton ---------------------------------------------------------------------------
def _triton_http_result(res: Any) -> dict[str, Any]:
    body = res.get_response()
    names = [o["name"] for o in body["outputs"]]
    return {
        "names": names,
        "datatypes": [o["datatype"] for o in body["outputs"]],
        "outputs": _arrays({n: res.as_numpy(n) for n in names}),
        "binary_outputs": [n for n, o in zip(names, body["outputs"], strict=True)
                           if "binary_data_size" in (o.get("parameters") or {})],
        "model_name": body.get("model_name"), "model_version": body.get("model_version"),
        "id": body.get("id"),
    }


async def triton_http(base: str, model: str, version: str, x: np.ndarray) -> dict[str, Any]:
    import tritonclient.http as th

    r: dict[str, Any] = {}
    client = th.InferenceServerClient(base.removeprefix("http://"), network_timeout=30)

    def infer(binary: bool, outputs: list[str] | None, model_version: str = "") -> Any:
        inp = th.InferInput("input", list(x.shape), "FP32")
        inp.set_data_from_numpy(x, binary_data=binary)
        req = None if outputs is None else [th.InferRequestedOutput(n, binary_data=binary)
                                            for n in outputs]
        return _triton_http_result(client.infer(model, [inp], model_version=model_version,
                                                outputs=req, request_id="req-1"))

    await _call(r, "live", _sync(client.is_server_live))
    await _call(r, "ready", _sync(client.is_server_ready))
    await _call(r, "model_ready", _sync(lambda: client.is_model_ready(model)))
    await _call(r, "model_ready_version", _sync(lambda: client.is_model_ready(model, version)))
    await _call(r, "server_metadata", _sync(client.get_server_metadata))
    await _call(r, "metadata", _sync(lambda: client.get_model_metadata(model, version)))
    await _call(r, "infer_json", _sync(lambda: infer(False, list(OUTPUTS))))
    await _call(r, "infer_binary", _sync(lambda: infer(True, list(OUTPUTS), version)))
    # No outputs named: the client asks for all of them in binary (binary_data_output).
    await _call(r, "infer_default", _sync(lambda: infer(True, None)))
    await _call(r, "infer_one_output", _sync(lambda: infer(True, [ONE])))
    await _call(r, "infer_one_output_json", _sync(lambda: infer(False, [ONE])))
    client.close()
    return r


async def triton_grpc(target: str, model: str, version: str, x: np.ndarray) -> dict[str, Any]:
    import tritonclient.grpc as tg

    r: dict[str, Any] = {}
    client = tg.InferenceServerClient(target)

    def infer(outputs: list[str] | None, model_version: str = "") -> dict[str, Any]:
        # tritonclient.grpc always sends raw_input_contents (set_data_from_numpy).
        inp = tg.InferInput("input", list(x.shape), "FP32")
        inp.set_data_from_numpy(x)
        req = None if outputs is None else [tg.InferRequestedOutput(n) for n in outputs]
        res = client.infer(model, [inp], model_version=model_version, outputs=req,
                           request_id="req-1", client_timeout=30)
        body = res.get_response()
        names = [o.name for o in body.outputs]
        return {"names": names, "datatypes": [o.datatype for o in body.outputs],
                "outputs": _arrays({n: res.as_numpy(n) for n in names}),
                "model_name": body.model_name, "model_version": body.model_version,
                "id": body.id, "raw_outputs": names[:len(body.raw_output_contents)]}

    def metadata() -> dict[str, Any]:
        m = client.get_model_metadata(model, version, as_json=True)
        return dict(m)

    await _call(r, "live", _sync(client.is_server_live))
    await _call(r, "ready", _sync(client.is_server_ready))
    await _call(r, "model_ready", _sync(lambda: client.is_model_ready(model)))
    await _call(r, "model_ready_version", _sync(lambda: client.is_model_ready(model, version)))
    await _call(r, "server_metadata", _sync(lambda: client.get_server_metadata(as_json=True)))
    await _call(r, "metadata", _sync(metadata))
    await _call(r, "infer_binary", _sync(lambda: infer(list(OUTPUTS), version)))
    await _call(r, "infer_default", _sync(lambda: infer(None)))
    await _call(r, "infer_one_output", _sync(lambda: infer([ONE])))
    client.close()
    return r


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--http", required=True, help="http://host:port")
    ap.add_argument("--grpc", required=True, help="host:port")
    ap.add_argument("--model", required=True)
    ap.add_argument("--version", required=True)
    ap.add_argument("--input", required=True, help=".npy of one FP32 request tensor")
    ap.add_argument("--project", required=True, choices=["kserve", "triton"],
                    help="one per process: both register the protocol's messages under "
                    "the same names in protobuf's default pool, which refuses duplicates")
    a = ap.parse_args()
    # kserve parses sys.argv when imported (its model server's flags): leave it nothing.
    del sys.argv[1:]
    x = np.load(a.input).astype(np.float32)
    if a.project == "kserve":
        out = {"kserve_rest": await kserve_rest(a.http, a.model, a.version, x),
               "kserve_grpc": await kserve_grpc(a.grpc, a.model, a.version, x)}
    else:
        out = {"triton_http": await triton_http(a.http, a.model, a.version, x),
               "triton_grpc": await triton_grpc(a.grpc, a.model, a.version, x)}
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    asyncio.run(main())
