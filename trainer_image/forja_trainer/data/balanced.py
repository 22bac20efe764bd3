"""BalancedAugmentation: every class brought to a target count with augmented copies.

A class with fewer real images than the target gets synthetic ones: augmented
versions of its own real images, drawn afresh each epoch (so a rare class is not
the same 20 pictures repeated). ``max_synthetic_fraction`` caps the synthetic share
of a class (0.3 keeps each class at least 70% real). Strategies:

* ``light``: flips and small shifts;
* ``medium``: + rotation up to 15 degrees, scale 0.9-1.1, brightness/contrast 0.2;
* ``aggressive``: + rotation up to 30 degrees, scale 0.8-1.2, noise, random erasing.

Augmentation draws from the global torch RNG, which checkpoints save and restore,
so a resumed epoch sees the same augmented images.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

import torch
from torch.nn import functional as F  # noqa: N812
from torch.utils.data import Dataset

__all__ = ["AugmentStrategy", "BalancePlan", "BalancedDataset", "augment", "plan_balance"]


class AugmentStrategy(StrEnum):
    LIGHT = "light"
    MEDIUM = "medium"
    AGGRESSIVE = "aggressive"


@dataclass(frozen=True)
class _Ranges:
    shift: float
    rotate_deg: float
    scale: float
    jitter: float
    noise: float
    erase: float


_RANGES = {
    AugmentStrategy.LIGHT: _Ranges(0.08, 0.0, 0.0, 0.0, 0.0, 0.0),
    AugmentStrategy.MEDIUM: _Ranges(0.1, 15.0, 0.1, 0.2, 0.0, 0.0),
    AugmentStrategy.AGGRESSIVE: _Ranges(0.15, 30.0, 0.2, 0.3, 0.05, 0.5),
}


def _uniform(lo: float, hi: float) -> float:
    return lo + (hi - lo) * float(torch.rand(()))


def augment(img: torch.Tensor, strategy: AugmentStrategy) -> torch.Tensor:
    """One random augmentation of a ``(C, H, W)`` image in [0, 1]."""
    r = _RANGES[strategy]
    if bool(torch.rand(()) < 0.5):
        img = img.flip(-1)
    angle = math.radians(_uniform(-r.rotate_deg, r.rotate_deg))
    scale = _uniform(1 - r.scale, 1 + r.scale)
    tx, ty = _uniform(-r.shift, r.shift) * 2, _uniform(-r.shift, r.shift) * 2
    cos, sin = math.cos(angle) / scale, math.sin(angle) / scale
    theta = torch.tensor([[cos, -sin, tx], [sin, cos, ty]], dtype=img.dtype)[None]
    grid = F.affine_grid(theta, [1, *img.shape], align_corners=False)
    img = F.grid_sample(img[None], grid, padding_mode="reflection", align_corners=False)[0]
    if r.jitter:
        brightness = _uniform(-r.jitter, r.jitter)
        contrast = _uniform(1 - r.jitter, 1 + r.jitter)
        mean = img.mean()
        img = (img - mean) * contrast + mean + brightness
    if r.noise:
        img = img + r.noise * torch.randn(img.shape)
    if r.erase and bool(torch.rand(()) < r.erase):
        _, h, w = img.shape
        eh, ew = max(1, int(h * _uniform(0.1, 0.3))), max(1, int(w * _uniform(0.1, 0.3)))
        y0 = int(torch.randint(0, h - eh + 1, ()))
        x0 = int(torch.randint(0, w - ew + 1, ()))
        img = img.clone()
        img[:, y0 : y0 + eh, x0 : x0 + ew] = float(torch.rand(()))
    return img.clamp(0, 1)


@dataclass(frozen=True)
class BalancePlan:
    """Per class: how many real and how many synthetic images an epoch holds."""

    real: list[int]
    synthetic: list[int]
    target: int

    def summary(self, class_names: list[str]) -> dict[str, dict[str, int]]:
        return {
            name: {"real": r, "synthetic": s}
            for name, r, s in zip(class_names, self.real, self.synthetic, strict=True)
        }


def plan_balance(
    labels: torch.Tensor,
    num_classes: int,
    target: int | None,
    max_synthetic_fraction: float | None = None,
) -> BalancePlan:
    """Target defaults to the largest class; real images are never dropped."""
    real = [int((labels == c).sum()) for c in range(num_classes)]
    goal = target if target is not None else max(real)
    synthetic = []
    for count in real:
        extra = max(goal - count, 0)
        if max_synthetic_fraction is not None and count:
            f = max_synthetic_fraction
            extra = min(extra, math.floor(count * f / (1 - f)) if f < 1 else extra)
        synthetic.append(extra if count else 0)
    return BalancePlan(real=real, synthetic=synthetic, target=goal)


class BalancedDataset(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Real images (lightly augmented when ``augment_real``) plus planned synthetic copies."""

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        plan: BalancePlan,
        strategy: AugmentStrategy,
        *,
        mean: float = 0.5,
        std: float = 0.5,
        augment_real: bool = True,
    ) -> None:
        self.images = images
        self.labels = labels
        self.strategy = strategy
        self.mean = mean
        self.std = std
        self.augment_real = augment_real
        items: list[tuple[int, bool]] = [(i, False) for i in range(len(labels))]
        for cls, extra in enumerate(plan.synthetic):
            sources = torch.nonzero(labels == cls).flatten().tolist()
            items += [(sources[k % len(sources)], True) for k in range(extra)]
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        src, synthetic = self.items[i]
        img = self.images[src]
        if synthetic:
            img = augment(img, self.strategy)
        elif self.augment_real:
            img = augment(img, AugmentStrategy.LIGHT)
        return (img - self.mean) / self.std, self.labels[src]
