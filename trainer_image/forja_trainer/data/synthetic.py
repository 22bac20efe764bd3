"""Small synthetic datasets that are learnable, made deterministically from a seed.

``generated://<kind>`` datasets: the end-to-end demo and the tests train on these,
since nothing may be downloaded. Each generator uses its own ``torch.Generator``, so
the data does not depend on (or disturb) the global RNG.
"""

from __future__ import annotations

import math

import torch

__all__ = ["SHAPE_CLASSES", "restoration_pairs", "shapes", "smoke_sequences"]

SHAPE_CLASSES = ("disk", "square", "hbar", "vbar", "ring", "cross")


def _grid(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    coords = torch.arange(size, dtype=torch.float32)
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    return yy, xx


def smoke_sequences(n: int, frames: int, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(n, frames, 3, size, size)`` crops in [0, 1] and labels (1 = smoke).

    Smoke: a soft grey plume that rises and widens from frame to frame over a noisy
    landscape. Not smoke: the same landscapes, some with a static grey cloud of the
    same brightness (so one frame alone is ambiguous; motion tells them apart).
    """
    gen = torch.Generator().manual_seed(seed)
    yy, xx = _grid(size)
    x = torch.empty(n, frames, 3, size, size)
    labels = (torch.arange(n) % 2).float()
    labels = labels[torch.randperm(n, generator=gen)]
    for i in range(n):
        base = torch.rand(3, 1, 1, generator=gen) * 0.4 + 0.2
        ground = base + 0.08 * torch.randn(3, size, size, generator=gen)
        cx = float(torch.rand(1, generator=gen)) * size * 0.5 + size * 0.25
        cy = float(torch.rand(1, generator=gen)) * size * 0.3 + size * 0.55
        static_cloud = labels[i] == 0 and bool(torch.rand(1, generator=gen) < 0.5)
        for t in range(frames):
            frame = ground + 0.03 * torch.randn(3, size, size, generator=gen)
            if labels[i] == 1:
                radius = size * (0.08 + 0.05 * t)
                top = cy - size * 0.07 * t
                blob = torch.exp(-((xx - cx) ** 2 + (yy - top) ** 2) / (2 * radius**2))
                frame = frame * (1 - 0.7 * blob) + 0.85 * 0.7 * blob
            elif static_cloud:
                radius = size * (0.08 + 0.05 * frames / 2)
                blob = torch.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * radius**2))
                frame = frame * (1 - 0.7 * blob) + 0.85 * 0.7 * blob
            x[i, t] = frame
    return x.clamp_(0, 1), labels


def shapes(counts: list[int], size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Coloured shapes on noisy backgrounds, ``counts[c]`` images of class ``c``."""
    if len(counts) > len(SHAPE_CLASSES):
        raise ValueError(f"at most {len(SHAPE_CLASSES)} shape classes")
    gen = torch.Generator().manual_seed(seed)
    yy, xx = _grid(size)
    images, labels = [], []
    for cls, count in enumerate(counts):
        kind = SHAPE_CLASSES[cls]
        for _ in range(count):
            bg = torch.rand(3, 1, 1, generator=gen) * 0.5
            img = bg + 0.1 * torch.randn(3, size, size, generator=gen)
            color = torch.rand(3, 1, 1, generator=gen) * 0.5 + 0.5
            cx, cy = (torch.rand(2, generator=gen) * size * 0.4 + size * 0.3).tolist()
            r = float(torch.rand(1, generator=gen)) * size * 0.12 + size * 0.14
            dx, dy = (xx - cx).abs(), (yy - cy).abs()
            dist = torch.sqrt((xx - cx) ** 2 + (yy - cy) ** 2)
            thin = r * 0.3
            mask = {
                "disk": dist <= r,
                "square": (dx <= r * 0.85) & (dy <= r * 0.85),
                "hbar": (dx <= r * 1.3) & (dy <= thin),
                "vbar": (dy <= r * 1.3) & (dx <= thin),
                "ring": (dist <= r) & (dist >= r * 0.6),
                "cross": ((dx <= r) & (dy <= thin * 0.7)) | ((dy <= r) & (dx <= thin * 0.7)),
            }[kind]
            img = torch.where(mask, color.expand(3, size, size), img)
            images.append(img.clamp(0, 1))
            labels.append(cls)
    return torch.stack(images), torch.tensor(labels), list(SHAPE_CLASSES[: len(counts)])


def restoration_pairs(
    n: int, size: int, seed: int, noise: float = 0.1
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(degraded, clean)`` image pairs: smooth textures, then blur-free Gaussian noise."""
    gen = torch.Generator().manual_seed(seed)
    yy, xx = _grid(size)
    clean = torch.empty(n, 3, size, size)
    for i in range(n):
        img = torch.zeros(3, size, size)
        for _ in range(4):
            fx, fy = (torch.rand(2, generator=gen) * 4 + 0.5).tolist()
            phase = float(torch.rand(1, generator=gen)) * 2 * math.pi
            amp = torch.rand(3, 1, 1, generator=gen) * 0.25
            img += amp * torch.sin(2 * math.pi * (fx * xx + fy * yy) / size + phase)
        clean[i] = 0.5 + img
    clean = clean.clamp(0, 1)
    degraded = (clean + noise * torch.randn(clean.shape, generator=gen)).clamp(0, 1)
    return degraded, clean
