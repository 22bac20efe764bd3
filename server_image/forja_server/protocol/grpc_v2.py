"""KServe's Open Inference Protocol (v2) over gRPC: ``inference.GRPCInferenceService``.

A thin adapter beside :mod:`forja_server.protocol.v2`: requests become the same
typed :class:`~forja_server.protocol.v2.RequestInput` and arrays
(:func:`~forja_server.protocol.v2.request_to_array`), inference goes through the
same :func:`~forja_server.service.infer_tensor` (batcher, cache, metrics, stats),
and every :class:`~forja_server.errors.ServerError` becomes one gRPC status:

=====================  ===================
HTTP (errors.py)       gRPC
=====================  ===================
400 InvalidInput       INVALID_ARGUMENT
404 ModelNotFound      NOT_FOUND
413 PayloadTooLarge    RESOURCE_EXHAUSTED
415 Unsupported...     INVALID_ARGUMENT
429 rate limited       RESOURCE_EXHAUSTED
503 ModelNotReady      UNAVAILABLE
500 (anything else)    INTERNAL
=====================  ===================

Tensors come as typed ``contents`` or as ``raw_input_contents`` (row-major bytes,
one per input). Answers are raw when the request was raw or asked for
``binary_data`` on an output (or a datatype has no typed field, e.g. FP16), else
typed. The server runs on the HTTP server's event loop (``grpc.aio``), so both
share the batchers; it is started and stopped by the app's lifespan.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import grpc
import numpy as np
import numpy.typing as npt
from pydantic import ValidationError

from forja_server import tasks
from forja_server.errors import InvalidInput, ModelNotReady, RateLimited, ServerError
from forja_server.protocol.grpc import grpc_predict_v2_pb2 as pb
from forja_server.protocol.grpc import grpc_predict_v2_pb2_grpc as pb_grpc
from forja_server.protocol.v2 import (
    UNSUPPORTED_OUTPUT_PARAMETERS,
    RequestInput,
    request_to_array,
)
from forja_server.protocol.versions import model_at_version
from forja_server.ratelimit import client_id, retry_after
from forja_server.repository import ModelRepository
from forja_server.service import infer_tensor, observe_request

__all__ = ["GrpcServer", "InferenceServicer", "grpc_status", "start_grpc_server"]

log = logging.getLogger(__name__)
Array = npt.NDArray[Any]

# v2 datatype -> the InferTensorContents field that carries it (FP16 only travels raw).
CONTENTS_FIELD: dict[str, str] = {
    "BOOL": "bool_contents",
    "INT8": "int_contents", "INT16": "int_contents", "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents", "UINT16": "uint_contents", "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents", "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}

_STATUS: dict[int, grpc.StatusCode] = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    404: grpc.StatusCode.NOT_FOUND,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    415: grpc.StatusCode.INVALID_ARGUMENT,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    503: grpc.StatusCode.UNAVAILABLE,
}


def grpc_status(exc: ServerError) -> grpc.StatusCode:
    return _STATUS.get(exc.status_code, grpc.StatusCode.INTERNAL)


def _param(p: pb.InferParameter) -> Any:
    kind = p.WhichOneof("parameter_choice")
    return getattr(p, kind) if kind else None


def _validated_input(**fields: Any) -> RequestInput:
    try:
        return RequestInput(**fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first.get("loc", ())) or "inputs"
        raise InvalidInput(f"inputs.{loc}: {first.get('msg', 'invalid')}",
                           field=loc) from None


def request_array(request: pb.ModelInferRequest) -> Array:
    """The request's one input tensor as an array (typed contents or raw bytes)."""
    if len(request.inputs) != 1:
        raise InvalidInput(f"inputs: one input expected, got {len(request.inputs)}",
                           field="inputs")
    inp = request.inputs[0]
    params = {k: _param(v) for k, v in inp.parameters.items()}
    common = {"name": inp.name, "shape": list(inp.shape), "datatype": inp.datatype}
    raw = request.raw_input_contents
    if raw:
        if len(raw) != len(request.inputs):
            raise InvalidInput(f"raw_input_contents: {len(raw)} given for "
                               f"{len(request.inputs)} inputs", field="raw_input_contents")
        data = raw[0]
        req = _validated_input(**common, parameters={**params, "binary_data_size": len(data)})
        arr, _ = request_to_array(req, memoryview(data))
    else:
        field = CONTENTS_FIELD.get(inp.datatype)
        if field is None and inp.datatype in tasks.V2_DATATYPES.values():
            raise InvalidInput(f"inputs.{inp.name}: {inp.datatype} travels in "
                               "raw_input_contents", field="raw_input_contents")
        values = list(getattr(inp.contents, field)) if field else []
        req = _validated_input(**common, parameters=params or None, data=values)
        arr, _ = request_to_array(req)
    if arr.ndim < 1 or arr.shape[0] < 1:
        raise InvalidInput("inputs.shape: the first dimension is the batch (>= 1)",
                           field="shape")
    return arr


def _wants_raw(request: pb.ModelInferRequest) -> bool:
    if request.raw_input_contents:
        return True
    return any(bool(_param(o.parameters["binary_data"]))
               for o in request.outputs if "binary_data" in o.parameters)


def infer_response(
    request: pb.ModelInferRequest, name: str, version: str | None,
    outputs: Mapping[str, Array], batch_size: int,
) -> pb.ModelInferResponse:
    wanted = [o.name for o in request.outputs]
    for o in request.outputs:
        for key in UNSUPPORTED_OUTPUT_PARAMETERS:
            if key in o.parameters:
                raise InvalidInput(f"outputs.{o.name}.parameters.{key}: not supported by "
                                   "this server", field=key)
    unknown = sorted(set(wanted) - outputs.keys())
    if unknown:
        raise InvalidInput(f"outputs: unknown {unknown}; model has {sorted(outputs)}",
                           field="outputs")
    chosen = {k: np.ascontiguousarray(v) for k, v in outputs.items()
              if not wanted or k in wanted}
    datatypes = {k: tasks.V2_DATATYPES.get(v.dtype.name, "FP32") for k, v in chosen.items()}
    raw = _wants_raw(request) or any(d not in CONTENTS_FIELD for d in datatypes.values())
    response = pb.ModelInferResponse(
        model_name=name, model_version=version or "", id=request.id,
        parameters={"batch_size": pb.InferParameter(int64_param=batch_size)},
    )
    for k, value in chosen.items():
        tensor = response.outputs.add(name=k, datatype=datatypes[k], shape=list(value.shape))
        if raw:
            response.raw_output_contents.append(value.tobytes())
        else:
            getattr(tensor.contents, CONTENTS_FIELD[datatypes[k]]).extend(
                value.reshape(-1).tolist())
    return response


def _metadata(context: grpc.aio.ServicerContext[Any, Any]) -> dict[str, str]:
    return {k: v for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)}


def _peer_host(peer: str | None) -> str | None:
    # "ipv4:127.0.0.1:5555" / "ipv6:[::1]:5555" -> the address without the port
    if not peer:
        return None
    address = peer.split(":", 1)[-1]
    return address.rsplit(":", 1)[0].strip("[]")


class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    def __init__(self, repo: ModelRepository, server_version: str) -> None:
        self.repo = repo
        self.server_version = server_version

    async def _abort(self, context: grpc.aio.ServicerContext[Any, Any],
                     exc: ServerError) -> None:
        if exc.status_code >= 500 and exc.status_code != 503:
            log.error("%s: %s", type(exc).__name__, exc.message)
        await context.abort(grpc_status(exc), exc.message)

    async def ServerLive(self, request: pb.ServerLiveRequest,  # noqa: N802 - the protocol's
                         context: grpc.aio.ServicerContext[Any, Any]) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request: pb.ServerReadyRequest,  # noqa: N802
                          context: grpc.aio.ServicerContext[Any, Any]
                          ) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self.repo.ready)

    async def ModelReady(self, request: pb.ModelReadyRequest,  # noqa: N802
                         context: grpc.aio.ServicerContext[Any, Any]) -> pb.ModelReadyResponse:
        try:
            ok = model_at_version(self.repo, request.name, request.version).ready
        except ModelNotReady:
            ok = False
        except ServerError as exc:
            await self._abort(context, exc)
        return pb.ModelReadyResponse(ready=ok)

    async def ServerMetadata(self, request: pb.ServerMetadataRequest,  # noqa: N802
                             context: grpc.aio.ServicerContext[Any, Any]
                             ) -> pb.ServerMetadataResponse:
        return pb.ServerMetadataResponse(name="forja", version=self.server_version,
                                         extensions=["binary_tensor_data"])

    async def ModelMetadata(self, request: pb.ModelMetadataRequest,  # noqa: N802
                            context: grpc.aio.ServicerContext[Any, Any]
                            ) -> pb.ModelMetadataResponse:
        try:
            meta = model_at_version(self.repo, request.name, request.version).metadata()
        except ServerError as exc:
            await self._abort(context, exc)
        tensor = pb.ModelMetadataResponse.TensorMetadata
        return pb.ModelMetadataResponse(
            name=meta["name"], versions=meta["versions"], platform=meta["platform"],
            inputs=[tensor(**t) for t in meta["inputs"]],
            outputs=[tensor(**t) for t in meta["outputs"]],
        )

    def _rate_limit(self, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        limiter = self.repo.limiter
        if limiter is None:
            return
        cfg = self.repo.config.rate_limit
        client = client_id(_metadata(context), _peer_host(context.peer()),
                           cfg.client_header if cfg else None)
        wait = limiter.acquire(client)
        if wait > 0:
            self.repo.metrics.rate_limited.labels(protocol="grpc").inc()
            seconds = retry_after(wait)
            context.set_trailing_metadata((("retry-after", str(seconds)),))
            raise RateLimited(f"rate limit of {limiter.rate:g} requests/s per client "
                              f"exceeded; retry after {seconds} s", field="client")

    async def ModelInfer(self, request: pb.ModelInferRequest,  # noqa: N802
                         context: grpc.aio.ServicerContext[Any, Any]) -> pb.ModelInferResponse:
        repo = self.repo
        name = request.model_name
        repo.in_flight += 1
        repo.metrics.in_flight.inc()
        try:
            self._rate_limit(context)
            with observe_request(repo, name, "grpc/infer"):
                model = model_at_version(repo, name, request.model_version)
                batch = request_array(request)
                outputs, batch_size = await infer_tensor(repo, name, batch)
                return infer_response(request, name, model.version, outputs, batch_size)
        except ServerError as exc:
            await self._abort(context, exc)
            raise  # abort raised already; this keeps type checkers informed
        finally:
            repo.in_flight -= 1
            repo.metrics.in_flight.dec()


@dataclass
class GrpcServer:
    server: grpc.aio.Server
    port: int

    async def stop(self, grace: float | None) -> None:
        await self.server.stop(grace)


async def start_grpc_server(
    repo: ModelRepository, address: str, server_version: str,
    *, max_concurrent_rpcs: int | None = None,
) -> GrpcServer:
    """Serve the protocol on ``address`` (host:port; port 0 picks a free one)."""
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", repo.config.max_body_bytes),
            ("grpc.max_send_message_length", -1),
        ],
        # Over this, new calls get RESOURCE_EXHAUSTED (the HTTP side answers 503); the
        # same setting as uvicorn's limit_concurrency (cli.py).
        maximum_concurrent_rpcs=max_concurrent_rpcs
        or int(os.environ.get("FORJA_MAX_CONCURRENCY", "1024")),
    )
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(  # type: ignore[no-untyped-call]
        InferenceServicer(repo, server_version), server)
    port = server.add_insecure_port(address)
    await server.start()
    log.info("gRPC (Open Inference Protocol) on %s", address.rsplit(":", 1)[0] + f":{port}")
    return GrpcServer(server, port)
