"""``FCNTagger``: the fully convolutional tagger of Choi et al. (2016), as in Won et al. (2020)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..tagger import Tagger
from .base import preset_args
from .registry import ModelEntry, register_model

__all__ = ["FCNTagger"]


class FCNTagger(Tagger):
    """FCN tagger: log-mel → 5 conv blocks pooled to one cell → dropout → linear.

    With the defaults this is the published FCN of Won et al. (2020) for ``n_tags=50``
    (447,732 parameters; 29-s input at 16 kHz, 96 HTK mel bands, BatchNorm on the dB spectrogram).

    Args:
        n_tags: Number of output tags.
        n_mels: Mel bands of the frontend (96 published; 128 also pools to one cell).
        channels: Output channels of the conv blocks.
        pools: Max-pool ``(freq, time)`` after each conv block.
        sample_rate: Input sample rate in Hz.
        crop_samples: Input length in samples (464,000 = 29 s, the published length).
        frontend_kwargs: Further :class:`~musictag.frontend.LogMelFrontend` settings.
        **kwargs: Any other :class:`~musictag.tagger.Tagger` argument (``lr``, ``tags``, ``loss`` ...).

    Example:
        >>> import torch
        >>> model = FCNTagger(n_tags=50)
        >>> model(torch.randn(2, 464000)).shape
        torch.Size([2, 50])
    """

    BACKBONE = "fcn"
    FRONTEND = "logmel"

    def __init__(
        self,
        n_tags: int = 50,
        n_mels: int = 96,
        channels: Sequence[int] = (64, 128, 128, 128, 64),
        pools: Sequence[Sequence[int]] = ((2, 4), (2, 4), (2, 4), (3, 5), (4, 4)),
        sample_rate: int = 16000,
        crop_samples: int = 464000,
        frontend_kwargs: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        args, backbone = preset_args(FCNTagger, locals())
        super().__init__(
            self.BACKBONE, frontend=self.FRONTEND, backbone_kwargs=backbone, **args, **kwargs
        )
        self.save_preset_hyperparameters()


_PAPER = "Choi et al. 2016, Automatic tagging using deep convolutional neural networks"

register_model(
    ModelEntry(
        name="fcn",
        tagger=FCNTagger,
        paper=_PAPER,
        published={
            "mtat_roc_auc": 0.9005,
            "mtat_pr_auc": 0.4295,
            "msd_roc_auc": 0.8744,
            "msd_pr_auc": 0.2970,
            "jamendo_roc_auc": 0.8255,
            "jamendo_pr_auc": 0.2801,
        },
        reference_params=447_732,
    )
)

# 128 bands pool to 128 → 64 → 32 → 16 → 5 → 1 with the same pools: same parameter count
register_model(
    ModelEntry(
        name="fcn_128",
        tagger=FCNTagger,
        kwargs={"n_mels": 128},
        paper=_PAPER + " (128 mel bands, Won et al. 2020)",
        published={
            "mtat_roc_auc": 0.8994,
            "mtat_pr_auc": 0.4236,
            "msd_roc_auc": 0.8742,
            "msd_pr_auc": 0.2963,
            "jamendo_roc_auc": 0.8245,
            "jamendo_pr_auc": 0.2792,
        },
        reference_params=447_732,
    )
)
