"""Detector -> crops -> verifier as one endpoint (WORKLOADS.md §1, "SAI").

The detector proposes boxes on the newest frame; each box is cropped (with a
margin) from every frame given, the crops form the verifier's short sequence,
and only boxes the verifier confirms come back as ``confirmed``. With a single
image there is no temporal context: the one crop is repeated to the sequence
length and the response says so (``sequence.mode = "repeated"``). Both stages'
timings are returned and recorded in the metrics.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from forja_server import tasks
from forja_server.errors import InvalidInput
from forja_server.repository import ModelRepository
from forja_server.service import Timings, infer_tensor, predict_images

__all__ = ["crop_box", "run_pipeline"]

MAX_FRAMES = 16


def crop_box(
    image: npt.NDArray[np.uint8], box: Sequence[float], margin: float
) -> npt.NDArray[np.uint8]:
    """Crop an xyxy box grown by ``margin`` (a fraction of its size), clipped to the image."""
    h, w = image.shape[:2]
    x1, y1, x2, y2 = box
    mx, my = (x2 - x1) * margin, (y2 - y1) * margin
    left, top = int(max(0, np.floor(x1 - mx))), int(max(0, np.floor(y1 - my)))
    right, bottom = int(min(w, np.ceil(x2 + mx))), int(min(h, np.ceil(y2 + my)))
    if right - left < 1 or bottom - top < 1:
        return image[0:1, 0:1]
    return image[top:bottom, left:right]


async def run_pipeline(
    repo: ModelRepository, frames: Sequence[npt.NDArray[np.uint8]]
) -> dict[str, Any]:
    if not frames:
        raise InvalidInput("at least one image is needed", field="file")
    if len(frames) > MAX_FRAMES:
        raise InvalidInput(f"at most {MAX_FRAMES} frames", field="files")
    detector_stage, verifier_stage = repo.config.stages[0], repo.config.stages[1]
    detector = repo.get(detector_stage.name)
    verifier = repo.get(verifier_stage.name)
    if (detector.task, verifier.task) != ("detection", "verification") or len(
        repo.config.stages
    ) != 2:
        raise InvalidInput(
            f"{repo.config.name!r} serves models side by side, not a detector -> verifier "
            f"pipeline; choose one with ?model= ({[s.name for s in repo.config.stages]})",
            field="model",
        )
    started = time.perf_counter()
    timings = Timings()
    with timings.stage(repo, repo.config.name, "detector"):
        (detected,) = await predict_images(repo, detector.name, [frames[-1]])
    detections: list[dict[str, Any]] = detected["detections"]
    max_det = verifier.postprocessing.max_detections or 32
    detections = detections[:max_det]
    shape = verifier.input.shape
    seq_len = verifier.sequence_length()
    margin = float(verifier.parameters.get("crop_margin", 0.1))
    frame_shape = tuple(shape[1:]) if len(shape) == 4 else tuple(shape)
    mode = "repeated" if len(frames) == 1 and seq_len > 1 else "frames"
    with timings.stage(repo, repo.config.name, "verifier"):
        if detections:
            samples = []
            for det in detections:
                crops = [crop_box(f, det["box"], margin) for f in frames[-seq_len:]]
                seq = [tasks.image_to_sample(c, verifier.preprocessing, frame_shape,
                                             verifier.input.dtype) for c in crops]
                seq = seq[-seq_len:]
                # Too few frames: repeat the earliest crop so the newest stays last.
                seq = [seq[0]] * (seq_len - len(seq)) + seq
                samples.append(np.stack(seq) if len(shape) == 4 else seq[-1])
            outputs, _ = await infer_tensor(repo, verifier.name, np.stack(samples))
            for i, det in enumerate(detections):
                det["verification"] = verifier.postprocess({k: v[i] for k, v in outputs.items()})
    confirmed = [d for d in detections if d.get("verification", {}).get("confirmed")]
    timings.stages["total"] = (time.perf_counter() - started) * 1000
    return {
        "model": repo.config.name,
        "detections": detections,
        "confirmed": confirmed,
        "sequence": {
            "length": seq_len,
            "frames_given": len(frames),
            "mode": mode,
            **({"note": "single image: the crop was repeated to the verifier's sequence "
                        "length, so the verifier saw no motion"} if mode == "repeated" else {}),
        },
        "timings_ms": {k: round(v, 3) for k, v in timings.stages.items()},
        "versions": {s.name: s.version for s in repo.config.stages},
    }
