"""Short-chunk CNN and Short-chunk ResNet (Won et al. 2020, "Evaluation of CNN-based automatic
music tagging models").

A VGG-like stack of seven 3×3 conv blocks (or seven strided residual blocks) over a 128-band
log-mel of a short (3.69-s) chunk, a global max over what is left of frequency and time, then
``Linear → BatchNorm1d → ReLU`` as the embedding. With the defaults these are exactly the published
``ShortChunkCNN`` (3,687,348 parameters with a 50-tag head and the BatchNorm frontend) and
``ShortChunkCNN_Res`` (12,104,244). This module also holds the residual blocks ``Res2d`` and
``Res2dMP`` of the published code, which the self-attention and Harmonic CNN backbones share.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .base import Backbone
from .blocks import ConvBlock2d

__all__ = ["Res2d", "Res2dMP", "ShortChunkCNN", "ShortChunkResNet", "global_max"]

_CHANNELS = (128, 128, 256, 256, 256, 256, 512)


class Res2d(nn.Module):
    """Residual block ``Res_2d`` of the published taggers (post-activation, strided).

    ``conv_1 → bn_1 → ReLU → conv_2 → bn_2``, plus a shortcut that is ``conv_3 → bn_3`` (a 3×3
    strided conv) when the stride is not 1 or the channel count changes, else the identity;
    the sum goes through a ReLU. Attribute names follow the published implementation.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        kernel_size: Square kernel size (odd).
        stride: Stride of ``conv_1`` and of the projection shortcut, an int or ``(freq, time)``.

    Shape:
        ``[batch, in_channels, F, T]`` → ``[batch, out_channels, ceil(F / sf), ceil(T / st)]``
        (with ``kernel_size=3``).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int | tuple[int, int] = 2,
    ) -> None:
        super().__init__()
        stride = tuple(stride) if isinstance(stride, Sequence) else (stride, stride)
        pad = kernel_size // 2
        self.conv_1 = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=pad)
        self.bn_1 = nn.BatchNorm2d(out_channels)
        self.conv_2 = nn.Conv2d(out_channels, out_channels, kernel_size, padding=pad)
        self.bn_2 = nn.BatchNorm2d(out_channels)
        self.diff = stride != (1, 1) or in_channels != out_channels
        if self.diff:
            self.conv_3 = nn.Conv2d(
                in_channels, out_channels, kernel_size, stride=stride, padding=pad
            )
            self.bn_3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn_2(self.conv_2(self.relu(self.bn_1(self.conv_1(x)))))
        if self.diff:
            x = self.bn_3(self.conv_3(x))
        return self.relu(x + out)


class Res2dMP(nn.Module):
    """Residual block with identity shortcut and max-pooling (``Res_2d_mp`` of the published code).

    ``conv_1 → bn_1 → ReLU → conv_2 → bn_2``, plus the input, then ReLU and MaxPool.

    Args:
        channels: Input and output channels.
        pool: Max-pool size, an int or ``(freq, time)``.

    Shape:
        ``[batch, channels, F, T]`` → ``[batch, channels, F // pf, T // pt]``.
    """

    def __init__(self, channels: int, pool: int | tuple[int, int] = 2) -> None:
        super().__init__()
        pool = tuple(pool) if isinstance(pool, Sequence) else pool
        self.conv_1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.bn_1 = nn.BatchNorm2d(channels)
        self.conv_2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.bn_2 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU()
        self.mp = nn.MaxPool2d(pool)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn_2(self.conv_2(self.relu(self.bn_1(self.conv_1(x)))))
        return self.relu(self.mp(x + out))  # ReLU after the pool: see ConvBlock2d


def global_max(x: torch.Tensor) -> torch.Tensor:
    """Max over every axis after the channel axis: ``[batch, C, ...]`` → ``[batch, C]``.

    The published code squeezes a frequency axis of 1 and max-pools time; taking the max over the
    remaining frequency too gives the same result there and also works for other input sizes.
    """
    return x.flatten(2).amax(-1)


class _ShortChunkBase(Backbone):
    """Seven blocks ``layer1..layer7``, global max, then ``dense1 → bn → ReLU`` (the embedding)."""

    n_blocks: int

    def _build_head(self, channels: int, embed_dim: int) -> None:
        self.dense1 = nn.Linear(channels, embed_dim)
        self.bn = nn.BatchNorm1d(embed_dim)
        self.relu = nn.ReLU()
        self.embed_dim = embed_dim

    def forward_intermediates(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        stages = []
        for i in range(1, self.n_blocks + 1):
            x = getattr(self, f"layer{i}")(x)
            stages.append(x)
        emb = self.relu(self.bn(self.dense1(global_max(x))))
        return emb, stages


class ShortChunkCNN(_ShortChunkBase):
    """Short-chunk CNN: seven ``Conv_2d`` blocks (3×3 conv, BN, ReLU, 2×2 max-pool).

    Args:
        n_mels: Frequency bins of the input (128 in the paper); must survive the pools
            (``n_mels >= 2 ** len(channels)``).
        channels: Output channels of the conv blocks (one block per entry).
        embed_dim: Size of ``dense1`` (= embedding size).
        in_channels: Channels of the input features.

    Shape:
        input: ``[batch, in_channels, n_mels, frames]`` with ``frames >= 2 ** len(channels)``
        (231 frames for the published 59,049-sample input); output: ``[batch, embed_dim]``.
    """

    def __init__(
        self,
        n_mels: int = 128,
        channels: Sequence[int] = _CHANNELS,
        embed_dim: int = 512,
        in_channels: int = 1,
    ) -> None:
        super().__init__()
        channels = list(channels)
        if n_mels < 2 ** len(channels):
            raise ValueError(
                f"n_mels={n_mels} is pooled to zero by {len(channels)} 2×2 pools; "
                f"use n_mels >= {2 ** len(channels)} or fewer blocks"
            )
        self.n_blocks = len(channels)
        prev = in_channels
        for i, c in enumerate(channels, start=1):
            setattr(self, f"layer{i}", ConvBlock2d(prev, c, 3, 2))
            prev = c
        self._build_head(prev, embed_dim)


class ShortChunkResNet(_ShortChunkBase):
    """Short-chunk ResNet: seven ``Res_2d`` blocks with stride 2 (each halves freq and time,
    rounding up).

    Args:
        n_mels: Frequency bins of the input (128 in the paper).
        channels: Output channels of the residual blocks (one block per entry).
        embed_dim: Size of ``dense1`` (= embedding size).
        in_channels: Channels of the input features.

    Shape:
        input: ``[batch, in_channels, n_mels, frames]``; output: ``[batch, embed_dim]``.
        For the published input (128 × 231) the blocks give 64×116, 32×58, 16×29, 8×15, 4×8,
        2×4, 1×2 (freq × time).
    """

    def __init__(
        self,
        n_mels: int = 128,
        channels: Sequence[int] = _CHANNELS,
        embed_dim: int = 512,
        in_channels: int = 1,
    ) -> None:
        super().__init__()
        channels = list(channels)
        self.n_blocks = len(channels)
        prev = in_channels
        for i, c in enumerate(channels, start=1):
            setattr(self, f"layer{i}", Res2d(prev, c, 3, stride=2))
            prev = c
        self._build_head(prev, embed_dim)
