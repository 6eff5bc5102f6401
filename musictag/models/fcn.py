"""FCN (Choi et al. 2016, "Automatic tagging using deep convolutional neural networks").

A fully convolutional stack of 3×3 conv blocks whose max-pools shrink a 29-s log-mel spectrogram
to a single (freq, time) cell, so the last block's channels are the embedding. With the defaults
this is exactly the FCN of Won et al. (2020) (447,732 parameters with a 50-tag head and the
BatchNorm frontend), whose published weights ``musictag.pretrained`` loads.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from .base import Backbone
from .blocks import add_conv_stages

__all__ = ["FCN"]


class FCN(Backbone):
    """Five conv blocks over (freq, time), pooled down to one cell.

    The default pools are those of Won et al.: frequency ``96 → 48 → 24 → 12 → 4 → 1`` and time
    ``1813 → 453 → 113 → 28 → 5 → 1`` for a 464,000-sample input. With 128 mel bands the same
    pools give ``128 → 64 → 32 → 16 → 5 → 1`` (the last pool floors 5/4, dropping one row), which is
    the "FCN (128 mel bins)" of Won et al. Anything left after the last pool (shorter or longer
    inputs) is max-pooled globally; at the published input the map is already ``1 × 1``, so this is
    the published ``view(batch, -1)``. A map smaller than a block's pool (a 5-s input reaches the
    fourth block with 4 frames) is pooled over what is left instead of failing, so the network
    runs on short clips without padding them to 29 s.

    Args:
        n_mels: Frequency bins of the input features.
        channels: Output channels of the conv blocks (one block per entry).
        pools: Max-pool ``(freq, time)`` after each block.
        in_channels: Channels of the input features.

    Shape:
        input: ``[batch, in_channels, n_mels, frames]``; output: ``[batch, channels[-1]]``.
    """

    # The pools are sized to the published input: a short clip zero-padded to it scores closer
    # to its longer context than the clip alone (measured: docs/inference.md, Speed), so
    # inference pads short clips for this backbone (musictag.inference.Inference, pad_short).
    fixed_input_length = True

    def __init__(
        self,
        n_mels: int = 96,
        channels: Sequence[int] = (64, 128, 128, 128, 64),
        pools: Sequence[Sequence[int]] = ((2, 4), (2, 4), (2, 4), (3, 5), (4, 4)),
        in_channels: int = 1,
    ) -> None:
        super().__init__()
        self.n_blocks = len(channels)
        self.embed_dim, _ = add_conv_stages(self, in_channels, channels, pools, n_mels)

    def forward_intermediates(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        stages = []
        for i in range(1, self.n_blocks + 1):
            block = getattr(self, f"layer{i}")
            k = block.pool.kernel_size
            pf, pt = (k, k) if isinstance(k, int) else k
            if x.shape[-2] >= pf and x.shape[-1] >= pt:
                x = block(x)
            else:  # shorter than the pool: pool over what is left
                x = block.relu(block.bn(block.conv(x)))
                x = F.max_pool2d(x, (min(pf, x.shape[-2]), min(pt, x.shape[-1])))
            stages.append(x)
        return x.amax(dim=(2, 3)), stages
