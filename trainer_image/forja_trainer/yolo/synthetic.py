"""A small learnable YOLO dataset: bright boxes on dark noise, one colour per class."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml
from PIL import Image

__all__ = ["CLASS_COLOURS", "make_yolo_dataset"]

CLASS_COLOURS = [(255, 255, 255), (255, 220, 0), (0, 220, 255)]


def _image(rng: np.random.Generator, size: int, nc: int) -> tuple[np.ndarray, list[str]]:
    img = rng.integers(0, 70, (size, size, 3), dtype=np.uint8)
    lines: list[str] = []
    for _ in range(int(rng.integers(1, 4))):
        cls = int(rng.integers(0, nc))
        w, h = (int(v) for v in rng.integers(size // 6, size // 3, 2))
        x0, y0 = int(rng.integers(0, size - w)), int(rng.integers(0, size - h))
        img[y0 : y0 + h, x0 : x0 + w] = CLASS_COLOURS[cls % len(CLASS_COLOURS)]
        lines.append(
            f"{cls} {(x0 + w / 2) / size:.6f} {(y0 + h / 2) / size:.6f} "
            f"{w / size:.6f} {h / size:.6f}"
        )
    return img, lines


def make_yolo_dataset(
    root: Path,
    *,
    train: int = 16,
    val: int = 8,
    size: int = 128,
    names: tuple[str, ...] = ("box",),
    seed: int = 0,
) -> Path:
    """Write ``images/{train,val}``, ``labels/{train,val}`` and ``data.yaml`` under ``root``."""
    rng = np.random.default_rng(seed)
    for split, count in (("train", train), ("val", val)):
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            img, lines = _image(rng, size, len(names))
            Image.fromarray(img).save(root / "images" / split / f"{i:04d}.png")
            (root / "labels" / split / f"{i:04d}.txt").write_text("\n".join(lines) + "\n")
    data = {"train": "images/train", "val": "images/val", "names": list(names)}
    (root / "data.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return root
