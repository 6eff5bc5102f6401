"""CRNN (Choi et al. 2017, "Convolutional recurrent neural networks for music classification").

Four 2D conv blocks summarise the log-mel spectrogram locally; a two-layer GRU summarises the
sequence of conv features over time, and its last step is the embedding. With the defaults this is
exactly the CRNN of Won et al. (2020) (394,100 parameters with a 50-tag head and the BatchNorm
frontend), whose weights ``musictag.pretrained`` loads.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .base import Backbone
from .blocks import ConvBlock2d

__all__ = ["CRNN"]


class CRNN(Backbone):
    """Conv blocks over (freq, time), then a GRU over time.

    Args:
        n_mels: Frequency bins of the input features.
        channels: Output channels of the conv blocks (one block per entry).
        pools: Max-pool ``(freq, time)`` after each block. Frequency must not pool below 1; any
            frequency left after the last block is max-pooled away.
        gru_hidden: GRU hidden size (= embedding size).
        gru_layers: Number of stacked GRU layers.
        in_channels: Channels of the input features.

    Shape:
        input: ``[batch, in_channels, n_mels, frames]``; output: ``[batch, gru_hidden]``.
    """

    def __init__(
        self,
        n_mels: int = 96,
        channels: Sequence[int] = (64, 128, 128, 128),
        pools: Sequence[Sequence[int]] = ((2, 2), (3, 3), (4, 4), (4, 4)),
        gru_hidden: int = 32,
        gru_layers: int = 2,
        in_channels: int = 1,
    ) -> None:
        super().__init__()
        channels, pools = list(channels), [tuple(p) for p in pools]
        if len(channels) != len(pools):
            raise ValueError(
                f"channels ({len(channels)}) and pools ({len(pools)}) differ in length"
            )
        freq = n_mels
        for p in pools:
            freq //= p[0]
        if freq < 1:
            raise ValueError(
                f"n_mels={n_mels} is pooled to zero by pools={pools}; use smaller frequency pools"
            )
        self.n_blocks = len(channels)
        prev = in_channels
        for i, (c, p) in enumerate(zip(channels, pools), start=1):
            setattr(self, f"layer{i}", ConvBlock2d(prev, c, 3, p))
            prev = c
        # named layer{n+1} as in the published implementation, so its checkpoints map 1:1
        setattr(
            self,
            f"layer{self.n_blocks + 1}",
            nn.GRU(prev, gru_hidden, num_layers=gru_layers, batch_first=True),
        )
        self.embed_dim = gru_hidden

    def forward_intermediates(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        stages = []
        for i in range(1, self.n_blocks + 1):
            x = getattr(self, f"layer{i}")(x)
            stages.append(x)
        x = x.amax(dim=2)  # [B, C, T]; a no-op squeeze when frequency is pooled to 1
        seq, _ = getattr(self, f"layer{self.n_blocks + 1}")(x.transpose(1, 2))
        stages.append(seq.transpose(1, 2))
        return seq[:, -1], stages
