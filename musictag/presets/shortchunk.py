"""``ShortChunkCNNTagger`` and ``ShortChunkResNetTagger``: the short-chunk taggers of Won et al. (2020)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..tagger import Tagger
from .base import preset_args
from .registry import ModelEntry, register_model

__all__ = ["ShortChunkCNNTagger", "ShortChunkResNetTagger"]

_PAPER = "Won et al. 2020, Evaluation of CNN-based automatic music tagging models"
_CHANNELS = (128, 128, 256, 256, 256, 256, 512)


class ShortChunkCNNTagger(Tagger):
    """Short-chunk CNN tagger: 128-band log-mel → 7 conv blocks (3×3, pool 2) → global max →
    Linear → BN → ReLU (embedding) → dropout → linear.

    With the defaults this is the published ``ShortChunkCNN`` of Won et al. (2020) for
    ``n_tags=50`` (3,687,348 parameters; 59,049-sample (3.69-s) input at 16 kHz, 128 HTK mel bands
    up to 8 kHz, BatchNorm on the dB spectrogram).

    Args:
        n_tags: Number of output tags.
        n_mels: Mel bands of the frontend.
        channels: Output channels of the conv blocks.
        embed_dim: Size of the embedding (``dense1``).
        nonlocal_after: Backbone stages to follow with a non-local block (e.g. ``["layer3"]``);
            see :func:`~musictag.models.nonlocal_block.insert_nonlocal`.
        sample_rate: Input sample rate in Hz.
        crop_samples: Input length in samples.
        frontend_kwargs: Further :class:`~musictag.frontend.LogMelFrontend` settings.
        **kwargs: Any other :class:`~musictag.tagger.Tagger` argument (``lr``, ``tags``, ``loss`` ...).

    Example:
        >>> import torch
        >>> model = ShortChunkCNNTagger(n_tags=50)
        >>> model(torch.randn(2, 59049)).shape
        torch.Size([2, 50])
    """

    BACKBONE = "short_chunk_cnn"
    FRONTEND = "logmel"

    def __init__(
        self,
        n_tags: int = 50,
        n_mels: int = 128,
        channels: Sequence[int] = _CHANNELS,
        embed_dim: int = 512,
        nonlocal_after: Sequence[str] = (),
        sample_rate: int = 16000,
        crop_samples: int = 59049,
        frontend_kwargs: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        args, backbone = preset_args(ShortChunkCNNTagger, locals())
        super().__init__(
            self.BACKBONE, frontend=self.FRONTEND, backbone_kwargs=backbone, **args, **kwargs
        )
        self.save_preset_hyperparameters()


class ShortChunkResNetTagger(Tagger):
    """Short-chunk ResNet tagger: 128-band log-mel → 7 residual blocks (stride 2) → global max →
    Linear → BN → ReLU (embedding) → dropout → linear.

    With the defaults this is the published ``ShortChunkCNN_Res`` of Won et al. (2020) for
    ``n_tags=50`` (12,104,244 parameters; 59,049-sample input at 16 kHz, 128 mel bands).

    Args:
        n_tags: Number of output tags.
        n_mels: Mel bands of the frontend.
        channels: Output channels of the residual blocks.
        embed_dim: Size of the embedding (``dense1``).
        nonlocal_after: Backbone stages to follow with a non-local block (e.g.
            ``["layer2", "layer3"]``); see :func:`~musictag.models.nonlocal_block.insert_nonlocal`.
        sample_rate: Input sample rate in Hz.
        crop_samples: Input length in samples.
        frontend_kwargs: Further :class:`~musictag.frontend.LogMelFrontend` settings.
        **kwargs: Any other :class:`~musictag.tagger.Tagger` argument.

    Example:
        >>> import torch
        >>> model = ShortChunkResNetTagger(n_tags=50)
        >>> model(torch.randn(2, 59049)).shape
        torch.Size([2, 50])
    """

    BACKBONE = "short_chunk_resnet"
    FRONTEND = "logmel"

    def __init__(
        self,
        n_tags: int = 50,
        n_mels: int = 128,
        channels: Sequence[int] = _CHANNELS,
        embed_dim: int = 512,
        nonlocal_after: Sequence[str] = (),
        sample_rate: int = 16000,
        crop_samples: int = 59049,
        frontend_kwargs: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        args, backbone = preset_args(ShortChunkResNetTagger, locals())
        super().__init__(
            self.BACKBONE, frontend=self.FRONTEND, backbone_kwargs=backbone, **args, **kwargs
        )
        self.save_preset_hyperparameters()


register_model(
    ModelEntry(
        name="short_chunk_cnn",
        tagger=ShortChunkCNNTagger,
        paper=_PAPER,
        published={
            "mtat_roc_auc": 0.9126,
            "mtat_pr_auc": 0.4590,
            "msd_roc_auc": 0.8883,
            "msd_pr_auc": 0.3251,
            "jamendo_roc_auc": 0.8324,
            "jamendo_pr_auc": 0.2976,
        },
        reference_params=3_687_348,
    )
)

register_model(
    ModelEntry(
        name="short_chunk_resnet",
        tagger=ShortChunkResNetTagger,
        paper=_PAPER,
        published={
            "mtat_roc_auc": 0.9129,
            "mtat_pr_auc": 0.4614,
            "msd_roc_auc": 0.8898,
            "msd_pr_auc": 0.3280,
            "jamendo_roc_auc": 0.8316,
            "jamendo_pr_auc": 0.2951,
        },
        reference_params=12_104_244,
    )
)

register_model(
    ModelEntry(
        name="short_chunk_resnet_nonlocal",
        tagger=ShortChunkResNetTagger,
        kwargs={"nonlocal_after": ["layer2", "layer3"]},
        paper=_PAPER + "; non-local blocks: Wang et al. 2018, Non-local neural networks",
    )
)
