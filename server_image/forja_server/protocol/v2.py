"""KServe's Open Inference Protocol (v2) over REST.

Typed request and response objects; tensors travel as flat ``data`` lists in
row-major order with their ``shape`` and ``datatype``. Responses are written
with orjson straight from numpy (no per-element Python floats).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Annotated, Any, Literal

import numpy as np
import numpy.typing as npt
import orjson
from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from forja_server import tasks
from forja_server.errors import InvalidInput, ModelNotReady
from forja_server.protocol.openapi_body import json_body, parse_json
from forja_server.protocol.versions import model_at_version
from forja_server.repository import ModelRepository
from forja_server.service import finite_floats, infer_tensor, observe_request

__all__ = [
    "UNSUPPORTED_OUTPUT_PARAMETERS",
    "InferenceRequest",
    "InferenceResponse",
    "RequestInput",
    "ResponseOutput",
    "request_to_array",
    "v2_router",
]

Datatype = Literal[
    "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
    "FP16", "FP32", "FP64", "BYTES",
]
_NUMPY: dict[str, str] = {v: k for k, v in tasks.V2_DATATYPES.items()}
MAX_ELEMENTS = 50_000_000


class _V2(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RequestInput(_V2):
    name: str = Field(max_length=256)
    shape: list[Annotated[int, Field(ge=0, le=1 << 31)]] = Field(min_length=1, max_length=8)
    datatype: Datatype
    parameters: dict[str, Any] | None = None
    """``binary_data_size`` says the tensor's bytes follow the JSON header (binary extension)."""
    data: list[Any] | None = None
    """Row-major flat (or nested) values; their count must equal the product of shape."""


class RequestOutput(_V2):
    name: str = Field(max_length=256)
    parameters: dict[str, Any] | None = None
    """``binary_data: true`` asks for this output in the binary part of the answer."""


class InferenceRequest(_V2):
    id: str | None = Field(default=None, max_length=256)
    model_name: str | None = Field(default=None, max_length=256)
    """KServe's Python client repeats the path's model here; it must match the path."""
    model_version: str | None = Field(default=None, max_length=256)
    """If given, the served version (404 otherwise, as on a versioned path)."""
    parameters: dict[str, Any] | None = None
    """``binary_data_output: true`` (Triton's client, when no outputs are named): every
    output whose own ``binary_data`` is not false is answered in binary."""
    inputs: list[RequestInput] = Field(min_length=1, max_length=16)
    outputs: list[RequestOutput] | None = None


class ResponseOutput(BaseModel):
    name: str
    shape: list[int]
    datatype: Datatype
    parameters: dict[str, Any] | None = None
    """``binary_data_size`` when the output's bytes follow the JSON header."""
    data: list[Any] | None = None
    """Absent when the output travels in binary."""


class InferenceResponse(BaseModel):
    model_name: str
    model_version: str | None = None
    id: str | None = None
    parameters: dict[str, Any] | None = None
    outputs: list[ResponseOutput]


class ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str]


class ModelMetadata(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[dict[str, Any]]
    outputs: list[dict[str, Any]]


class Liveness(BaseModel):
    live: bool


class Readiness(BaseModel):
    ready: bool


class ErrorBody(BaseModel):
    error: str
    field: str | None = None


HEADER_LENGTH = "inference-header-content-length"


def split_binary(body: bytes, header_length: str | None) -> tuple[bytes, memoryview]:
    """The binary tensor extension: a JSON header of the given length, then raw tensors."""
    if header_length is None:
        return body, memoryview(b"")
    try:
        n = int(header_length)
    except ValueError:
        raise InvalidInput(f"{HEADER_LENGTH}: not an integer", field=HEADER_LENGTH) from None
    if not 0 < n <= len(body):
        raise InvalidInput(f"{HEADER_LENGTH}: {n} is outside the body's {len(body)} bytes",
                           field=HEADER_LENGTH)
    return body[:n], memoryview(body)[n:]


def _typed_array(data: list[Any], dtype: np.dtype[Any]) -> npt.NDArray[Any]:
    """JSON values as ``dtype``, refusing values the datatype cannot hold as they are:
    numpy would silently truncate 1.5 to an INT64 1, wrap 300 into INT8, read true as
    a float; the v2 protocol says the data must be of the declared datatype."""
    if dtype.kind == "f":
        return finite_floats(data, dtype)
    raw = np.asarray(data)
    if dtype.kind == "b":
        if raw.size and raw.dtype.kind != "b":
            raise ValueError(f"BOOL data must be true/false, got {raw.dtype.name} values")
        return raw.astype(dtype, copy=False)
    if raw.size and raw.dtype.kind not in "iu":
        raise ValueError(f"integer data must be JSON integers, got {raw.dtype.name} values")
    if raw.size:
        info = np.iinfo(dtype)
        if int(raw.min()) < info.min or int(raw.max()) > info.max:
            raise ValueError(f"values outside [{info.min}, {info.max}]")
    return raw.astype(dtype, copy=False)


def request_to_array(
    inp: RequestInput, binary: memoryview | None = None, offset: int = 0
) -> tuple[npt.NDArray[Any], int]:
    """One v2 input -> (array of its shape and datatype, next binary offset); 400 on mismatch."""
    if inp.datatype == "BYTES" or inp.datatype not in _NUMPY:
        raise InvalidInput(f"inputs.{inp.name}.datatype: {inp.datatype} is not supported",
                           field="datatype")
    count = math.prod(inp.shape)
    # Zero-sized dimensions must not hide a product of the others numpy cannot allocate.
    if max(count, math.prod(d for d in inp.shape if d)) > MAX_ELEMENTS:
        raise InvalidInput(f"inputs.{inp.name}.shape: {inp.shape} is too large", field="shape")
    dtype = np.dtype(_NUMPY[inp.datatype])
    size = (inp.parameters or {}).get("binary_data_size")
    if size is not None:
        if not isinstance(size, int) or size < 0 or binary is None \
                or offset + size > len(binary):
            raise InvalidInput(f"inputs.{inp.name}.parameters.binary_data_size: {size!r} does "
                               "not fit the binary part of the body", field="binary_data_size")
        if size != count * dtype.itemsize:
            raise InvalidInput(
                f"inputs.{inp.name}: {size} bytes do not fill shape {inp.shape} of "
                f"{inp.datatype}", field="binary_data_size")
        arr = np.frombuffer(binary[offset : offset + size], dtype=dtype).reshape(inp.shape)
        if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
            raise InvalidInput(f"inputs.{inp.name}: NaN or infinite values", field="data")
        return arr, offset + size
    if inp.data is None:
        raise InvalidInput(f"inputs.{inp.name}.data: missing (or give binary_data_size)",
                           field="data")
    try:
        arr = _typed_array(inp.data, dtype)
    except (ValueError, TypeError, OverflowError) as exc:
        raise InvalidInput(
            f"inputs.{inp.name}.data: not an array of {inp.datatype}: {exc}", field="data"
        ) from None
    if arr.size != count:
        raise InvalidInput(
            f"inputs.{inp.name}.data: {arr.size} values do not fill shape {inp.shape}",
            field="data",
        )
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        raise InvalidInput(f"inputs.{inp.name}.data: NaN or infinite values", field="data")
    return arr.reshape(inp.shape), offset


# Extensions of the protocol this server does not implement: answering as if they were
# not asked for would hand the client data where it waits for a shared-memory region or
# class labels, so they are refused by name instead.
UNSUPPORTED_OUTPUT_PARAMETERS = ("shared_memory_region", "classification")


def _flag(params: dict[str, Any] | None, key: str, where: str) -> bool | None:
    value = (params or {}).get(key)
    if value is not None and not isinstance(value, bool):
        raise InvalidInput(f"{where}.{key}: must be true or false, got {value!r}", field=key)
    return value


def binary_choice(req: InferenceRequest) -> Callable[[str], bool]:
    """Whether an output travels in binary (the binary tensor extension): its own
    ``binary_data`` wins, else the request's ``binary_data_output``. Checked before the
    forward pass, so a malformed flag costs no inference."""
    default = bool(_flag(req.parameters, "binary_data_output", "parameters"))
    own: dict[str, bool | None] = {}
    for o in req.outputs or []:
        for key in UNSUPPORTED_OUTPUT_PARAMETERS:
            if key in (o.parameters or {}):
                raise InvalidInput(f"outputs.{o.name}.parameters.{key}: not supported by this "
                                   "server", field=key)
        own[o.name] = _flag(o.parameters, "binary_data", f"outputs.{o.name}.parameters")

    def binary(name: str) -> bool:
        flag = own.get(name)
        return default if flag is None else flag

    return binary


def _output_json(name: str, value: npt.NDArray[Any], binary: bool = False) -> dict[str, Any]:
    value = np.ascontiguousarray(value)
    out: dict[str, Any] = {
        "name": name,
        "shape": list(value.shape),
        "datatype": tasks.V2_DATATYPES.get(value.dtype.name, "FP32"),
    }
    if binary:
        out["parameters"] = {"binary_data_size": value.nbytes}
    else:
        out["data"] = value.reshape(-1)
    return out


def infer_body(body: dict[str, Any], outputs: dict[str, npt.NDArray[Any]],
               binary: set[str]) -> Response:
    """The answer: JSON, or (when an output travels in binary) the JSON header, then each
    binary output's bytes in order, its length in ``Inference-Header-Content-Length``."""
    body["outputs"] = [_output_json(k, v, k in binary) for k, v in outputs.items()]
    if not binary:
        return _json(body)
    header = orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)
    raw = [np.ascontiguousarray(v).tobytes() for k, v in outputs.items() if k in binary]
    return Response(b"".join([header, *raw]), 200, media_type="application/octet-stream",
                    headers={HEADER_LENGTH: str(len(header))})


def _json(obj: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY), status,
                    media_type="application/json")


def v2_router(repo: ModelRepository, server_version: str) -> APIRouter:
    r = APIRouter(tags=["v2 (Open Inference Protocol)"])
    errors: dict[int | str, dict[str, Any]] = {
        400: {"model": ErrorBody}, 404: {"model": ErrorBody}, 503: {"model": ErrorBody}
    }

    @r.get("/v2", response_model=ServerMetadata)
    async def server_metadata() -> ServerMetadata:
        return ServerMetadata(
            name="forja", version=server_version, extensions=["binary_tensor_data"]
        )

    @r.get("/v2/health/live", response_model=Liveness)
    async def live() -> Liveness:
        return Liveness(live=True)

    @r.get("/v2/health/ready", response_model=Readiness, responses={503: {"model": Readiness}})
    async def ready() -> Response:
        ok = repo.ready
        return _json({"ready": ok}, 200 if ok else 503)

    @r.get("/v2/models/{model_name}", response_model=ModelMetadata, responses=errors)
    async def model_metadata(model_name: str) -> Response:
        return _json(repo.get(model_name).metadata())

    @r.get("/v2/models/{model_name}/ready", response_model=Readiness, responses=errors)
    async def model_ready(model_name: str) -> Response:
        try:
            ok = repo.get(model_name).ready
        except ModelNotReady:
            ok = False
        return _json({"ready": ok}, 200 if ok else 503)

    @r.post(
        "/v2/models/{model_name}/infer",
        response_model=InferenceResponse,
        responses={**errors, 413: {"model": ErrorBody}},
        openapi_extra=json_body(InferenceRequest),
    )
    async def infer(model_name: str, request: Request) -> Response:
        started = time.perf_counter()
        with observe_request(repo, model_name, "v2/infer"):
            model = repo.get(model_name)
            header, binary = split_binary(await request.body(),
                                          request.headers.get(HEADER_LENGTH))
            req = parse_json(InferenceRequest, header)
            if req.model_name is not None and req.model_name != model_name:
                raise InvalidInput(f"model_name: {req.model_name!r} is not the path's model "
                                   f"{model_name!r}", field="model_name")
            model_at_version(repo, model_name, req.model_version)
            as_binary = binary_choice(req)
            if len(req.inputs) != 1:
                raise InvalidInput(
                    f"inputs: model {model_name!r} takes one input "
                    f"({model.input.name}), got {len(req.inputs)}",
                    field="inputs",
                )
            batch, _ = request_to_array(req.inputs[0], binary)
            if batch.ndim < 1 or batch.shape[0] < 1:
                raise InvalidInput("inputs.shape: the first dimension is the batch (>= 1)",
                                   field="shape")
            timing: dict[str, float] = {}
            outputs, batch_size = await infer_tensor(repo, model_name, batch, timing)
            wanted = {o.name for o in req.outputs} if req.outputs else None
            if wanted and not wanted <= outputs.keys():
                raise InvalidInput(
                    f"outputs: unknown {sorted(wanted - outputs.keys())}; "
                    f"model has {sorted(outputs)}",
                    field="outputs",
                )
            chosen = {k: v for k, v in outputs.items() if not wanted or k in wanted}
            response = infer_body(
                {"model_name": model_name, "model_version": model.version, "id": req.id,
                 "parameters": {"batch_size": batch_size}},
                chosen, {k for k in chosen if as_binary(k)})
            # W3C Server-Timing: lets clients (and bench/server) split server time from
            # the forward pass without a profiler.
            total = (time.perf_counter() - started) * 1000
            response.headers["server-timing"] = (
                f"total;dur={total:.3f}, queue;dur={timing['queue_ms']:.3f}, "
                f"forward;dur={timing['forward_ms']:.3f}"
            )
            return response

    return r
