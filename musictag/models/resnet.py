"""ResNet-style spectrogram CNN: pre-activation residual stages with elongated pooling.

The layout of the CIFAR-10-style ResNetV2 classifiers applied to spectrograms (as in the
mxnet-audio / Keras audio classifiers): a 3×3 stem, stages of pre-activation basic blocks
(He et al. 2016, "Identity mappings in deep residual networks"), and after each stage a max-pool
that may be elongated — ``(2, 4)`` shrinks the long time axis of a spectrogram faster than its
frequency axis, ``(4, 2)`` the reverse — followed by dropout. A final BatchNorm + ReLU and a global
pooling give the embedding. There is no published PyTorch implementation to match, so there is no
reference parameter count (2,793,568 for the backbone with the defaults; 2,806,420 with a 50-tag head and the frontend).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .base import Backbone
from .blocks import pooled_bands

__all__ = ["PreActBlock", "ResNet", "ResNetStage"]


class PreActBlock(nn.Module):
    """Pre-activation basic block: ``BN → ReLU → conv3×3 → BN → ReLU → conv3×3`` plus shortcut.

    The shortcut is the identity, or a 1×1 conv (``downsample``) on the pre-activated input when
    the channel count changes.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.

    Shape:
        ``[batch, in_channels, F, T]`` → ``[batch, out_channels, F, T]``.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.downsample = (
            nn.Conv2d(in_channels, out_channels, 1, bias=False)
            if in_channels != out_channels
            else None
        )
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.relu(self.bn1(x))
        shortcut = self.downsample(pre) if self.downsample is not None else x
        out = self.conv2(self.relu(self.bn2(self.conv1(pre))))
        return out + shortcut


class ResNetStage(nn.Module):
    """``n_blocks`` pre-activation blocks, then max-pool ``pool`` and dropout.

    Args:
        in_channels: Input channels.
        out_channels: Output channels (the first block changes the width).
        n_blocks: Number of blocks.
        pool: Max-pool ``(freq, time)``; ``(1, 1)`` disables it.
        dropout: Dropout probability after the pool.

    Shape:
        ``[batch, in_channels, F, T]`` → ``[batch, out_channels, F // pf, T // pt]``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        n_blocks: int = 2,
        pool: Sequence[int] = (2, 2),
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.blocks = nn.Sequential(
            *(
                PreActBlock(in_channels if i == 0 else out_channels, out_channels)
                for i in range(n_blocks)
            )
        )
        self.pool = nn.MaxPool2d(tuple(pool))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.pool(self.blocks(x)))


class ResNet(Backbone):
    """Pre-activation ResNet on a spectrogram with elongated pooling between stages.

    Args:
        n_mels: Frequency bins of the input; must survive the frequency pools.
        channels: Width of each stage (``layer1`` ... ``layerN``); the stem has ``channels[0]``.
        blocks: Pre-activation blocks per stage.
        pools: Max-pool ``(freq, time)`` after each stage.
        dropout: Dropout after each stage's pool.
        pooling: Global pooling of the last feature map: ``"mean"`` (ResNetV2's global average),
            ``"max"``, or ``"meanmax"`` (mean over frequency, then mean + max over time, as in
            PANNs).
        in_channels: Channels of the input features.

    Shape:
        input: ``[batch, in_channels, n_mels, frames]``; output: ``[batch, channels[-1]]``.
        With the defaults and the 10-s input (128 × 626) the stages give 64×156, 32×39, 16×9,
        4×4 (freq × time).
    """

    def __init__(
        self,
        n_mels: int = 128,
        channels: Sequence[int] = (32, 64, 128, 256),
        blocks: Sequence[int] = (2, 2, 2, 2),
        pools: Sequence[Sequence[int]] = ((2, 4), (2, 4), (2, 4), (4, 2)),
        dropout: float = 0.1,
        pooling: str = "mean",
        in_channels: int = 1,
    ) -> None:
        super().__init__()
        channels, blocks, pools = list(channels), list(blocks), [tuple(p) for p in pools]
        if not len(channels) == len(blocks) == len(pools):
            raise ValueError(
                f"channels ({len(channels)}), blocks ({len(blocks)}) and pools ({len(pools)}) "
                "must have one entry per stage"
            )
        if pooling not in ("mean", "max", "meanmax"):
            raise ValueError(f"pooling must be 'mean', 'max' or 'meanmax', got {pooling!r}")
        pooled_bands(n_mels, pools)
        self.pooling = pooling
        self.n_stages = len(channels)
        self.stem = nn.Conv2d(in_channels, channels[0], 3, padding=1, bias=False)
        prev = channels[0]
        for i, (c, n, p) in enumerate(zip(channels, blocks, pools, strict=True), start=1):
            setattr(self, f"layer{i}", ResNetStage(prev, c, n, p, dropout))
            prev = c
        self.bn = nn.BatchNorm2d(prev)
        self.relu = nn.ReLU()
        self.embed_dim = prev

    def forward_intermediates(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        x = self.stem(x)
        stages = []
        for i in range(1, self.n_stages + 1):
            x = getattr(self, f"layer{i}")(x)
            stages.append(x)
        x = self.relu(self.bn(x))
        if self.pooling == "mean":
            emb = x.mean(dim=(2, 3))
        elif self.pooling == "max":
            emb = x.amax(dim=(2, 3))
        else:
            t = x.mean(dim=2)
            emb = t.mean(dim=-1) + t.amax(dim=-1)
        return emb, stages
