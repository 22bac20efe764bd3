"""Deterministic, stratified train/validation splits."""

from __future__ import annotations

import torch

__all__ = ["stratified_split"]


def stratified_split(
    labels: torch.Tensor, val_fraction: float, seed: int
) -> tuple[list[int], list[int]]:
    """Indices (train, val): each class keeps ``val_fraction`` of its items for
    validation (at least one when it has two or more)."""
    gen = torch.Generator().manual_seed(seed + 7)
    train: list[int] = []
    val: list[int] = []
    for cls in torch.unique(labels).tolist():
        members = torch.nonzero(labels == cls).flatten()
        idx: list[int] = members[torch.randperm(len(members), generator=gen)].tolist()
        k = round(len(idx) * val_fraction)
        # every class with two or more items has at least one on each side
        k = min(max(k, 1), len(idx) - 1) if len(idx) >= 2 else 0
        val += idx[:k]
        train += idx[k:]
    return sorted(train), sorted(val)
