"""A small image classifier: conv blocks, global pooling, a linear head."""

from __future__ import annotations

import torch
from torch import nn

from forja_architectures import register

__all__ = ["SmallCNN"]


@register("small-cnn")
class SmallCNN(nn.Module):
    def __init__(
        self,
        num_classes: int,
        in_channels: int = 3,
        width: int = 16,
        depth: int = 3,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = in_channels
        for i in range(depth):
            cout = width * 2**i
            layers += [
                nn.Conv2d(cin, cout, 3, padding=1, bias=False),
                nn.BatchNorm2d(cout),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            ]
            cin = cout
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(cin, num_classes))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.head(self.features(images))
        return logits
