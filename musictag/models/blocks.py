"""Building blocks shared by several backbones."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["ConvBlock1d", "ConvBlock2d", "add_conv_stages", "pool_stage", "pooled_bands"]


class ConvBlock2d(nn.Module):
    """Conv2d (same padding) → BatchNorm → ReLU → MaxPool, the ``Conv_2d`` of the published taggers.

    Attribute names (``conv``, ``bn``) follow the published implementation so checkpoints map 1:1.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        kernel_size: Square kernel size (odd).
        pool: Max-pool size ``(freq, time)``; ``(1, 1)`` disables pooling.

    Shape:
        ``[batch, in_channels, freq, time]`` → ``[batch, out_channels, freq // pf, time // pt]``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        pool: tuple[int, int] | int = 2,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
        self.bn = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU()
        self.pool = nn.MaxPool2d(pool)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # ReLU after the pool: max and ReLU commute exactly (values and gradients), and the ReLU
        # then runs on the pooled map, a pass over the large map less in training and inference
        return self.relu(self.pool(self.bn(self.conv(x))))


class ConvBlock1d(nn.Module):
    """Conv1d (same padding) → BN → ReLU → MaxPool, the ``Conv_1d`` of the published taggers.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        kernel_size: Kernel size (odd).
        stride: Convolution stride.
        pool: Max-pool size; 1 disables pooling.

    Shape:
        ``[batch, in_channels, time]`` → ``[batch, out_channels, time // (stride · pool)]``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        pool: int = 1,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv1d(
            in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2
        )
        self.bn = nn.BatchNorm1d(out_channels)
        self.relu = nn.ReLU()
        self.pool = nn.MaxPool1d(pool) if pool > 1 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.pool(self.bn(self.conv(x))))  # ReLU after the pool: see ConvBlock2d


def pool_stage(x: torch.Tensor) -> torch.Tensor:
    """Global mean over every axis after the channel axis: ``[batch, channels, ...]`` → ``[batch, channels]``.

    Used to turn intermediate stage outputs into fixed-size multi-layer embeddings.
    """
    return x.flatten(2).mean(-1) if x.dim() > 2 else x


def pooled_bands(n_mels: int, pools: Sequence[Sequence[int]]) -> int:
    """Frequency bands left after max-pools ``(freq, time)``; ``ValueError`` if none is."""
    freq = n_mels
    for p in pools:
        freq //= p[0]
    if freq < 1:
        raise ValueError(
            f"n_mels={n_mels} is pooled to zero by pools={pools}; use smaller frequency pools"
        )
    return freq


def add_conv_stages(
    module: nn.Module, in_channels: int, channels: Sequence[int], pools: Sequence, n_mels: int
) -> tuple[int, int]:
    """Add ``layer1`` ... ``layerN``, a 3×3 :class:`ConvBlock2d` and pool each, to ``module``;
    returns ``(channels out, frequency bands left)``."""
    pools = [tuple(p) for p in pools]
    if len(channels) != len(pools):
        raise ValueError(f"channels ({len(channels)}) and pools ({len(pools)}) differ in length")
    prev, freq = in_channels, pooled_bands(n_mels, pools)
    for i, (c, p) in enumerate(zip(channels, pools), start=1):
        setattr(module, f"layer{i}", ConvBlock2d(prev, c, 3, p))
        prev = c
    return prev, freq
