"""The simple API the teams use: ``/predict``, ``/predict/batch``, ``/stats``, GeoTIFF.

``/predict`` takes an uploaded image (multipart field ``file``), raw image bytes,
or JSON (``{"image": base64}`` or ``{"tensor": [...]}``) and answers in the
task's terms (labels, boxes, masks...). For a pipeline service it runs the
whole pipeline. ``/predict/geotiff`` maps a GeoTIFF to a GeoTIFF.
"""

from __future__ import annotations

import base64
import binascii
import time
from typing import Any

import numpy as np
import orjson
from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from forja_api.artifact import Preprocessing
from forja_server import geotiff
from forja_server.errors import InvalidInput, UnsupportedMediaType
from forja_server.limits import MAX_OVERLAP
from forja_server.pipeline import run_pipeline
from forja_server.protocol.openapi_body import json_body, parse_json
from forja_server.repository import ModelRepository
from forja_server.scenes import SceneMapResponse, SceneRequest, receive_scene
from forja_server.service import (
    Timings,
    decode_images,
    finite_floats,
    infer_tensor,
    observe_request,
    predict_images,
)

__all__ = ["BatchPredictRequest", "PredictRequest", "simple_router"]

MAX_BATCH_ITEMS = 64
_IMAGE_TYPES = {
    "image/png": {"schema": {"type": "string", "format": "binary"}},
    "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
    "multipart/form-data": {
        "schema": {
            "type": "object",
            "properties": {"file": {"type": "string", "format": "binary"}},
            "required": ["file"],
        }
    },
}
_BATCH_TYPES = {
    "multipart/form-data": {
        "schema": {
            "type": "object",
            "properties": {
                "files": {"type": "array", "items": {"type": "string", "format": "binary"}}
            },
            "required": ["files"],
        }
    }
}


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    image: str | None = Field(default=None, description="A base64-encoded PNG/JPEG/TIFF.")
    tensor: list[Any] | None = Field(
        default=None, description="One input sample as nested lists, in the model's shape."
    )


class BatchPredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    images: list[str] | None = Field(default=None, max_length=MAX_BATCH_ITEMS)
    tensors: list[list[Any]] | None = Field(default=None, max_length=MAX_BATCH_ITEMS)


class PredictResponse(BaseModel):
    model: str
    version: str | None = None
    prediction: Any
    timings_ms: dict[str, float]


class BatchPredictResponse(BaseModel):
    model: str
    version: str | None = None
    predictions: list[Any]
    timings_ms: dict[str, float]


def _b64(text: str, field: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput(f"{field}: not valid base64", field=field) from None


def _tensor(values: list[Any], field: str) -> np.ndarray[Any, Any]:
    try:
        arr = finite_floats(values)
    except (ValueError, TypeError, OverflowError) as exc:
        raise InvalidInput(f"{field}: not a numeric array: {exc}", field=field) from None
    if not np.all(np.isfinite(arr)):
        raise InvalidInput(f"{field}: NaN or infinite values", field=field)
    return arr


async def _form_files(request: Request, field: str, many: bool) -> list[bytes]:
    try:
        form = await request.form(max_files=MAX_BATCH_ITEMS, max_fields=MAX_BATCH_ITEMS)
    except Exception as exc:  # malformed multipart: always the client's fault
        raise InvalidInput(f"body: malformed multipart form: {exc}", field="body") from None
    out: list[bytes] = []
    try:
        items = form.getlist(field) if many else [form.get(field)]
        for item in items:
            if item is None or isinstance(item, str):
                raise InvalidInput(f"{field}: expected an uploaded file", field=field)
            out.append(await item.read())
    finally:
        await form.close()  # spooled temporary files
    if not out:
        raise InvalidInput(f"{field}: no files uploaded", field=field)
    return out


def _model_overlap(pre: Preprocessing, tile: int) -> float:
    stride = pre.tile_stride
    if stride is not None and stride <= tile:
        return min(MAX_OVERLAP, 1.0 - float(stride) / tile)
    return 0.5


def _json(obj: Any) -> Response:
    return Response(orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY),
                    media_type="application/json")


def simple_router(repo: ModelRepository) -> APIRouter:
    r = APIRouter(tags=["simple API"])

    def decode(blobs: list[bytes], fields: list[str]) -> list[np.ndarray[Any, Any]]:
        return decode_images(blobs, fields, repo.limits.max_request_pixels)

    def resolve(model: str | None) -> str:
        name = model or repo.default_name()
        if name != repo.config.name or not repo.config.is_pipeline:
            repo.get(name)  # 404 / 503 early, before reading a large body
        return name

    async def answer_images(name: str, images: list[np.ndarray[Any, Any]]) -> dict[str, Any]:
        timings = Timings()
        if repo.config.is_pipeline and name == repo.config.name:
            results = [await run_pipeline(repo, [img]) for img in images]
            return {"predictions": results, "timings_ms": timings.stages}
        preds = await predict_images(repo, name, images, timings)
        return {"predictions": preds, "timings_ms": timings.stages}

    async def answer_tensors(name: str, tensors: list[np.ndarray[Any, Any]]) -> dict[str, Any]:
        if repo.config.is_pipeline and name == repo.config.name:
            raise InvalidInput("the pipeline takes images, not tensors", field="tensor")
        model = repo.get(name)
        shapes = {t.shape for t in tensors}
        if len(shapes) != 1:
            raise InvalidInput("tensors: every sample must have the same shape", field="tensors")
        timings = Timings()
        batch = np.stack(tensors)
        with timings.stage(repo, name, "predict"):
            outputs, _ = await infer_tensor(repo, name, batch)
        with timings.stage(repo, name, "postprocess"):
            preds = [
                model.postprocess({k: v[i] for k, v in outputs.items()},
                                  {"input": model.check_batch(batch)[i]})
                for i in range(len(tensors))
            ]
        return {"predictions": preds, "timings_ms": timings.stages}

    async def read_images(request: Request, many: bool) -> list[bytes] | None:
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype == "multipart/form-data":
            return await _form_files(request, "files" if many else "file", many)
        if ctype.startswith("image/") or ctype == "application/octet-stream":
            if many:
                raise UnsupportedMediaType("send several images as multipart 'files' or JSON",
                                           field="body")
            return [await request.body()]
        if ctype in ("application/json", ""):
            return None
        raise UnsupportedMediaType(f"content-type {ctype!r} is not accepted", field="body")

    def envelope(name: str, body: dict[str, Any], single: bool) -> dict[str, Any]:
        version = (repo.models[name].version if name in repo.models else None)
        out: dict[str, Any] = {"model": name, "version": version}
        if single:
            out["prediction"] = body["predictions"][0]
        else:
            out["predictions"] = body["predictions"]
        out["timings_ms"] = {k: round(v, 3) for k, v in body["timings_ms"].items()}
        return out

    @r.post("/predict", response_model=PredictResponse,
            openapi_extra=json_body(PredictRequest, also=_IMAGE_TYPES))
    async def predict(request: Request, model: str | None = Query(default=None)) -> Response:
        name = resolve(model)
        with observe_request(repo, name, "predict"):
            raw = await read_images(request, many=False)
            if raw is not None:
                body = await answer_images(name, decode(raw, ["file"]))
            else:
                req = parse_json(PredictRequest, await request.body())
                if (req.image is None) == (req.tensor is None):
                    raise InvalidInput("give exactly one of 'image' or 'tensor'", field="image")
                if req.image is not None:
                    body = await answer_images(
                        name, decode([_b64(req.image, "image")], ["image"]))
                else:
                    assert req.tensor is not None
                    body = await answer_tensors(name, [_tensor(req.tensor, "tensor")])
            return _json(envelope(name, body, single=True))

    @r.post("/predict/batch", response_model=BatchPredictResponse,
            openapi_extra=json_body(BatchPredictRequest, also=_BATCH_TYPES))
    async def predict_batch(request: Request, model: str | None = Query(default=None)) -> Response:
        name = resolve(model)
        with observe_request(repo, name, "predict/batch"):
            raw = await read_images(request, many=True)
            if raw is not None:
                fields = [f"files[{i}]" for i in range(len(raw))]
                body = await answer_images(name, decode(raw, fields))
            else:
                req = parse_json(BatchPredictRequest, await request.body())
                if (req.images is None) == (req.tensors is None):
                    raise InvalidInput("give exactly one of 'images' or 'tensors'",
                                       field="images")
                if req.images is not None:
                    if not req.images:
                        raise InvalidInput("images: empty list", field="images")
                    fields = [f"images[{i}]" for i in range(len(req.images))]
                    blobs = [_b64(t, f) for t, f in zip(req.images, fields, strict=True)]
                    body = await answer_images(name, decode(blobs, fields))
                else:
                    assert req.tensors is not None
                    if not req.tensors:
                        raise InvalidInput("tensors: empty list", field="tensors")
                    body = await answer_tensors(
                        name, [_tensor(t, f"tensors[{i}]") for i, t in enumerate(req.tensors)])
            return _json(envelope(name, body, single=False))

    @r.post(
        "/predict/geotiff",
        response_class=Response,
        responses={200: {"content": {"image/tiff": {}}, "description": "The map as GeoTIFF."}},
        openapi_extra=json_body(SceneRequest, also={
            "image/tiff": {"schema": {"type": "string", "format": "binary"}},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        }),
    )
    async def predict_geotiff(
        request: Request,
        model: str | None = Query(default=None),
        overlap: float | None = Query(
            default=None, ge=0.0, le=MAX_OVERLAP,
            description="Tile overlap fraction; default from the model's tile_stride, else 0.5",
        ),
    ) -> Response:
        name = resolve(model)
        with observe_request(repo, name, "predict/geotiff"):
            m = repo.get(name)
            shape = m.input.shape
            if len(shape) != 3:
                raise InvalidInput(f"model {name!r} does not take images", field="model")
            tile = m.preprocessing.tile or (shape[1] if shape[1] else 64)

            async def run(tiles: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
                outputs, _ = await infer_tensor(repo, name, tiles)
                return next(iter(outputs.values()))

            started = time.perf_counter()
            scene = await receive_scene(request, repo.limits)
            try:
                result = await geotiff.predict_geotiff(
                    scene.scene, task=m.task, bands=shape[0], tile=tile,
                    overlap=overlap if overlap is not None
                    else _model_overlap(m.preprocessing, tile),
                    preprocessing=m.preprocessing,
                    threshold=m.postprocessing.threshold, run=run, limits=repo.limits,
                    out_path=scene.map_path,
                )
            except BaseException:
                scene.cleanup()
                raise
            headers = {f"X-Forja-{k.replace('_', '-')}": v for k, v in result.tags.items()}
            headers["X-Forja-Time-Ms"] = f"{(time.perf_counter() - started) * 1000:.1f}"
            if result.path is not None:  # sent from disk, then the folder goes
                return SceneMapResponse(scene, headers)
            scene.cleanup()
            return Response(result.data, media_type="image/tiff", headers=headers)

    @r.get("/stats")
    async def stats() -> dict[str, Any]:
        return {
            "ready": repo.ready,
            "uptime_seconds": round(time.time() - repo.started_at, 3),
            "in_flight": repo.in_flight,
            "models": {
                name: {
                    **s.to_json(),
                    "format": repo.models[name].format if name in repo.models else None,
                    "runtime": repo.models[name].runtime if name in repo.models else None,
                    "version": repo.models[name].version if name in repo.models else None,
                }
                for name, s in repo.stats.items()
            },
            "batching": repo.config.batching.model_dump(),
            "cache": repo.cache.stats() if repo.cache is not None else None,
            "rate_limit": repo.config.rate_limit.model_dump()
            if repo.config.rate_limit is not None else None,
        }

    return r
