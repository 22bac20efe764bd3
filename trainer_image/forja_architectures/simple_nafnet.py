"""SimpleNAFNet: a small NAFNet-style image restorer (degraded -> clean, same size).

Parameter names follow NAFNet's (``intro``, ``encoders``, ``middle_blks``,
``decoders``, ``ending``, blocks with ``conv1..5``, ``sca``, ``norm1/2``, ``beta``,
``gamma``) so tensors from a NAFNet checkpoint of matching shape can be transferred.
The network predicts a residual added to its input.
"""

from __future__ import annotations

import torch
from torch import nn

from forja_architectures import register

__all__ = ["LayerNorm2d", "NAFBlock", "SimpleNAFNet"]


class LayerNorm2d(nn.Module):
    """Layer norm over channels at each pixel (as NAFNet)."""

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mu = x.mean(1, keepdim=True)
        var = (x - mu).pow(2).mean(1, keepdim=True)
        y = (x - mu) / torch.sqrt(var + self.eps)
        return self.weight.view(1, -1, 1, 1) * y + self.bias.view(1, -1, 1, 1)


class SimpleGate(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = x.chunk(2, dim=1)
        return a * b


class NAFBlock(nn.Module):
    def __init__(self, c: int, dw_expand: int = 2, ffn_expand: int = 2) -> None:
        super().__init__()
        dw = c * dw_expand
        self.conv1 = nn.Conv2d(c, dw, 1)
        self.conv2 = nn.Conv2d(dw, dw, 3, padding=1, groups=dw)
        self.conv3 = nn.Conv2d(dw // 2, c, 1)
        self.sca = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(dw // 2, dw // 2, 1))
        self.sg = SimpleGate()
        ffn = c * ffn_expand
        self.conv4 = nn.Conv2d(c, ffn, 1)
        self.conv5 = nn.Conv2d(ffn // 2, c, 1)
        self.norm1 = LayerNorm2d(c)
        self.norm2 = LayerNorm2d(c)
        self.beta = nn.Parameter(torch.zeros(1, c, 1, 1))
        self.gamma = nn.Parameter(torch.zeros(1, c, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.sg(self.conv2(self.conv1(self.norm1(x))))
        y = self.conv3(y * self.sca(y))
        x = x + y * self.beta
        y = self.conv5(self.sg(self.conv4(self.norm2(x))))
        out: torch.Tensor = x + y * self.gamma
        return out


@register("simple-nafnet")
class SimpleNAFNet(nn.Module):
    """One encoder level: intro -> blocks -> down -> middle -> up -> blocks -> ending."""

    def __init__(
        self,
        in_channels: int = 3,
        width: int = 16,
        enc_blocks: int = 1,
        middle_blocks: int = 1,
        dec_blocks: int = 1,
    ) -> None:
        super().__init__()
        self.intro = nn.Conv2d(in_channels, width, 3, padding=1)
        self.encoders = nn.ModuleList(
            [nn.Sequential(*[NAFBlock(width) for _ in range(enc_blocks)])]
        )
        self.downs = nn.ModuleList([nn.Conv2d(width, width * 2, 2, stride=2)])
        self.middle_blks = nn.Sequential(*[NAFBlock(width * 2) for _ in range(middle_blocks)])
        self.ups = nn.ModuleList(
            [nn.Sequential(nn.Conv2d(width * 2, width * 4, 1, bias=False), nn.PixelShuffle(2))]
        )
        self.decoders = nn.ModuleList(
            [nn.Sequential(*[NAFBlock(width) for _ in range(dec_blocks)])]
        )
        self.ending = nn.Conv2d(width, in_channels, 3, padding=1)
        # Start as the identity (the residual is zero): training can only improve on
        # returning the degraded input, instead of first undoing random noise.
        with torch.no_grad():
            self.ending.weight.zero_()
            if self.ending.bias is not None:
                self.ending.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        pad_h, pad_w = (-h) % 2, (-w) % 2
        inp = nn.functional.pad(x, (0, pad_w, 0, pad_h), mode="reflect") if pad_h or pad_w else x
        y = self.intro(inp)
        skips = []
        for enc, down in zip(self.encoders, self.downs, strict=True):
            y = enc(y)
            skips.append(y)
            y = down(y)
        y = self.middle_blks(y)
        for dec, up, skip in zip(self.decoders, self.ups, reversed(skips), strict=True):
            y = dec(up(y) + skip)
        out: torch.Tensor = (self.ending(y) + inp)[..., :h, :w]
        return out
