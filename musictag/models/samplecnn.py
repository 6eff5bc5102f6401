"""Sample-level CNNs on the raw waveform (Lee et al. 2017; Kim, Lee & Nam 2018).

A strided 3-sample convolution, then blocks of 3-sample convolutions each followed by a 3× max-pool,
shrink a 59,049-sample (3^10) input to a single frame. Four block types are available:

- ``basic``: Conv → BN → ReLU → MaxPool (Lee et al. 2017; the ``Conv_1d`` of Won et al. 2020).
- ``se``: ``basic`` followed by squeeze-and-excitation (Kim et al. 2018, "SE").
- ``res``: two convolutions with a residual shortcut (Kim et al. 2018, "Res").
- ``rese``: ``res`` with squeeze-and-excitation on the residual branch before the sum (Kim et al.
  2018, "ReSE"; the ``ResSE_1d`` of Won et al. 2020).

With the defaults this is the ``SampleCNN`` of Won et al. (2020) (1,869,874 parameters with a
50-tag head); ``block="rese", amplifying_ratio=1, fc=True`` is their ``SampleCNNSE`` (6,951,858).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .base import Backbone
from .blocks import ConvBlock1d

__all__ = ["BLOCKS", "ResBlock1d", "SampleCNN", "SEBlock1d", "SqueezeExcitation1d"]


class SqueezeExcitation1d(nn.Module):
    """Squeeze-and-excitation over time: mean → ``dense1`` → ReLU → ``dense2`` → sigmoid → scale.

    Args:
        channels: Channels of the input.
        amplifying_ratio: Hidden size of the excitation as a multiple of ``channels`` (Kim et al.
            2018 use 16; the ``ResSE_1d`` of Won et al. 2020 uses 1).

    Shape:
        ``[batch, channels, time]`` → same.
    """

    def __init__(self, channels: int, amplifying_ratio: float = 16) -> None:
        super().__init__()
        hidden = max(1, int(round(channels * amplifying_ratio)))
        self.dense1 = nn.Linear(channels, hidden)
        self.dense2 = nn.Linear(hidden, channels)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = torch.sigmoid(self.dense2(self.relu(self.dense1(x.mean(dim=-1)))))
        return x * w.unsqueeze(-1)


class SEBlock1d(ConvBlock1d):
    """``basic`` block followed by squeeze-and-excitation (the SE block of Kim et al. 2018).

    Attribute names: ``conv``, ``bn`` (as ``Conv_1d``) and ``se.dense1``, ``se.dense2``.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        kernel_size: Kernel size (odd).
        stride: Convolution stride.
        pool: Max-pool size; 1 disables pooling.
        amplifying_ratio: SE hidden size as a multiple of ``out_channels``.

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
        amplifying_ratio: float = 16,
    ) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, pool)
        self.se = SqueezeExcitation1d(out_channels, amplifying_ratio)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.se(super().forward(x))


class ResBlock1d(nn.Module):
    """Residual block, optionally with squeeze-and-excitation: the ``ResSE_1d`` of Won et al. (2020).

    ``conv_1 → bn_1 → ReLU → conv_2 → bn_2 [→ SE (dense1, dense2)]``, plus the shortcut (identity,
    or ``conv_3 → bn_3`` when the stride or the channel count changes), then ReLU and MaxPool.
    Attribute names follow the published ``ResSE_1d`` (``conv_1``, ``bn_1``, ``dense1`` ...), so its
    state_dicts map 1:1.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        kernel_size: Kernel size (odd); the shortcut convolution uses the same size, as published.
        stride: Stride of ``conv_1`` and the shortcut.
        pool: Max-pool size; 1 disables pooling.
        se: Add squeeze-and-excitation on the residual branch.
        amplifying_ratio: SE hidden size as a multiple of ``out_channels``.

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
        se: bool = True,
        amplifying_ratio: float = 16,
    ) -> None:
        super().__init__()
        pad = kernel_size // 2
        self.conv_1 = nn.Conv1d(in_channels, out_channels, kernel_size, stride=stride, padding=pad)
        self.bn_1 = nn.BatchNorm1d(out_channels)
        self.conv_2 = nn.Conv1d(out_channels, out_channels, kernel_size, padding=pad)
        self.bn_2 = nn.BatchNorm1d(out_channels)
        self.se = se
        if se:
            # flat names (dense1/dense2 on the block) as in the published ResSE_1d
            hidden = max(1, int(round(out_channels * amplifying_ratio)))
            self.dense1 = nn.Linear(out_channels, hidden)
            self.dense2 = nn.Linear(hidden, out_channels)
        self.diff = stride != 1 or in_channels != out_channels
        if self.diff:
            self.conv_3 = nn.Conv1d(
                in_channels, out_channels, kernel_size, stride=stride, padding=pad
            )
            self.bn_3 = nn.BatchNorm1d(out_channels)
        self.relu = nn.ReLU()
        self.pool = nn.MaxPool1d(pool) if pool > 1 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn_2(self.conv_2(self.relu(self.bn_1(self.conv_1(x)))))
        if self.se:
            w = torch.sigmoid(self.dense2(self.relu(self.dense1(out.mean(dim=-1)))))
            out = out * w.unsqueeze(-1)
        if self.diff:
            x = self.bn_3(self.conv_3(x))
        return self.relu(self.pool(x + out))  # ReLU after the pool: see ConvBlock2d


BLOCKS = ("basic", "se", "res", "rese")


def _make_block(
    block: str, cin: int, cout: int, kernel: int, stride: int, pool: int, ratio: float
) -> nn.Module:
    if block == "basic":
        return ConvBlock1d(cin, cout, kernel, stride, pool)
    if block == "se":
        return SEBlock1d(cin, cout, kernel, stride, pool, ratio)
    if block == "res":
        return ResBlock1d(cin, cout, kernel, stride, pool, se=False)
    if block == "rese":
        return ResBlock1d(cin, cout, kernel, stride, pool, se=True, amplifying_ratio=ratio)
    raise ValueError(f"unknown block {block!r}; choose one of {BLOCKS}")


class SampleCNN(Backbone):
    """Sample-level CNN: strided stem → ``len(channels)`` blocks (k=3, pool 3) → optional 1×1 block.

    Layers are named ``layer1`` (the stem: kernel 3, stride 3, no pool), ``layer2`` …
    ``layer{n+1}`` (the pooled blocks) and ``layer{n+2}`` (the 1×1 block, if ``final_conv``), as in
    Won et al. (2020), so their state_dicts map 1:1. Every layer uses the chosen ``block`` type.
    The remaining time axis (1 frame at the 59,049-sample input) is max-pooled globally; with
    ``multi_level`` the global max-pools of the last three layers are concatenated instead (the
    multi-level feature aggregation of Kim et al. 2018). With ``fc`` a ``dense1 → bn → ReLU`` layer
    of the same width follows (Kim et al. 2018 and Won et al.'s ``SampleCNNSE``); it belongs to the
    backbone, so its output is the embedding.

    Args:
        block: ``"basic"``, ``"se"``, ``"res"`` or ``"rese"`` (see the module docstring).
        channels: Output channels of the pooled blocks.
        stem_channels: Output channels of the strided stem.
        kernel_size: Kernel size of the stem and the pooled blocks.
        pool: Max-pool size (and stem stride) of the pooled blocks.
        amplifying_ratio: SE hidden size as a multiple of the block's channels (``se``/``rese``).
        final_conv: Add the 1×1 block (``channels[-1] → channels[-1]``) of Won et al.
        multi_level: Concatenate the global max-pools of the last three layers.
        fc: Add ``dense1 (D → D) → bn → ReLU`` after the pooling.
        in_channels: Channels of the input waveform.

    Shape:
        input: ``[batch, in_channels, samples]``; output: ``[batch, embed_dim]`` where ``embed_dim``
        is ``channels[-1]`` (or the sum of the last three layers' channels with ``multi_level``).
    """

    def __init__(
        self,
        block: str = "basic",
        channels: Sequence[int] = (128, 128, 256, 256, 256, 256, 256, 256, 512),
        stem_channels: int = 128,
        kernel_size: int = 3,
        pool: int = 3,
        amplifying_ratio: float = 16,
        final_conv: bool = True,
        multi_level: bool = False,
        fc: bool = False,
        in_channels: int = 1,
    ) -> None:
        super().__init__()
        if block not in BLOCKS:
            raise ValueError(f"unknown block {block!r}; choose one of {BLOCKS}")
        channels = [int(c) for c in channels]
        self.block = block
        self.multi_level = multi_level
        layers: list[nn.Module] = [
            _make_block(block, in_channels, stem_channels, kernel_size, pool, 1, amplifying_ratio)
        ]
        widths = [stem_channels]
        prev = stem_channels
        for c in channels:
            layers.append(_make_block(block, prev, c, kernel_size, 1, pool, amplifying_ratio))
            widths.append(c)
            prev = c
        if final_conv:
            layers.append(_make_block(block, prev, prev, 1, 1, 1, amplifying_ratio))
            widths.append(prev)
        if multi_level and len(layers) < 3:
            raise ValueError("multi_level needs at least three layers")
        self.n_layers = len(layers)
        for i, layer in enumerate(layers, start=1):
            setattr(self, f"layer{i}", layer)
        dim = sum(widths[-3:]) if multi_level else widths[-1]
        self.fc = fc
        if fc:
            self.dense1 = nn.Linear(dim, dim)
            self.bn = nn.BatchNorm1d(dim)
            self.relu = nn.ReLU()
        self.embed_dim = dim
        # the input length that pools to exactly one frame: stem stride × pool^blocks
        self.receptive_samples = pool ** (len(channels) + 1)

    def forward_intermediates(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        stages = []
        for i in range(1, self.n_layers + 1):
            x = getattr(self, f"layer{i}")(x)
            stages.append(x)
        if self.multi_level:
            emb = torch.cat([s.amax(dim=-1) for s in stages[-3:]], dim=1)
        else:
            emb = x.amax(dim=-1)  # the published squeeze(-1) at one remaining frame
        if self.fc:
            emb = self.relu(self.bn(self.dense1(emb)))
        return emb, stages
