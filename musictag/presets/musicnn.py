"""``MusicnnTagger``: the musically motivated tagger of Pons et al. (2018), as in Won et al. (2020)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..tagger import Tagger
from .base import preset_args
from .registry import ModelEntry, register_model

__all__ = ["MusicnnTagger"]


class MusicnnTagger(Tagger):
    """Musicnn tagger: log-mel → vertical + horizontal filters → dense residual 1D back end →
    max + mean pooling → dense → BN → ReLU (embedding) → dropout → linear.

    With the defaults this is the published ``Musicnn(dataset='mtat')`` of Won et al. (2020) for
    ``n_tags=50`` (784,300 parameters; 3-s input at 16 kHz, 96 HTK mel bands, BatchNorm on the dB
    spectrogram); ``backend_channels=512, embed_dim=500`` is the MSD-size model (7,972,000).

    Args:
        n_tags: Number of output tags.
        n_mels: Mel bands of the frontend; the vertical filter heights follow it.
        backend_channels: Back-end width (64 for MTAT/Jamendo, 512 for MSD).
        embed_dim: Dense layer size = embedding size (200 for MTAT/Jamendo, 500 for MSD).
        vertical_heights: Heights of the vertical filters; ``None``: ``int(0.7·n_mels)``,
            ``int(0.4·n_mels)``.
        vertical_width: Width of the vertical filters in frames.
        vertical_filters: Filters per vertical shape.
        horizontal_lengths: Lengths of the horizontal filters in frames.
        horizontal_filters: Filters per horizontal length.
        backend_kernel: Kernel size of the back-end convolutions.
        sample_rate: Input sample rate in Hz.
        crop_samples: Input length in samples (48,000 = 3 s, the published length).
        frontend_kwargs: Further :class:`~musictag.frontend.LogMelFrontend` settings.
        **kwargs: Any other :class:`~musictag.tagger.Tagger` argument (``lr``, ``tags``, ``loss`` ...).

    Example:
        >>> import torch
        >>> model = MusicnnTagger(n_tags=50)
        >>> model(torch.randn(2, 48000)).shape
        torch.Size([2, 50])
    """

    BACKBONE = "musicnn"
    FRONTEND = "logmel"

    def __init__(
        self,
        n_tags: int = 50,
        n_mels: int = 96,
        backend_channels: int = 64,
        embed_dim: int = 200,
        vertical_heights: Sequence[int] | None = None,
        vertical_width: int = 7,
        vertical_filters: int = 204,
        horizontal_lengths: Sequence[int] = (129, 65, 33),
        horizontal_filters: int = 51,
        backend_kernel: int = 7,
        sample_rate: int = 16000,
        crop_samples: int = 48000,
        frontend_kwargs: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        args, backbone = preset_args(MusicnnTagger, locals())
        super().__init__(
            self.BACKBONE, frontend=self.FRONTEND, backbone_kwargs=backbone, **args, **kwargs
        )
        self.save_preset_hyperparameters()


_PAPER = "Pons et al. 2018, End-to-end learning for music audio tagging at scale"

register_model(
    ModelEntry(
        name="musicnn",
        tagger=MusicnnTagger,
        paper=_PAPER + " (Won et al. 2020 variant, MTAT/Jamendo size)",
        published={
            "mtat_roc_auc": 0.9106,
            "mtat_pr_auc": 0.4493,
            "jamendo_roc_auc": 0.8226,
            "jamendo_pr_auc": 0.2713,
        },
        reference_params=784_300,
    )
)

register_model(
    ModelEntry(
        name="musicnn_msd",
        tagger=MusicnnTagger,
        kwargs={"backend_channels": 512, "embed_dim": 500},
        paper=_PAPER + " (Won et al. 2020 variant, MSD size)",
        published={"msd_roc_auc": 0.8803, "msd_pr_auc": 0.2983},
        reference_params=7_972_000,
    )
)
