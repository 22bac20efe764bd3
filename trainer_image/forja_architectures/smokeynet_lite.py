"""SmokeyNet-Lite: a small CNN per frame and a GRU over a short sequence of crops.

Input ``(batch, frames, channels, height, width)``; output one smoke logit per
sequence. The CNN ends in global average pooling, so any crop size works; the GRU
takes any number of frames. With ``motion`` each frame is stacked with its difference
from the previous frame, so a drifting, growing plume stands out from a static cloud
of the same brightness.
"""

from __future__ import annotations

import torch
from torch import nn

from forja_architectures import register

__all__ = ["SmokeyNetLite"]


def _conv_block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
    )


@register("smokeynet-lite")
class SmokeyNetLite(nn.Module):
    def __init__(
        self,
        in_channels: int = 3,
        width: int = 16,
        hidden: int = 32,
        dropout: float = 0.1,
        motion: bool = True,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.motion = motion
        self.backbone = nn.Sequential(
            _conv_block(in_channels * (2 if motion else 1), width),
            _conv_block(width, width * 2),
            _conv_block(width * 2, width * 4),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.temporal = nn.GRU(width * 4, hidden, batch_first=True)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden + width * 4, 1))

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        if self.motion:
            diff = crops[:, 1:] - crops[:, :-1]
            diff = torch.cat([torch.zeros_like(crops[:, :1]), diff], dim=1)
            crops = torch.cat([crops, diff], dim=2)
        b, t, c, h, w = crops.shape
        feats = self.backbone(crops.reshape(b * t, c, h, w)).reshape(b, t, -1)
        _, last = self.temporal(feats)
        # the GRU sees change over time; the mean frame feature keeps static evidence
        joined = torch.cat([last[-1], feats.mean(dim=1)], dim=1)
        logits: torch.Tensor = self.head(joined).squeeze(1)
        return logits
