"""Per-task pre- and postprocessing: pure functions from arrays to arrays or JSON.

Each function takes one sample (no batch axis). Settings come from the
manifest's typed ``preprocessing`` (resize, scale, mean, std, layout) and
``postprocessing`` (thresholds), each overridden by the stage's parameters.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image

from forja_api.artifact import Postprocessing, Preprocessing
from forja_server.errors import InvalidInput

__all__ = [
    "V2_DATATYPES",
    "decode_yolo",
    "image_geometry",
    "image_to_sample",
    "nms",
    "postprocess",
    "sigmoid",
    "softmax",
]

Array = npt.NDArray[Any]

# numpy dtype name <-> Open Inference Protocol datatype.
V2_DATATYPES: dict[str, str] = {
    "bool": "BOOL",
    "uint8": "UINT8",
    "uint16": "UINT16",
    "uint32": "UINT32",
    "uint64": "UINT64",
    "int8": "INT8",
    "int16": "INT16",
    "int32": "INT32",
    "int64": "INT64",
    "float16": "FP16",
    "float32": "FP32",
    "float64": "FP64",
}


def softmax(x: Array, axis: int = -1) -> Array:
    z = x - np.max(x, axis=axis, keepdims=True)
    e = np.exp(z)
    out: Array = e / np.sum(e, axis=axis, keepdims=True)
    return out


def sigmoid(x: Array) -> Array:
    out: Array = 1.0 / (1.0 + np.exp(-x))
    return out


# --- preprocessing -------------------------------------------------------------------
def _target_hw(
    shape: Sequence[int | None], channels_first: bool, preprocessing: Preprocessing
) -> tuple[int, int] | None:
    h, w = (shape[1], shape[2]) if channels_first else (shape[0], shape[1])
    if h is not None and w is not None:
        return int(h), int(w)
    if preprocessing.resize:
        return preprocessing.resize[0], preprocessing.resize[1]
    return None


def image_geometry(
    image_hw: tuple[int, int],
    input_shape: Sequence[int | None],
    preprocessing: Preprocessing,
) -> tuple[float, float, float, float]:
    """How network-input pixels relate to the image's: (gain_x, gain_y, pad_x, pad_y).

    ``network = image * gain + pad``. A plain resize stretches each axis; a
    letterbox (Ultralytics) scales both by one gain and centres the image.
    """
    h, w = image_hw
    if len(input_shape) != 3:
        return (1.0, 1.0, 0.0, 0.0)
    hw = _target_hw(input_shape, preprocessing.channels_first, preprocessing)
    if hw is None or not h or not w:
        return (1.0, 1.0, 0.0, 0.0)
    th, tw = hw
    if preprocessing.letterbox:
        gain = min(th / h, tw / w)
        nh, nw = round(h * gain), round(w * gain)
        return (gain, gain, (tw - nw) / 2, (th - nh) / 2)
    return (tw / w, th / h, 0.0, 0.0)


def _letterbox(pil: Image.Image, hw: tuple[int, int]) -> Image.Image:
    th, tw = hw
    gain = min(th / pil.height, tw / pil.width)
    nw, nh = round(pil.width * gain), round(pil.height * gain)
    canvas = Image.new(pil.mode, (tw, th), (114,) * len(pil.getbands()))
    canvas.paste(pil.resize((nw, nh), Image.Resampling.BILINEAR),
                 (round((tw - nw) / 2 - 0.1), round((th - nh) / 2 - 0.1)))
    return canvas


def image_to_sample(
    image: npt.NDArray[np.uint8],
    preprocessing: Preprocessing,
    input_shape: Sequence[int | None],
    dtype: str,
) -> Array:
    """An HWC (or HW) uint8 image -> one model input sample.

    A sequence input (T, C, H, W) gets the same frame T times: a single image has
    no temporal context, so callers must say so in their response.
    """
    if len(input_shape) == 4:
        frame = image_to_sample(image, preprocessing, input_shape[1:], dtype)
        steps = int(input_shape[0] or preprocessing.frames or 1)
        return np.repeat(frame[None], steps, axis=0)
    if len(input_shape) != 3:
        raise InvalidInput(f"this model takes tensors of shape {list(input_shape)}, not images")
    channels_first = preprocessing.channels_first
    channels = input_shape[0] if channels_first else input_shape[2]
    if image.ndim == 2:
        image = image[:, :, None]
    pil = Image.fromarray(image[:, :, 0] if image.shape[2] == 1 else image[:, :, :3])
    want_c = int(channels) if channels is not None else image.shape[2]
    pil = pil.convert("L" if want_c == 1 else "RGB")
    hw = _target_hw(input_shape, channels_first, preprocessing)
    if hw is not None and pil.size != (hw[1], hw[0]):
        if preprocessing.letterbox:
            pil = _letterbox(pil, hw)
        else:
            pil = pil.resize((hw[1], hw[0]), Image.Resampling.BILINEAR)
    arr = np.asarray(pil)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if want_c not in (1, 3):
        raise InvalidInput(f"this model takes {want_c}-band input; send a tensor, not an image")
    if np.dtype(dtype) == np.uint8:
        sample: Array = arr  # quantized models take raw pixels (their scale is 1/255)
    else:
        scale = preprocessing.scale if preprocessing.scale is not None else 1.0 / 255.0
        sample = arr.astype(np.float32) * float(scale)
        if preprocessing.mean is not None:
            sample = sample - np.asarray(preprocessing.mean, dtype=np.float32)
        if preprocessing.std is not None:
            sample = sample / np.asarray(preprocessing.std, dtype=np.float32)
    if channels_first:
        sample = np.transpose(sample, (2, 0, 1))
    return np.ascontiguousarray(sample, dtype=np.dtype(dtype))


# --- postprocessing ------------------------------------------------------------------
def _first(outputs: Mapping[str, Array]) -> Array:
    return next(iter(outputs.values()))


def _label(i: int, class_names: Sequence[str]) -> str:
    return class_names[i] if i < len(class_names) else str(i)


def _classification(
    out: Mapping[str, Array], params: Postprocessing, names: Sequence[str], _: Mapping[str, Any]
) -> dict[str, Any]:
    logits = _first(out).reshape(-1).astype(np.float64)
    probs = softmax(logits)
    top = np.argsort(-probs)[: params.top_k or 5]
    return {
        "label": _label(int(top[0]), names),
        "class_id": int(top[0]),
        "score": float(probs[top[0]]),
        "top": [{"label": _label(int(i), names), "score": float(probs[i])} for i in top],
    }


def _thresholds(params: Postprocessing, names: Sequence[str], n: int) -> Array:
    default = params.threshold if params.threshold is not None else 0.5
    raw = params.thresholds
    if isinstance(raw, Mapping):
        return np.asarray([float(raw.get(_label(i, names), default)) for i in range(n)])
    if isinstance(raw, Sequence):
        return np.asarray([float(v) for v in raw][:n] + [0.5] * max(0, n - len(raw)))
    return np.full(n, float(default))


def _multilabel(
    out: Mapping[str, Array], params: Postprocessing, names: Sequence[str], _: Mapping[str, Any]
) -> dict[str, Any]:
    raw = _first(out).reshape(-1).astype(np.float64)
    probs = raw if params.activation == "none" else sigmoid(raw)
    th = _thresholds(params, names, probs.size)
    return {
        "labels": [_label(i, names) for i in range(probs.size) if probs[i] >= th[i]],
        "scores": {_label(i, names): float(probs[i]) for i in range(probs.size)},
    }


def _verification(
    out: Mapping[str, Array], params: Postprocessing, names: Sequence[str], _: Mapping[str, Any]
) -> dict[str, Any]:
    raw = _first(out).reshape(-1).astype(np.float64)
    prob = float(sigmoid(raw)[0]) if raw.size == 1 else float(softmax(raw)[-1])
    threshold = float(params.threshold if params.threshold is not None else 0.5)
    return {"probability": prob, "confirmed": prob >= threshold, "threshold": threshold}


def _segmentation(
    out: Mapping[str, Array], params: Postprocessing, names: Sequence[str], _: Mapping[str, Any]
) -> dict[str, Any]:
    logits = _first(out)
    if logits.ndim == 3 and logits.shape[0] > 1:
        mask = np.argmax(logits, axis=0)
    else:
        threshold = params.threshold if params.threshold is not None else 0.5
        mask = sigmoid(logits.reshape(logits.shape[-2:])) >= threshold
    mask = mask.astype(np.int64)
    counts = np.bincount(mask.reshape(-1))
    return {
        "shape": list(mask.shape),
        "mask": mask.tolist(),
        "class_share": {
            _label(i, names): float(c) / mask.size for i, c in enumerate(counts) if c
        },
    }


def anomaly_map(reconstruction: Array, original: Array) -> Array:
    """Per-pixel reconstruction error (mean squared over channels), CHW in -> HW out."""
    err: Array = np.mean((reconstruction.astype(np.float32) - original) ** 2, axis=0)
    return err


def _anomaly(
    out: Mapping[str, Array], params: Postprocessing, _: Sequence[str], ctx: Mapping[str, Any]
) -> dict[str, Any]:
    recon = _first(out)
    original = ctx.get("input")
    if original is None or original.shape != recon.shape:
        raise InvalidInput("anomaly scoring needs the input beside its reconstruction")
    err = anomaly_map(recon, original)
    threshold = float(params.threshold if params.threshold is not None
                      else np.mean(err) + 3 * np.std(err))
    return {
        "score": float(np.mean(err)),
        "max_error": float(np.max(err)),
        "threshold": threshold,
        "anomalous_share": float(np.mean(err > threshold)),
        "is_anomalous": bool(np.mean(err) > threshold),
    }


def _restoration(
    out: Mapping[str, Array], _p: Postprocessing, _n: Sequence[str], _c: Mapping[str, Any]
) -> dict[str, Any]:
    img = np.clip(_first(out), 0.0, 1.0)
    return {"shape": list(img.shape), "data": np.round(img, 5).tolist()}


def nms(boxes: Array, scores: Array, iou: float) -> list[int]:
    """Greedy non-maximum suppression on xyxy boxes; returns kept indices."""
    order = np.argsort(-scores)
    keep: list[int] = []
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    while order.size:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        xx1 = np.maximum(boxes[i, 0], boxes[rest, 0])
        yy1 = np.maximum(boxes[i, 1], boxes[rest, 1])
        xx2 = np.minimum(boxes[i, 2], boxes[rest, 2])
        yy2 = np.minimum(boxes[i, 3], boxes[rest, 3])
        inter = np.clip(xx2 - xx1, 0, None) * np.clip(yy2 - yy1, 0, None)
        ious = inter / (areas[i] + areas[rest] - inter + 1e-9)
        order = rest[ious <= iou]
    return keep


def decode_yolo(
    pred: Array, conf: float, iou: float, max_det: int = 300
) -> tuple[Array, Array, Array]:
    """Ultralytics detection head output (4 + classes, anchors) -> boxes, scores, classes.

    Boxes are xyxy in the network input's pixels.
    """
    if pred.ndim != 2 or pred.shape[0] < 5:
        raise ValueError(f"unexpected detector output shape {pred.shape}")
    cls_scores = pred[4:]
    classes = np.argmax(cls_scores, axis=0)
    scores = cls_scores[classes, np.arange(pred.shape[1])]
    sel = scores >= conf
    xywh = pred[:4, sel].T
    scores, classes = scores[sel], classes[sel]
    boxes = np.concatenate([xywh[:, :2] - xywh[:, 2:] / 2, xywh[:, :2] + xywh[:, 2:] / 2], axis=1)
    keep: list[int] = []
    for c in np.unique(classes):  # per-class NMS, as Ultralytics does by default
        idx = np.flatnonzero(classes == c)
        keep += [int(idx[k]) for k in nms(boxes[idx], scores[idx], iou)]
    keep = sorted(keep, key=lambda k: -float(scores[k]))[:max_det]
    return boxes[keep], scores[keep], classes[keep]


def _detection(
    out: Mapping[str, Array],
    params: Postprocessing,
    names: Sequence[str],
    ctx: Mapping[str, Any],
) -> dict[str, Any]:
    boxes, scores, classes = decode_yolo(
        _first(out),
        conf=params.confidence if params.confidence is not None else 0.25,
        iou=params.iou if params.iou is not None else 0.45,
    )
    gx, gy, px, py = ctx.get("geometry", (1.0, 1.0, 0.0, 0.0))
    boxes = (boxes - np.array([px, py, px, py])) / np.array([gx, gy, gx, gy])
    if "image_hw" in ctx:  # as Ultralytics does: boxes end at the image's edges
        h, w = ctx["image_hw"]
        boxes = np.clip(boxes, 0.0, np.array([w, h, w, h], dtype=np.float64))
    dets = [
        {
            "box": [float(v) for v in b],
            "score": float(s),
            "class_id": int(c),
            "label": _label(int(c), names),
        }
        for b, s, c in zip(boxes, scores, classes, strict=True)
    ]
    return {"detections": dets}


_POSTPROCESSORS: dict[
    str,
    Callable[[Mapping[str, Array], Postprocessing, Sequence[str], Mapping[str, Any]], Any],
] = {
    "classification": _classification,
    "multilabel": _multilabel,
    "verification": _verification,
    "segmentation": _segmentation,
    "anomaly": _anomaly,
    "restoration": _restoration,
    "detection": _detection,
}


def postprocess(
    task: str,
    sample: Mapping[str, Array],
    params: Postprocessing,
    class_names: Sequence[str],
    context: Mapping[str, Any],
) -> Any:
    fn = _POSTPROCESSORS.get(task)
    if fn is None:
        return {name: value.tolist() for name, value in sample.items()}
    return fn(sample, params, class_names, context)
