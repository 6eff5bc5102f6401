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
from .blocks import add_conv_stages

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
        freq_reduce: How the frequency left after the last block reaches the GRU: ``"max"``
            (max over frequency: the published CRNN, where it is 1 anyway) or ``"flatten"``
            (channels × frequency per frame: keeps where in the spectrum a pattern is, e.g. which
            pitches sound, at the cost of a wider GRU input).
        readout: Embedding from the GRU outputs: ``"last"`` (last step, published) or
            ``"mean_max"`` (mean and max over time, concatenated; ``embed_dim = 2 · gru_hidden``).

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
        freq_reduce: str = "max",
        readout: str = "last",
    ) -> None:
        super().__init__()
        if freq_reduce not in ("max", "flatten"):
            raise ValueError(f"freq_reduce must be 'max' or 'flatten', got {freq_reduce!r}")
        if readout not in ("last", "mean_max"):
            raise ValueError(f"readout must be 'last' or 'mean_max', got {readout!r}")
        self.freq_reduce, self.readout = freq_reduce, readout
        self.n_blocks = len(channels)
        prev, freq = add_conv_stages(self, in_channels, channels, pools, n_mels)
        gru_in = prev * freq if freq_reduce == "flatten" else prev
        # named layer{n+1} as in the published implementation, so its checkpoints map 1:1
        setattr(
            self,
            f"layer{self.n_blocks + 1}",
            nn.GRU(gru_in, gru_hidden, num_layers=gru_layers, batch_first=True),
        )
        self.embed_dim = gru_hidden * (2 if readout == "mean_max" else 1)

    def forward_intermediates(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        stages = []
        for i in range(1, self.n_blocks + 1):
            x = getattr(self, f"layer{i}")(x)
            stages.append(x)
        if self.freq_reduce == "flatten":
            x = x.flatten(1, 2)  # [B, C·F, T]
        else:
            x = x.amax(dim=2)  # [B, C, T]; a no-op squeeze when frequency is pooled to 1
        seq, _ = getattr(self, f"layer{self.n_blocks + 1}")(x.transpose(1, 2))
        stages.append(seq.transpose(1, 2))
        if self.readout == "mean_max":
            return torch.cat([seq.mean(1), seq.amax(1)], dim=-1), stages
        return seq[:, -1], stages
