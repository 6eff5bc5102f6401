"""``CNNSATagger``: the CNN + self-attention tagger of Won et al. (2019)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..tagger import Tagger
from .base import preset_args
from .registry import ModelEntry, register_model

__all__ = ["CNNSATagger"]

_STRIDES = ((2, 2), (2, 2), (2, 2), (2, 1), (2, 1), (2, 1), (2, 1))
_CHANNELS = (128, 128, 256, 256, 256, 256, 256)


class CNNSATagger(Tagger):
    """CNN + self-attention tagger: 128-band log-mel → 7 residual blocks → frame tokens + [CLS] →
    2-layer BERT encoder → BERT pooler (embedding) → dropout → linear.

    With the defaults this is the published ``CNNSA`` of Won et al. (2019/2020) for ``n_tags=50``
    (10,521,652 parameters; 240,000-sample (15-s) input at 16 kHz, 128 mel bands, 118 frame tokens
    + [CLS]; no position embeddings, as published).

    Args:
        n_tags: Number of output tags.
        n_mels: Mel bands of the frontend.
        channels: Output channels of the residual blocks (the last is the attention width).
        strides: ``(freq, time)`` stride of each residual block.
        heads: Attention heads.
        layers: Encoder layers.
        intermediate: Feed-forward size of the encoder.
        hidden_dropout: Encoder hidden dropout.
        attention_dropout: Encoder attention-probability dropout.
        position_embeddings: Add BERT-style learned position embeddings (not published).
        max_positions: Number of learned positions (tokens including [CLS]).
        nonlocal_after: CNN stages to follow with a non-local block (e.g. ``["layer4"]``).
        sample_rate: Input sample rate in Hz.
        crop_samples: Input length in samples.
        frontend_kwargs: Further :class:`~musictag.frontend.LogMelFrontend` settings.
        **kwargs: Any other :class:`~musictag.tagger.Tagger` argument.

    Example:
        >>> import torch
        >>> model = CNNSATagger(n_tags=50)
        >>> model(torch.randn(2, 240000)).shape
        torch.Size([2, 50])
    """

    BACKBONE = "cnnsa"
    FRONTEND = "logmel"

    def __init__(
        self,
        n_tags: int = 50,
        n_mels: int = 128,
        channels: Sequence[int] = _CHANNELS,
        strides: Sequence[Sequence[int]] = _STRIDES,
        heads: int = 8,
        layers: int = 2,
        intermediate: int = 1024,
        hidden_dropout: float = 0.4,
        attention_dropout: float = 0.5,
        position_embeddings: bool = False,
        max_positions: int = 700,
        nonlocal_after: Sequence[str] = (),
        sample_rate: int = 16000,
        crop_samples: int = 240000,
        frontend_kwargs: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        args, backbone = preset_args(CNNSATagger, locals())
        super().__init__(
            self.BACKBONE, frontend=self.FRONTEND, backbone_kwargs=backbone, **args, **kwargs
        )
        self.save_preset_hyperparameters()


register_model(
    ModelEntry(
        name="cnnsa",
        tagger=CNNSATagger,
        paper="Won et al. 2019, Toward interpretable music tagging with self-attention",
        published={
            "mtat_roc_auc": 0.9077,
            "mtat_pr_auc": 0.4445,
            "msd_roc_auc": 0.8810,
            "msd_pr_auc": 0.3103,
            "jamendo_roc_auc": 0.8261,
            "jamendo_pr_auc": 0.2883,
        },
        reference_params=10_521_652,
    )
)
