"""A small U-Net for multispectral semantic segmentation (torch only).

The server rebuilds it from a manifest's ``architecture`` = ``"unet"`` and
``arch_config`` (the constructor's keyword arguments), so this module imports
nothing of forja's and its constructor takes plain JSON values.
"""

from __future__ import annotations

import torch
from torch import nn

from forja_architectures import register

__all__ = ["UNet"]


def _double_conv(in_ch: int, out_ch: int) -> nn.Sequential:
    # BatchNorm keeps training stable at the tiny batch sizes a CPU run uses.
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.ReLU(inplace=True),
        nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.ReLU(inplace=True),
    )


@register("unet")
class UNet(nn.Module):
    """Encoder-decoder with skip connections; input sides must divide by ``2**depth``.

    Outputs logits of shape ``(N, num_classes, H, W)``; class 0 is background.
    """

    def __init__(
        self, in_channels: int, num_classes: int = 2, base_channels: int = 16, depth: int = 3
    ) -> None:
        super().__init__()
        if in_channels < 1 or num_classes < 2 or base_channels < 1 or depth < 1:
            raise ValueError(
                "UNet needs in_channels >= 1, num_classes >= 2, base_channels >= 1, depth >= 1"
            )
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.depth = depth
        widths = [base_channels * 2**i for i in range(depth + 1)]
        self.down = nn.ModuleList()
        ch = in_channels
        for w in widths[:-1]:
            self.down.append(_double_conv(ch, w))
            ch = w
        self.pool = nn.MaxPool2d(2)
        self.bottom = _double_conv(ch, widths[-1])
        self.up = nn.ModuleList()
        self.up_conv = nn.ModuleList()
        for w in reversed(widths[:-1]):
            self.up.append(nn.ConvTranspose2d(w * 2, w, 2, stride=2))
            self.up_conv.append(_double_conv(w * 2, w))
        self.head = nn.Conv2d(widths[0], num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips: list[torch.Tensor] = []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = self.pool(x)
        x = self.bottom(x)
        for up, conv, skip in zip(self.up, self.up_conv, reversed(skips), strict=True):
            x = conv(torch.cat([up(x), skip], dim=1))
        out: torch.Tensor = self.head(x)
        return out
