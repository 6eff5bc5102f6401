"""``ResNetTagger``: a pre-activation ResNet on log-mel with elongated pooling and dropout."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..tagger import Tagger
from .base import preset_args
from .registry import ModelEntry, register_model

__all__ = ["ResNetTagger"]


class ResNetTagger(Tagger):
    """ResNet tagger: 128-band log-mel → 3×3 stem → pre-activation residual stages, each followed
    by an elongated max-pool and dropout → BN → ReLU → global pooling (embedding) → dropout → linear.

    A CIFAR-10-style ResNetV2 adapted to spectrograms (as in the mxnet-audio classifiers): the
    default pools ``(2, 4), (2, 4), (2, 4), (4, 2)`` shrink the long time axis of a 10-s crop
    (626 frames) faster than frequency. No published reference implementation; with the defaults
    it has 2,806,420 parameters for 50 tags.

    Args:
        n_tags: Number of output tags.
        n_mels: Mel bands of the frontend.
        channels: Width of each stage.
        blocks: Pre-activation blocks per stage.
        pools: Max-pool ``(freq, time)`` after each stage.
        dropout: Dropout after each stage.
        pooling: Global pooling: ``"mean"``, ``"max"`` or ``"meanmax"``.
        nonlocal_after: Stages to follow with a non-local block (e.g. ``["layer2", "layer3"]``).
        sample_rate: Input sample rate in Hz.
        crop_samples: Input length in samples.
        frontend_kwargs: Further :class:`~musictag.frontend.LogMelFrontend` settings.
        **kwargs: Any other :class:`~musictag.tagger.Tagger` argument.

    Example:
        >>> import torch
        >>> model = ResNetTagger(n_tags=50)
        >>> model(torch.randn(2, 160000)).shape
        torch.Size([2, 50])
    """

    BACKBONE = "resnet"
    FRONTEND = "logmel"

    def __init__(
        self,
        n_tags: int = 50,
        n_mels: int = 128,
        channels: Sequence[int] = (32, 64, 128, 256),
        blocks: Sequence[int] = (2, 2, 2, 2),
        pools: Sequence[Sequence[int]] = ((2, 4), (2, 4), (2, 4), (4, 2)),
        dropout: float = 0.1,
        pooling: str = "mean",
        nonlocal_after: Sequence[str] = (),
        sample_rate: int = 16000,
        crop_samples: int = 160000,
        frontend_kwargs: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        args, backbone = preset_args(ResNetTagger, locals())
        super().__init__(
            self.BACKBONE, frontend=self.FRONTEND, backbone_kwargs=backbone, **args, **kwargs
        )
        self.save_preset_hyperparameters()


register_model(
    ModelEntry(
        name="resnet",
        tagger=ResNetTagger,
        paper="He et al. 2016, Identity mappings in deep residual networks (ResNetV2), on log-mel",
    )
)
