"""Non-local blocks (Wang et al. 2018, "Non-local neural networks") for any 2D CNN backbone.

An embedded-Gaussian non-local block lets every time-frequency position attend to every other
one, adding long-range context to a convolutional stage. The output projection ends in a
BatchNorm whose scale and shift start at zero, so an inserted block is the identity at
initialisation and a backbone keeps its behaviour (and any pretrained weights stay valid) until
training moves it. :func:`insert_nonlocal` wraps named stages of a built backbone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

__all__ = ["NonLocal2d", "insert_nonlocal", "output_channels"]


class NonLocal2d(nn.Module):
    """Embedded-Gaussian non-local block with a zero-initialised BatchNorm on the output.

    ``z = x + W(softmax(θ(x)ᵀ φ(x)) g(x))`` where ``θ``, ``φ``, ``g`` are 1×1 convs to
    ``inter_channels`` and ``W`` is a 1×1 conv back to ``channels`` followed by BatchNorm with
    ``weight = bias = 0`` at initialisation (so ``z = x``). With ``sub_sample`` the keys and values
    (``φ``, ``g``) are max-pooled 2×2, which cuts the attention cost by 4 as in the reference
    implementation. Attribute names (``g``, ``theta``, ``phi``, ``W``) follow Wang et al.'s
    reference code and its common PyTorch port.

    Args:
        channels: Channels of the input (= output).
        inter_channels: Embedding channels; default ``channels // 2`` (at least 1).
        sub_sample: Max-pool keys and values by 2×2 (skipped along an axis of length 1).

    Shape:
        ``[batch, channels, F, T]`` → ``[batch, channels, F, T]``. The attention matrix is
        ``[batch, F·T, F·T]`` (``F·T / 4`` keys with ``sub_sample``), so place blocks after the
        spectrogram has been pooled a few times.
    """

    def __init__(
        self, channels: int, inter_channels: int | None = None, sub_sample: bool = True
    ) -> None:
        super().__init__()
        self.channels = channels
        self.inter_channels = inter_channels or max(1, channels // 2)
        self.sub_sample = sub_sample
        self.g = nn.Conv2d(channels, self.inter_channels, 1)
        self.theta = nn.Conv2d(channels, self.inter_channels, 1)
        self.phi = nn.Conv2d(channels, self.inter_channels, 1)
        self.W = nn.Sequential(
            nn.Conv2d(self.inter_channels, channels, 1), nn.BatchNorm2d(channels)
        )
        nn.init.zeros_(self.W[1].weight)
        nn.init.zeros_(self.W[1].bias)

    def _pool(self, x: torch.Tensor) -> torch.Tensor:
        if not self.sub_sample:
            return x
        kernel = (2 if x.shape[-2] > 1 else 1, 2 if x.shape[-1] > 1 else 1)
        return nn.functional.max_pool2d(x, kernel) if kernel != (1, 1) else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, f, t = x.shape
        theta = self.theta(x).flatten(2).transpose(1, 2)  # [B, N, C']
        phi = self._pool(self.phi(x)).flatten(2)  # [B, C', M]
        g = self._pool(self.g(x)).flatten(2).transpose(1, 2)  # [B, M, C']
        attn = torch.softmax(theta @ phi, dim=-1)  # [B, N, M]
        y = (attn @ g).transpose(1, 2).reshape(b, self.inter_channels, f, t)
        return x + self.W(y)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, inter_channels={self.inter_channels}, sub_sample={self.sub_sample}"


def output_channels(module: nn.Module) -> int:
    """Output channels of a conv stage, read from its last ``Conv2d`` / ``BatchNorm2d``.

    That is the output width for the blocks of this package (``ConvBlock2d``, ``Res2d``,
    ``Res2dMP``, pre-activation stages), whose last channel-bearing layer produces the output.

    Raises:
        ValueError: if the module holds no ``Conv2d`` or ``BatchNorm2d``.
    """
    channels = None
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            channels = m.out_channels
        elif isinstance(m, nn.BatchNorm2d):
            channels = m.num_features
    if channels is None:
        raise ValueError(
            f"cannot infer the output channels of {type(module).__name__}; pass channels= explicitly"
        )
    return channels


def insert_nonlocal(
    backbone: nn.Module,
    after: Sequence[str],
    channels: Mapping[str, int] | None = None,
    sub_sample: bool = True,
) -> nn.Module:
    """Insert a :class:`NonLocal2d` after named submodules of a 2D CNN, in place.

    Each named submodule ``m`` is replaced by ``nn.Sequential(m, NonLocal2d(c))``, so its
    parameters move from ``name.*`` to ``name.0.*`` and the block's are ``name.1.*``. Because the
    block starts as the identity, the backbone's outputs are unchanged at insertion.

    Args:
        backbone: The module to modify (e.g. ``tagger.backbone``).
        after: Dotted submodule names, e.g. ``["layer2", "layer3"]``.
        channels: Output channels per name, where they cannot be read from the module (see
            :func:`output_channels`).
        sub_sample: Passed to :class:`NonLocal2d`.

    Returns:
        ``backbone`` (modified in place).

    Raises:
        ValueError: if a name is unknown or was already wrapped.
    """
    channels = dict(channels or {})
    for name in after:
        try:
            module = backbone.get_submodule(name)
        except AttributeError:
            known = [n for n, _ in backbone.named_children()]
            raise ValueError(
                f"no submodule {name!r} to follow with a non-local block; known: {known}"
            ) from None
        if isinstance(module, nn.Sequential) and any(isinstance(m, NonLocal2d) for m in module):
            raise ValueError(f"{name!r} already has a non-local block")
        c = channels.get(name) or output_channels(module)
        parent_name, _, attr = name.rpartition(".")
        parent = backbone.get_submodule(parent_name) if parent_name else backbone
        setattr(parent, attr, nn.Sequential(module, NonLocal2d(c, sub_sample=sub_sample)))
    return backbone
