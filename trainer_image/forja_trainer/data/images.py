"""Image files to tensors, with errors that name the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from forja_trainer.errors import InvalidDataset

__all__ = ["IMAGE_SUFFIXES", "list_images", "load_image"]

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".npy"})


def list_images(directory: Path) -> list[Path]:
    return sorted(
        p for p in directory.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    )


def load_image(path: Path, size: int | None = None, channels: int = 3) -> torch.Tensor:
    """A ``(channels, size, size)`` float tensor in [0, 1]. ``.npy`` files hold HxWxC
    uint8 or float arrays."""
    try:
        if path.suffix.lower() == ".npy":
            arr = np.load(path, allow_pickle=False)
            if arr.ndim == 2:
                arr = arr[..., None]
            if arr.dtype == np.uint8:
                arr = arr.astype(np.float32) / 255.0
            tensor = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32)).permute(2, 0, 1)
        else:
            from PIL import Image  # noqa: PLC0415

            with Image.open(path) as img:
                mode = "L" if channels == 1 else "RGB"
                arr = np.asarray(img.convert(mode), dtype=np.float32) / 255.0
            if arr.ndim == 2:
                arr = arr[..., None]
            tensor = torch.from_numpy(arr.copy()).permute(2, 0, 1)
    except (OSError, ValueError, ImportError) as exc:
        # ImportError: once Ultralytics is imported it patches Image.open to try an
        # optional HEIF plugin on files PIL cannot identify; unreadable all the same.
        raise InvalidDataset(f"cannot read image {path}: {exc}") from exc
    if tensor.shape[0] != channels:
        if tensor.shape[0] == 1:
            tensor = tensor.expand(channels, -1, -1).clone()
        else:
            raise InvalidDataset(
                f"image {path} has {tensor.shape[0]} channels, expected {channels}"
            )
    if size is not None and tuple(tensor.shape[1:]) != (size, size):
        tensor = torch.nn.functional.interpolate(
            tensor[None], size=(size, size), mode="bilinear", align_corners=False
        )[0]
    return tensor.clamp_(0.0, 1.0)
