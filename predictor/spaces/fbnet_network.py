"""The FBNet network (HW-NAS-Bench's macro structure) in PyTorch, from per-layer ``fbnet.Block`` shapes.

Inverted-residual block ``kK_eE[_gG]`` (FBNet, Wu et al., CVPR 2019, as HW-NAS-Bench uses it): 1x1 conv to E x
the input channels in G groups, BN, ReLU, channel shuffle when G > 1, KxK depthwise conv with the layer's stride,
BN, ReLU, 1x1 conv to the output channels in G groups, BN, plus the input when stride is 1 and channels match.
``skip``: the identity, or 1x1 conv (with the stride) + BN + ReLU when the shape changes. Convs have no bias.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import nn

from latfarm.predictor.spaces.fbnet import STAGE_CHANNELS

if TYPE_CHECKING:
    from latfarm.predictor.spaces.fbnet import Block, MacroStructure


def conv_bn(c_in: int, c_out: int, kernel: int, stride: int = 1, groups: int = 1, relu: bool = True) -> nn.Sequential:
    """KxK conv (same padding, no bias), BN, and ReLU when ``relu``."""
    layers: list[nn.Module] = [
        nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(c_out),
    ]
    if relu:
        layers.append(nn.ReLU(inplace=False))
    return nn.Sequential(*layers)


class ChannelShuffle(nn.Module):
    """ShuffleNet's channel shuffle: [n, g * c, h, w] seen as [n, g, c, h, w], transposed to [n, c, g, h, w]."""

    def __init__(self, groups: int) -> None:
        super().__init__()
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Feature maps [n, c, h, w] -> the same shape, channels interleaved across groups."""
        n, c, h, w = x.shape
        return x.reshape(n, self.groups, c // self.groups, h, w).transpose(1, 2).reshape(n, c, h, w)


class InvertedResidual(nn.Module):
    """One ``kK_eE[_gG]`` block from ``c_in`` to ``c_out`` channels at ``stride``."""

    def __init__(self, shape: Block, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        hidden = shape.expansion * c_in
        layers: list[nn.Module] = [conv_bn(c_in, hidden, 1, groups=shape.groups)]
        if shape.groups > 1:
            layers.append(ChannelShuffle(shape.groups))
        layers += [
            conv_bn(hidden, hidden, shape.kernel, stride=stride, groups=hidden),
            conv_bn(hidden, c_out, 1, groups=shape.groups, relu=False),
        ]
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Feature maps [n, c_in, h, w] -> [n, c_out, h / stride, w / stride]."""
        out = self.body(x)
        return out + x if self.residual else out


def make_layer(shape: Block, c_in: int, c_out: int, stride: int) -> nn.Module:
    """The module of one searchable layer."""
    if not shape.is_skip:
        return InvertedResidual(shape, c_in, c_out, stride)
    if stride == 1 and c_in == c_out:
        return nn.Identity()
    return conv_bn(c_in, c_out, 1, stride=stride)


class FBNetNetwork(nn.Module):
    """Stem, the 22 searchable layers, head, global average pooling, linear classifier."""

    def __init__(self, shapes: Sequence[Block], macro: MacroStructure, classes: int) -> None:
        """The network of one block shape per layer (``ValueError`` unless 22) at ``macro``, ``classes`` logits."""
        super().__init__()
        layers = macro.layers()
        if len(shapes) != len(layers):
            raise ValueError(f"FBNet needs {len(layers)} block shapes, got {len(shapes)}")
        self.stem = conv_bn(3, STAGE_CHANNELS[0], 3, stride=macro.stem_stride)
        self.layers = nn.Sequential(*(make_layer(s, *layer) for s, layer in zip(shapes, layers, strict=True)))
        self.head = conv_bn(STAGE_CHANNELS[-1], macro.head_channels, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(macro.head_channels, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images [n, 3, h, w] -> logits [n, classes]."""
        out = self.head(self.layers(self.stem(x)))
        return self.classifier(torch.flatten(self.pool(out), 1))
