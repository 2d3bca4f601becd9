"""CIFAR-style ResNets (He et al., "Deep Residual Learning for Image Recognition", 2016,
Sec. 4.2: a 3x3 stem, three stages of 2n basic blocks, global average pooling), in the "x4"
widths that the distillation literature uses as teacher and student (CRD, Tian et al. 2020;
DKD): resnet32x4 (n=5) and resnet8x4 (n=1), stage widths 64-128-256 after a 32-wide stem.

The same network serves 1-D signals with Conv1d/BatchNorm1d (in_shape (C, L)).
`features` is the pooled trunk output and `head` the classifier, as in every backbone.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

WIDTHS = (32, 64, 128, 256)  # stem, stage 1, 2, 3 (the "x4" widths)


class BasicBlock(nn.Module):
    """y = relu(bn(conv(relu(bn(conv(x))))) + shortcut(x)); a 1x1 conv shortcut when the shape changes."""

    def __init__(self, cin: int, cout: int, stride: int, ndim: int):
        super().__init__()
        conv, norm = (nn.Conv2d, nn.BatchNorm2d) if ndim == 2 else (nn.Conv1d, nn.BatchNorm1d)
        self.conv1 = conv(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = norm(cout)
        self.conv2 = conv(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = norm(cout)
        self.shortcut = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(conv(cin, cout, 1, stride, bias=False), norm(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet(nn.Module):
    def __init__(self, in_shape: tuple[int, ...], num_classes: int, depth: int = 32,
                 widths: tuple[int, ...] = WIDTHS, **_unused):
        super().__init__()
        ndim = len(in_shape) - 1
        if ndim not in (1, 2):
            raise ValueError(f"ResNet takes (C, L) or (C, H, W) inputs, got shape {in_shape}")
        if (depth - 2) % 6:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2, got {depth}")
        n = (depth - 2) // 6
        conv, norm = (nn.Conv2d, nn.BatchNorm2d) if ndim == 2 else (nn.Conv1d, nn.BatchNorm1d)
        self.stem = nn.Sequential(conv(in_shape[0], widths[0], 3, 1, 1, bias=False), norm(widths[0]), nn.ReLU())
        layers, cin = [], widths[0]
        for stage, cout in enumerate(widths[1:]):
            for i in range(n):
                layers.append(BasicBlock(cin, cout, 2 if (stage > 0 and i == 0) else 1, ndim))
                cin = cout
        self.layers = nn.Sequential(*layers)
        self.head = nn.Linear(cin, num_classes)
        for m in self.modules():
            if isinstance(m, (nn.Conv1d, nn.Conv2d)):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(self.stem(x)).flatten(2).mean(-1)  # global average pooling

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def resnet8x4(in_shape: tuple[int, ...], num_classes: int, **_unused) -> ResNet:
    return ResNet(in_shape, num_classes, depth=8)


def resnet32x4(in_shape: tuple[int, ...], num_classes: int, **_unused) -> ResNet:
    return ResNet(in_shape, num_classes, depth=32)
