"""``CRNNTagger``: the CRNN of Choi et al. (2017) on log-mel, as in Won et al. (2020)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..tagger import Tagger
from .base import preset_args
from .registry import ModelEntry, register_model

__all__ = ["CRNNTagger"]


class CRNNTagger(Tagger):
    """CRNN tagger: log-mel → 4 conv blocks → 2-layer GRU → last step → dropout → linear.

    With the defaults this is the published CRNN of Won et al. (2020) for ``n_tags=50``
    (394,100 parameters; 29-s input at 16 kHz, 96 HTK mel bands, BatchNorm on the dB spectrogram).

    Args:
        n_tags: Number of output tags.
        n_mels: Mel bands of the frontend.
        channels: Output channels of the four conv blocks.
        pools: Max-pool ``(freq, time)`` after each conv block.
        gru_hidden: GRU hidden size (= embedding size).
        gru_layers: Stacked GRU layers.
        freq_reduce: ``"max"`` (published) or ``"flatten"`` frequency into the GRU input; see
            :class:`~musictag.models.crnn.CRNN`.
        readout: ``"last"`` GRU step (published) or ``"mean_max"`` over time.
        sample_rate: Input sample rate in Hz.
        crop_samples: Input length in samples.
        frontend_kwargs: Further :class:`~musictag.frontend.LogMelFrontend` settings.
        **kwargs: Any other :class:`~musictag.tagger.Tagger` argument (``lr``, ``tags``, ``loss`` ...).

    Example:
        >>> import torch
        >>> model = CRNNTagger(n_tags=50)
        >>> model(torch.randn(2, 464000)).shape
        torch.Size([2, 50])
    """

    BACKBONE = "crnn"
    FRONTEND = "logmel"

    def __init__(
        self,
        n_tags: int = 50,
        n_mels: int = 96,
        channels: Sequence[int] = (64, 128, 128, 128),
        pools: Sequence[Sequence[int]] = ((2, 2), (3, 3), (4, 4), (4, 4)),
        gru_hidden: int = 32,
        gru_layers: int = 2,
        freq_reduce: str = "max",
        readout: str = "last",
        sample_rate: int = 16000,
        crop_samples: int = 464000,
        frontend_kwargs: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        args, backbone = preset_args(CRNNTagger, locals())
        super().__init__(
            self.BACKBONE, frontend=self.FRONTEND, backbone_kwargs=backbone, **args, **kwargs
        )
        self.save_preset_hyperparameters()


register_model(
    ModelEntry(
        name="crnn",
        tagger=CRNNTagger,
        paper="Choi et al. 2017, Convolutional recurrent neural networks for music classification",
        published={
            "mtat_roc_auc": 0.8722,
            "mtat_pr_auc": 0.3625,
            "msd_roc_auc": 0.8499,
            "msd_pr_auc": 0.2469,
            "jamendo_roc_auc": 0.7978,
            "jamendo_pr_auc": 0.2358,
        },
        reference_params=394_100,
    )
)
