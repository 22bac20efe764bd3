"""Validation of a YOLO-format detection dataset, before Ultralytics sees it.

Layout: ``data.yaml`` with ``train``, ``val``, ``names`` (list, or dict of id
to name) and optionally ``path`` and ``nc``; ``train``/``val`` are image folders
(or ``.txt`` lists of images) whose labels sit at the same relative path with
``images`` replaced by ``labels`` and the suffix by ``.txt``: one
``class cx cy w h`` line per box, coordinates normalised to 0..1. An image
without a label file is background.

Ultralytics would skip or half-report bad labels deep inside training; here a
bad file fails the job at once with the file, line and field named.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "IMAGE_SUFFIXES",
    "YoloDataset",
    "YoloDatasetError",
    "label_path_for",
    "validate_dataset",
]

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})
DATA_YAML = "data.yaml"


class YoloDatasetError(ValueError):
    """The dataset cannot be trained on; names the file (and line) at fault."""

    def __init__(self, path: Path | str, message: str, line: int | None = None) -> None:
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {message}")
        self.path = str(path)
        self.line = line


@dataclass(frozen=True)
class YoloDataset:
    root: Path
    data_yaml: Path
    """A rewritten data.yaml with absolute paths, the one handed to Ultralytics."""
    names: list[str]
    train_images: int
    val_images: int
    boxes: int


def label_path_for(image: Path) -> Path:
    """Ultralytics' rule: the last ``images`` path component becomes ``labels``."""
    parts = list(image.parts)
    for i in range(len(parts) - 1, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            break
    return Path(*parts).with_suffix(".txt")


def _names(data: dict[str, Any], yaml_path: Path) -> list[str]:
    raw = data.get("names")
    if isinstance(raw, list) and raw and all(isinstance(n, str | int) for n in raw):
        names = [str(n) for n in raw]
    elif isinstance(raw, dict) and raw:
        try:
            ids = sorted(int(k) for k in raw)
        except (TypeError, ValueError) as exc:
            raise YoloDatasetError(yaml_path, "names: dict keys must be class ids 0..n-1") from exc
        if ids != list(range(len(ids))):
            raise YoloDatasetError(
                yaml_path, f"names: class ids must be 0..{len(ids) - 1}, got {ids}"
            )
        names = [str(raw[k]) for k in sorted(raw, key=int)]
    else:
        raise YoloDatasetError(yaml_path, "names: a non-empty list or {id: name} dict is required")
    nc = data.get("nc")
    if nc is not None and nc != len(names):
        raise YoloDatasetError(yaml_path, f"nc: {nc} but names lists {len(names)} classes")
    return names


def _images(split: str, data: dict[str, Any], base: Path, yaml_path: Path) -> list[Path]:
    value = data.get(split)
    if not isinstance(value, str) or not value:
        raise YoloDatasetError(yaml_path, f"{split}: a folder (or .txt list) of images is required")
    target = Path(value) if Path(value).is_absolute() else base / value
    if target.is_dir():
        images = sorted(p for p in target.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    elif target.suffix == ".txt" and target.is_file():
        lines = [ln.strip() for ln in target.read_text().splitlines() if ln.strip()]
        images = [Path(ln) if Path(ln).is_absolute() else base / ln for ln in lines]
        missing = [p for p in images if not p.is_file()]
        if missing:
            raise YoloDatasetError(
                target, f"lists {len(missing)} missing images, e.g. {missing[0]}"
            )
    else:
        raise YoloDatasetError(yaml_path, f"{split}: {target} does not exist")
    if not images:
        raise YoloDatasetError(target, f"{split}: no images found")
    return images


def _check_labels(label: Path, nc: int) -> int:
    boxes = 0
    for n, line in enumerate(label.read_text().splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 5:
            raise YoloDatasetError(
                label, f"expected 'class cx cy w h' (5 fields), got {len(fields)}", line=n
            )
        try:
            cls_f = float(fields[0])
            coords = [float(v) for v in fields[1:]]
        except ValueError as exc:
            raise YoloDatasetError(label, f"non-numeric field in {line.strip()!r}", line=n) from exc
        if not cls_f.is_integer():
            raise YoloDatasetError(label, f"class id {fields[0]} is not an integer", line=n)
        if not 0 <= int(cls_f) < nc:
            raise YoloDatasetError(
                label, f"class id {int(cls_f)} out of range 0..{nc - 1} (names has {nc})", line=n
            )
        for name, v in zip(("cx", "cy", "w", "h"), coords, strict=True):
            if not (math.isfinite(v) and 0.0 <= v <= 1.0):
                raise YoloDatasetError(label, f"{name}={v} is not normalised to 0..1", line=n)
        boxes += 1
    return boxes


def validate_dataset(root: Path, out_yaml: Path) -> YoloDataset:
    """Check ``root/data.yaml`` and every label file; write an absolute-path copy."""
    yaml_path = root / DATA_YAML
    if not yaml_path.is_file():
        raise YoloDatasetError(yaml_path, "missing: a YOLO dataset needs data.yaml at its root")
    try:
        data = yaml.safe_load(yaml_path.read_text())
    except yaml.YAMLError as exc:
        raise YoloDatasetError(yaml_path, f"not valid YAML ({exc})") from exc
    if not isinstance(data, dict):
        raise YoloDatasetError(yaml_path, "must be a mapping with train, val and names")
    names = _names(data, yaml_path)
    declared = data.get("path")
    base = root
    if isinstance(declared, str) and declared:
        # A path written on another machine rarely exists here; the downloaded root does.
        base = Path(declared) if Path(declared).is_absolute() and Path(declared).is_dir() else root
    splits = {split: _images(split, data, base, yaml_path) for split in ("train", "val")}
    boxes = 0
    for images in splits.values():
        for image in images:
            label = label_path_for(image)
            if label.is_file():
                boxes += _check_labels(label, len(names))
    if boxes == 0:
        raise YoloDatasetError(root, "no boxes in any label file: nothing to learn")
    rewritten = {
        "path": str(base.resolve()),
        "train": str(
            (
                Path(data["train"]) if Path(data["train"]).is_absolute() else base / data["train"]
            ).resolve()
        ),
        "val": str(
            (Path(data["val"]) if Path(data["val"]).is_absolute() else base / data["val"]).resolve()
        ),
        "names": dict(enumerate(names)),
    }
    out_yaml.parent.mkdir(parents=True, exist_ok=True)
    out_yaml.write_text(yaml.safe_dump(rewritten, sort_keys=False))
    return YoloDataset(
        root=root,
        data_yaml=out_yaml,
        names=names,
        train_images=len(splits["train"]),
        val_images=len(splits["val"]),
        boxes=boxes,
    )
