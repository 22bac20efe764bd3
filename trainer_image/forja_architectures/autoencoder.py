"""A convolutional autoencoder for reconstruction-error anomaly maps (torch only).

Rebuilt by the server from ``architecture`` = ``"conv-autoencoder"`` and
``arch_config``; imports nothing of forja's.
"""

from __future__ import annotations

import torch
from torch import nn

from forja_architectures import register

__all__ = ["ConvAutoencoder", "pixel_error"]


@register("conv-autoencoder")
class ConvAutoencoder(nn.Module):
    """Strided-conv encoder to a narrow bottleneck, transposed-conv decoder.

    Input sides must divide by ``2**depth``. The bottleneck is deliberately
    narrow (``latent_channels``) so the model cannot learn the identity and
    rare patterns (anomalies) reconstruct worse than common ones.
    """

    def __init__(
        self, in_channels: int, base_channels: int = 16, depth: int = 2, latent_channels: int = 8
    ) -> None:
        super().__init__()
        if in_channels < 1 or base_channels < 1 or depth < 1 or latent_channels < 1:
            raise ValueError("ConvAutoencoder needs positive channels and depth")
        self.in_channels = in_channels
        self.depth = depth
        enc: list[nn.Module] = []
        ch = in_channels
        for i in range(depth):
            w = base_channels * 2**i
            enc += [nn.Conv2d(ch, w, 3, stride=2, padding=1), nn.BatchNorm2d(w), nn.ReLU(True)]
            ch = w
        enc += [nn.Conv2d(ch, latent_channels, 1)]
        self.encoder = nn.Sequential(*enc)
        dec: list[nn.Module] = [nn.Conv2d(latent_channels, ch, 1), nn.ReLU(True)]
        for i in reversed(range(depth)):
            w = base_channels * 2 ** max(i - 1, 0)
            dec += [nn.ConvTranspose2d(ch, w, 2, stride=2), nn.BatchNorm2d(w), nn.ReLU(True)]
            ch = w
        dec += [nn.Conv2d(ch, in_channels, 3, padding=1)]
        self.decoder = nn.Sequential(*dec)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.decoder(self.encoder(x))
        return out


def pixel_error(x: torch.Tensor, recon: torch.Tensor) -> torch.Tensor:
    """Per-pixel reconstruction error: squared error averaged over bands, ``(N, 1, H, W)``."""
    return ((x - recon) ** 2).mean(dim=1, keepdim=True)
