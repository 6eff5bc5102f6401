"""Musicnn (Pons et al. 2018, "End-to-end learning for music audio tagging at scale").

A musically motivated front end, vertical filters for timbre (tall in frequency, max-pooled over
frequency) and horizontal filters for temporal patterns (long in time, on the frequency-averaged
spectrogram), feeds a dense residual 1D back end; temporal max- and mean-pooling of every
back-end layer are concatenated and projected to the embedding. With the defaults this is exactly
the ``Musicnn`` of Won et al. (2020) (784,300 parameters for 50 tags; 7,972,000 with the MSD-size
back end), whose published weights ``musictag.pretrained`` loads.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .base import Backbone
from .blocks import ConvBlock1d

__all__ = ["ConvH", "ConvV", "Musicnn", "vertical_conv"]


class ConvV(nn.Module):
    """Vertical (timbral) filter: Conv2d without frequency padding → BN → ReLU → max over frequency.

    The ``Conv_V`` of the published implementation (attribute names ``conv``, ``bn``). The
    convolution runs as :func:`vertical_conv` (a 1D convolution over frequency windows, the same
    values and gradients to float32 round-off) with the weights of ``conv``, an ``nn.Conv2d``.

    Args:
        in_channels: Input channels.
        out_channels: Number of filters.
        kernel_size: ``(freq, time)``; time is padded to keep the frame count (odd sizes).

    Shape:
        ``[batch, in_channels, freq, time]`` → ``[batch, out_channels, time]``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: tuple[int, int]) -> None:
        super().__init__()
        self.conv = nn.Conv2d(
            in_channels, out_channels, kernel_size, padding=(0, kernel_size[1] // 2)
        )
        self.bn = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, frames = x.shape[0], x.shape[-1]
        y = vertical_conv(x, self.conv.weight, self.conv.bias)  # [batch * bands, C, frames]
        # BatchNorm2d on [batch * bands, C, frames, 1]: the same per-channel statistics as on
        # [batch, C, bands, frames]
        y = self.bn(y.unsqueeze(-1)).view(batch, -1, y.shape[1], frames)
        # max, then ReLU: see ConvBlock2d. max(dim).values, not amax: the same values, and its
        # backward scatters into the argmax instead of comparing the whole map with the max
        # (3x faster in bf16; the gradients differ only where two frequencies tie exactly)
        return self.relu(y.max(dim=1).values)


def vertical_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """A 2D convolution without frequency padding, as a 1D convolution over frequency windows.

    The same sums as ``F.conv2d(x, weight, bias, padding=(0, width // 2))`` (float32 round-off),
    rearranged: each window of ``height`` bands becomes a batch item with ``in_channels · height``
    channels. A filter that spans most of the bands over one input channel is a badly shaped
    2D convolution for oneDNN, whose backward ran 3-4x slower than this 1D one (float32 and
    bf16, ``docs/benchmarks.md``, "Training step (CPU)").

    Args:
        x: ``[batch, in_channels, bands, frames]``.
        weight: ``[out_channels, in_channels, height, width]`` (odd ``width``).
        bias: ``[out_channels]`` or ``None``.

    Returns:
        ``[batch * (bands - height + 1), out_channels, frames]``, window-major within each item.
    """
    _, in_channels, _, frames = x.shape
    out_channels, _, height, width = weight.shape
    if torch.is_autocast_enabled(x.device.type):  # cast before the windows copy x height times
        x = x.to(torch.get_autocast_dtype(x.device.type))
    windows = x.unfold(2, height, 1)  # [batch, in_channels, windows, frames, height]
    windows = windows.permute(0, 2, 1, 4, 3).reshape(-1, in_channels * height, frames)
    kernel = weight.reshape(out_channels, in_channels * height, width)
    return F.conv1d(windows, kernel, bias, padding=width // 2)


class ConvH(nn.Module):
    """Horizontal (temporal) filter: mean over frequency → Conv1d → BN → ReLU.

    The ``Conv_H`` of the published implementation (attribute names ``conv``, ``bn``).

    Args:
        in_channels: Input channels.
        out_channels: Number of filters.
        kernel_size: Filter length in frames (odd, padded to keep the frame count).

    Shape:
        ``[batch, in_channels, freq, time]`` → ``[batch, out_channels, time]``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
        self.bn = nn.BatchNorm1d(out_channels)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.conv(x.mean(dim=2))))


class Musicnn(Backbone):
    """Musicnn front end (vertical + horizontal filters) → dense residual 1D back end → pooling → dense.

    Front end (``layers``): two vertical filters of ``vertical_heights`` (default
    ``int(0.7 · n_mels)`` and ``int(0.4 · n_mels)``: 67 and 38 at 96 bands) × ``vertical_width``
    frames with ``vertical_filters`` each, and horizontal filters of ``horizontal_lengths`` frames
    with ``horizontal_filters`` each, concatenated along channels (561 with the defaults).
    Back end: three ``Conv1d(k=7)`` blocks of ``backend_channels``; the second and third add their
    input (dense residuals). The front-end output and the three back-end outputs are concatenated,
    max- and mean-pooled over time, and ``dense1 → bn → ReLU`` projects them to the embedding.

    Args:
        n_mels: Frequency bins of the input features.
        backend_channels: Back-end width: 64 (MTAT/Jamendo size) or 512 (MSD size).
        embed_dim: Size of the dense layer (the embedding): 200 (MTAT/Jamendo) or 500 (MSD).
        vertical_heights: Heights of the vertical filters in bins; ``None`` means
            ``(int(0.7 · n_mels), int(0.4 · n_mels))``.
        vertical_width: Width of the vertical filters in frames.
        vertical_filters: Filters per vertical shape.
        horizontal_lengths: Lengths of the horizontal filters in frames.
        horizontal_filters: Filters per horizontal length.
        backend_kernel: Kernel size of the back-end convolutions.
        in_channels: Channels of the input features.

    Shape:
        input: ``[batch, in_channels, n_mels, frames]``; output: ``[batch, embed_dim]``.
    """

    def __init__(
        self,
        n_mels: int = 96,
        backend_channels: int = 64,
        embed_dim: int = 200,
        vertical_heights: Sequence[int] | None = None,
        vertical_width: int = 7,
        vertical_filters: int = 204,
        horizontal_lengths: Sequence[int] = (129, 65, 33),
        horizontal_filters: int = 51,
        backend_kernel: int = 7,
        in_channels: int = 1,
    ) -> None:
        super().__init__()
        if vertical_heights is None:
            # int() as in the published code: int(0.7 * 96) = 67, int(0.4 * 96) = 38
            vertical_heights = (int(0.7 * n_mels), int(0.4 * n_mels))
        heights = [int(h) for h in vertical_heights]
        if any(not 1 <= h <= n_mels for h in heights):
            raise ValueError(f"vertical_heights {heights} must lie in [1, n_mels={n_mels}]")
        front: list[nn.Module] = [
            ConvV(in_channels, vertical_filters, (h, vertical_width)) for h in heights
        ]
        front += [ConvH(in_channels, horizontal_filters, int(k)) for k in horizontal_lengths]
        # one ModuleList named ``layers`` as in the published implementation: layers.0.conv.weight ...
        self.layers = nn.ModuleList(front)
        front_channels = vertical_filters * len(heights) + horizontal_filters * len(
            horizontal_lengths
        )
        self.layer1 = ConvBlock1d(front_channels, backend_channels, backend_kernel)
        self.layer2 = ConvBlock1d(backend_channels, backend_channels, backend_kernel)
        self.layer3 = ConvBlock1d(backend_channels, backend_channels, backend_kernel)
        self.dense1 = nn.Linear(2 * (front_channels + 3 * backend_channels), embed_dim)
        self.bn = nn.BatchNorm1d(embed_dim)
        self.relu = nn.ReLU()
        self.embed_dim = embed_dim

    def forward_intermediates(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        front = torch.cat([layer(x) for layer in self.layers], dim=1)  # [B, 561, T]
        res1 = self.layer1(front)
        res2 = self.layer2(res1) + res1
        res3 = self.layer3(res2) + res2
        out = torch.cat([front, res1, res2, res3], dim=1)
        pooled = torch.cat([out.amax(dim=-1), out.mean(dim=-1)], dim=1)
        emb = self.relu(self.bn(self.dense1(pooled)))
        return emb, [front, res1, res2, res3]
