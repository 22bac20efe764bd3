"""The protocol-independent inference paths both APIs call.

``infer_tensor`` sends each sample of a request through the model's batcher
(so concurrent requests share forward passes) and stacks the answers;
``predict_images`` adds the task's pre- and postprocessing around it. Every
stage's time goes to the per-model latency histogram.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from forja_server import tasks
from forja_server.cache import cache_key
from forja_server.errors import InferenceError, InvalidInput, ServerError
from forja_server.repository import ModelRepository

__all__ = [
    "CLIENT_CLOSED",
    "Timings",
    "decode_images",
    "finite_floats",
    "infer_tensor",
    "observe_request",
    "predict_images",
]

Array = npt.NDArray[Any]


@dataclass
class Timings:
    """Milliseconds per stage of one request, returned to clients that ask."""

    stages: dict[str, float] = field(default_factory=dict)

    @contextlib.contextmanager
    def stage(self, repo: ModelRepository, model: str, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            took = time.perf_counter() - started
            self.stages[name] = self.stages.get(name, 0.0) + took * 1000
            repo.metrics.latency.labels(model=model, stage=name).observe(took)


CLIENT_CLOSED = 499
"""Status recorded for a request whose client went away (nginx's convention)."""


@contextlib.contextmanager
def observe_request(repo: ModelRepository, model: str, endpoint: str) -> Iterator[None]:
    """Count the request by status and record its latency, whatever the outcome.

    Only names the server serves get series: a name from the URL that matches no
    model is answered (404) but never becomes a label value, so clients cannot grow
    the metrics without bound.
    """
    started = time.perf_counter()
    status = 200
    try:
        yield
    except ServerError as exc:
        status = exc.status_code
        raise
    except asyncio.CancelledError:
        status = CLIENT_CLOSED
        raise
    except Exception:
        status = 500
        raise
    finally:
        if model in repo.names():
            took = time.perf_counter() - started
            repo.metrics.requests.labels(model=model, endpoint=endpoint, status=str(status)).inc()
            repo.metrics.latency.labels(model=model, stage="request").observe(took)
            stats = repo.stats.get(model)
            if stats is not None:
                stats.requests += 1
                stats.errors += status >= 400
                stats.latencies_ms.append(took * 1000)


async def infer_tensor(
    repo: ModelRepository, name: str, batch: Array, timing: dict[str, float] | None = None
) -> tuple[dict[str, Array], int]:
    """Run a (batch, ...) tensor through the model's batcher; returns outputs and max batch.

    ``timing`` (if given) receives the slowest sample's ``queue_ms`` and ``forward_ms``.
    """
    model = repo.get(name)
    batch = model.check_batch(batch)
    key = cache_key(name, model.version, batch) if repo.cache is not None else None
    if repo.cache is not None and key is not None:
        hit = await repo.cache.get(name, key)
        if hit is not None:
            if timing is not None:
                timing["queue_ms"] = timing["forward_ms"] = 0.0
            return hit.outputs, hit.batch_size
    batcher = repo.batcher(name)
    try:
        if batch.shape[0] == 1:
            results = [await batcher.submit(batch[0])]
        else:
            results = list(await asyncio.gather(*(batcher.submit(s) for s in batch)))
    except ServerError:
        raise
    except Exception as exc:  # a runtime error on a well-formed request
        raise InferenceError(f"model {name!r} failed: {type(exc).__name__}: {exc}") from exc
    if timing is not None:
        timing["queue_ms"] = max(r.queue_ms for r in results)
        timing["forward_ms"] = max(r.infer_ms for r in results)
    stats = repo.stats[name]
    stats.samples += len(results)
    names = results[0].outputs.keys()
    outputs = {k: np.stack([r.outputs[k] for r in results]) for k in names}
    batch_size = max(r.batch_size for r in results)
    if repo.cache is not None and key is not None:
        await repo.cache.put(key, outputs, batch_size)
    return outputs, batch_size


async def predict_images(
    repo: ModelRepository,
    name: str,
    images: Sequence[npt.NDArray[np.uint8]],
    timings: Timings | None = None,
) -> list[Any]:
    """Images -> task answers (one per image), through the batcher."""
    model = repo.get(name)
    timings = timings or Timings()
    with timings.stage(repo, name, "preprocess"):
        samples = [model.preprocess_image(img) for img in images]
        if len({s.shape for s in samples}) > 1:
            raise InvalidInput(
                f"images: model {name!r} takes images at their own size (it has free side "
                f"lengths and no resize), so one batch needs one size; got "
                f"{sorted({tuple(i.shape[:2]) for i in images})}",
                field="images",
            )
        contexts: list[dict[str, Any]] = [
            {"geometry": tasks.image_geometry(img.shape[:2], model.input.shape,
                                              model.preprocessing),
             "image_hw": img.shape[:2]}
            for img in images
        ]
    with timings.stage(repo, name, "predict"):
        outputs, _ = await infer_tensor(repo, name, np.stack(samples))
    with timings.stage(repo, name, "postprocess"):
        answers = []
        for i, ctx in enumerate(contexts):
            ctx["input"] = samples[i]
            try:
                answers.append(model.postprocess({k: v[i] for k, v in outputs.items()}, ctx))
            except (ValueError, IndexError) as exc:
                raise InferenceError(f"postprocessing failed: {exc}") from exc
    return answers


def finite_floats(values: Any, dtype: Any = np.float32) -> Array:
    """JSON numbers as a float array; a value the dtype cannot hold (1e39 as FP32, 70000
    as FP16) raises OverflowError instead of becoming inf with a warning."""
    with np.errstate(over="raise", invalid="raise"):
        try:
            return np.asarray(values, dtype=dtype)
        except FloatingPointError:
            raise OverflowError(f"values outside the range of {np.dtype(dtype).name}") from None


def decode_images(
    blobs: Sequence[bytes], fields: Sequence[str], max_pixels: int
) -> list[npt.NDArray[np.uint8]]:
    """Encoded images -> HWC uint8 arrays, refused (400) before any is decoded when their
    pixels together are over ``max_pixels``: a small compressed body can decode to
    gigabytes, and a batch of images each under a per-image limit still would."""
    import io

    from PIL import Image, UnidentifiedImageError

    opened: list[Any] = []  # PIL images, header read, pixels not yet decoded
    try:
        total = 0
        for data, field in zip(blobs, fields, strict=True):
            if not data:
                raise InvalidInput(f"{field}: empty image", field=field)
            try:
                img = Image.open(io.BytesIO(data))  # reads the header only
            except (UnidentifiedImageError, OSError, ValueError,
                    Image.DecompressionBombError) as exc:
                raise InvalidInput(f"{field}: not a readable image: {exc}",
                                   field=field) from exc
            opened.append(img)
            total += img.width * img.height * max(1, getattr(img, "n_frames", 1))
            if total > max_pixels:
                raise InvalidInput(
                    f"{field}: the request's images hold over {max_pixels} pixels together "
                    f"(this one is {img.width}x{img.height}); send fewer or smaller images",
                    field=field,
                )
        out: list[npt.NDArray[np.uint8]] = []
        for img, field in zip(opened, fields, strict=True):
            try:
                out.append(np.asarray(img.convert("RGB")))
            except (OSError, ValueError, Image.DecompressionBombError) as exc:
                raise InvalidInput(f"{field}: not a readable image: {exc}",
                                   field=field) from exc
        return out
    finally:
        for img in opened:
            img.close()
