"""A compact 2D CNN for small collections trained from scratch on CPU (``musictag train``).

Per-band standardisation of the log-mel input with statistics measured on the training set (a
fixed affine map, stored as buffers), a few 3×3 conv blocks that halve frequency and time, and a
mean+max readout over time. On a few hundred clips this small model learns faster and generalises
better than the published 29-s architectures, whose single ``BatchNorm2d(1)`` on dB values leaves
the loud low bands dominating the first convolution.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .base import Backbone
from .blocks import ConvBlock2d

__all__ = ["CompactCNN"]


class CompactCNN(Backbone):
    """Per-band standardisation → conv blocks → (mean over) frequency → mean and max over time.

    Args:
        n_mels: Frequency bins of the input features.
        channels: Output channels of the conv blocks (one block per entry).
        pool: Max-pool ``(freq, time)`` after each block.
        in_channels: Channels of the input features.
        readout: ``"mean"``: mean over the remaining frequency bands; ``"bands"``: the bands kept
            as features (the register an instrument plays in survives to the head).
        bands: Resample the standardised input to this many frequency bands (area-weighted
            averages of neighbouring bins, a fixed ``[bands, n_mels]`` matrix) before the conv
            blocks; ``None``: the input's ``n_mels``. A CNN that shares a finer frontend (a
            transfer tagger's 96 bands) then costs what it costs on its own coarser one.

    Shape:
        input: ``[batch, in_channels, n_mels, frames]``; output: ``[batch, 2 * channels[-1]]``
        (``"mean"``) or ``[batch, 2 * channels[-1] * bands]`` (``"bands"``).
    """

    def __init__(
        self,
        n_mels: int = 96,
        channels: Sequence[int] = (16, 32, 64, 128),
        pool: Sequence[int] = (2, 2),
        in_channels: int = 1,
        readout: str = "mean",
        bands: int | None = None,
    ) -> None:
        super().__init__()
        if readout not in ("mean", "bands"):
            raise ValueError(f"readout must be 'mean' or 'bands', got {readout!r}")
        self.readout = readout
        self.register_buffer("band_mean", torch.zeros(n_mels))
        self.register_buffer("band_std", torch.ones(n_mels))
        # derived from the sizes alone: not saved, so state_dict keys do not depend on it
        self.register_buffer("resample", _area_matrix(n_mels, bands) if bands else None, False)
        blocks, prev = [], in_channels
        for c in channels:
            blocks.append(ConvBlock2d(prev, c, 3, tuple(pool)))
            prev = c
        self.blocks = nn.ModuleList(blocks)
        bands = bands or n_mels
        for _ in channels:
            bands = bands // pool[0] if bands >= 2 else bands
        self.embed_dim = 2 * prev * (bands if readout == "bands" else 1)

    def set_band_stats(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Store the per-band standardisation (``[n_mels]`` each; std is floored)."""
        self.band_mean.copy_(mean.to(self.band_mean))
        self.band_std.copy_(std.to(self.band_std).clamp_min(1e-3))

    def standardize(self, x: torch.Tensor) -> torch.Tensor:
        """``(x - band_mean) / band_std`` per frequency bin of ``[batch, channels, n_mels, frames]``."""
        return (x - self.band_mean[:, None]) / self.band_std[:, None]

    def forward_intermediates(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        return self.forward_standardized(self.standardize(x))

    def forward_standardized(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """As :meth:`forward_intermediates`, for input already standardised (training augments there)."""
        if self.resample is not None:
            x = torch.matmul(self.resample, x)  # [bands, n_mels] @ [batch, C, n_mels, frames]
        stages = []
        for block in self.blocks:
            if x.shape[-1] < 2 or x.shape[-2] < 2:  # too short to pool further: keep the map
                x = block.relu(block.bn(block.conv(x)))
            else:
                x = block(x)
            stages.append(x)
        seq = x.flatten(1, 2) if self.readout == "bands" else x.mean(dim=2)  # [batch, C', frames]
        return torch.cat([seq.mean(-1), seq.amax(-1)], dim=-1), stages


def _area_matrix(n_in: int, n_out: int) -> torch.Tensor:
    """``[n_out, n_in]``: row ``j`` averages the input bins that output band ``j`` covers, each
    weighted by the share of it inside the band (rows sum to 1)."""
    if not 0 < n_out <= n_in:
        raise ValueError(f"bands must be in 1..{n_in} (the input's bands), got {n_out}")
    edges = torch.arange(n_out + 1, dtype=torch.float64) * (n_in / n_out)
    lo, hi = edges[:-1, None], edges[1:, None]
    bins = torch.arange(n_in, dtype=torch.float64)
    overlap = (torch.minimum(hi, bins + 1) - torch.maximum(lo, bins)).clamp_min(0)
    return (overlap / overlap.sum(1, keepdim=True)).float()
