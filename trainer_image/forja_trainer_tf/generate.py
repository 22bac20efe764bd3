"""A small, learnable multi-label dataset: coloured shapes present or absent.

Used for ``generated://multilabel`` dataset URIs and by the tests. Each class is
one shape in one colour (a red square, a green disc, ...); every image shows each
class independently with probability ``p_present`` at a random place and size on a
noisy dark background. A small CNN learns it in a few epochs on a CPU, and the
trivial baselines (all absent, all present) score far lower in macro F1.

The output follows the layout :mod:`forja_trainer_tf.dataset` reads.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import numpy.typing as npt
import yaml
from PIL import Image

from forja_trainer_tf.dataset import LABEL_SEPARATOR

__all__ = ["CLASS_STYLES", "generate_multilabel_dataset"]

# (name, shape, RGB); distinct hues so colour alone separates the classes.
CLASS_STYLES: list[tuple[str, str, tuple[int, int, int]]] = [
    ("red_square", "square", (230, 40, 40)),
    ("green_disc", "disc", (40, 210, 60)),
    ("blue_triangle", "triangle", (50, 80, 240)),
    ("yellow_bar", "bar", (235, 220, 40)),
    ("magenta_square", "square", (220, 50, 220)),
    ("cyan_disc", "disc", (40, 220, 220)),
    ("orange_triangle", "triangle", (250, 140, 20)),
    ("white_bar", "bar", (245, 245, 245)),
]


def _mask(shape: str, size: int, rng: np.random.Generator) -> npt.NDArray[np.bool_]:
    side = int(rng.integers(max(4, size // 4), max(5, size * 2 // 5) + 1))
    top = int(rng.integers(0, size - side + 1))
    left = int(rng.integers(0, size - side + 1))
    yy, xx = np.mgrid[0:size, 0:size]
    y, x = yy - top, xx - left
    inside = (y >= 0) & (y < side) & (x >= 0) & (x < side)
    if shape == "square":
        mask = inside
    elif shape == "disc":
        r = side / 2
        mask = ((y - r + 0.5) ** 2 + (x - r + 0.5) ** 2) <= r * r
    elif shape == "triangle":
        mask = inside & (x >= (side - 1 - y) // 2) & (x <= (side - 1 + y) // 2 + 1)
    else:  # bar: a thick horizontal stripe
        mask = inside & (y >= side // 3) & (y < side - side // 3)
    return np.asarray(mask, dtype=np.bool_)


def _draw(
    present: npt.NDArray[np.bool_], size: int, rng: np.random.Generator
) -> npt.NDArray[np.uint8]:
    img = rng.integers(0, 50, size=(size, size, 3)).astype(np.float32)
    for cls in np.flatnonzero(present):
        _, shape, colour = CLASS_STYLES[cls]
        mask = _mask(shape, size, rng)
        jitter = rng.integers(-15, 16, size=3)
        img[mask] = np.clip(np.array(colour) + jitter, 0, 255)
    return img.astype(np.uint8)


def generate_multilabel_dataset(
    root: Path,
    *,
    train: int = 256,
    val: int = 96,
    test: int = 96,
    image_size: int = 48,
    classes: int = 4,
    p_present: float = 0.4,
    seed: int = 1337,
    write_config: bool = True,
) -> list[str]:
    """Write the dataset under ``root``; return the class names. Deterministic by seed."""
    if not 2 <= classes <= len(CLASS_STYLES):
        raise ValueError(f"classes must be 2..{len(CLASS_STYLES)}, got {classes}")
    rng = np.random.default_rng(seed)
    names = [name for name, _, _ in CLASS_STYLES[:classes]]
    (root / "images").mkdir(parents=True, exist_ok=True)
    for split, count in (("train", train), ("val", val), ("test", test)):
        with (root / f"{split}_labels.csv").open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["filepath", "labels"])
            for i in range(count):
                present = rng.random(classes) < p_present
                rel = f"images/{split}_{i:05d}.png"
                Image.fromarray(_draw(present, image_size, rng)).save(root / rel)
                labels = LABEL_SEPARATOR.join(names[c] for c in np.flatnonzero(present))
                writer.writerow([rel, labels])
    if write_config:
        (root / "config.yaml").write_text(
            yaml.safe_dump({"classes": names, "num_classes": len(names)})
        )
    return names
