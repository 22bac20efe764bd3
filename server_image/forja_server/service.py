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
from forja_server.errors import InferenceError, InvalidInput, ServerError
from forja_server.repository import ModelRepository

__all__ = ["Timings", "infer_tensor", "observe_request", "predict_images"]

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


@contextlib.contextmanager
def observe_request(repo: ModelRepository, model: str, endpoint: str) -> Iterator[None]:
    """Count the request by status and record its latency, whatever the outcome."""
    started = time.perf_counter()
    status = 200
    try:
        yield
    except ServerError as exc:
        status = exc.status_code
        raise
    except Exception:
        status = 500
        raise
    finally:
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
    return outputs, max(r.batch_size for r in results)


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


def decode_image(data: bytes, field: str = "file") -> npt.NDArray[np.uint8]:
    """Encoded image bytes (PNG, JPEG, TIFF...) -> HWC uint8; 400 if unreadable."""
    import io

    from PIL import Image, UnidentifiedImageError

    if not data:
        raise InvalidInput(f"{field}: empty image", field=field)
    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.width * img.height > 40_000_000:
                raise InvalidInput(f"{field}: image too large ({img.width}x{img.height})",
                                   field=field)
            arr = np.asarray(img.convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise InvalidInput(f"{field}: not a readable image: {exc}", field=field) from exc
    return arr
