"""``GRUTagger`` and ``TransformerTagger``: sequence taggers on log-mel frames (~700k parameters)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..tagger import Tagger
from .base import preset_args
from .registry import ModelEntry, register_model

__all__ = ["GRUTagger", "TransformerTagger"]

_REFERENCE = (
    "CVxTz/music_genre_classification (Transformer vs bidirectional GRU on mel frames, "
    "FMA-large, ~700k parameters)"
)


class GRUTagger(Tagger):
    """Bidirectional-GRU tagger on log-mel frames: each frame a token → linear projection →
    stacked bidirectional GRU → pooling over time → Linear → ReLU (embedding) → dropout → linear.

    Defaults (our choices, sized like the ~700k-parameter GRU of CVxTz/music_genre_classification):
    16 kHz, 128 HTK mel bands (n_fft 512, hop 256) with BatchNorm, 59,049-sample (3.69-s, 231-frame)
    crops, tokens of 128, 2 bidirectional layers of 128 units, mean pooling, a 512-d embedding.
    That is 726,309 parameters for 163 tags (668,340 for 50).

    Args:
        n_tags: Number of output tags.
        n_mels: Mel bands of the frontend (token features).
        d_model: Size of the projected tokens.
        hidden: GRU hidden size per direction.
        layers: Stacked GRU layers.
        bidirectional: Bidirectional GRU layers.
        dropout: Dropout on the tokens and between GRU layers.
        pooling: ``"mean"``, ``"max"`` or ``"attention"`` over time.
        mlp_dim: Embedding size (``Linear → ReLU`` after pooling); ``None`` or 0 to skip.
        sample_rate: Input sample rate in Hz.
        crop_samples: Input length in samples.
        frontend_kwargs: Further :class:`~musictag.frontend.LogMelFrontend` settings.
        **kwargs: Any other :class:`~musictag.tagger.Tagger` argument.

    Example:
        >>> import torch
        >>> model = GRUTagger(n_tags=163)
        >>> model(torch.randn(2, 59049)).shape
        torch.Size([2, 163])
    """

    BACKBONE = "gru"
    FRONTEND = "logmel"

    def __init__(
        self,
        n_tags: int = 50,
        n_mels: int = 128,
        d_model: int = 128,
        hidden: int = 128,
        layers: int = 2,
        bidirectional: bool = True,
        dropout: float = 0.1,
        pooling: str = "mean",
        mlp_dim: int | None = 512,
        sample_rate: int = 16000,
        crop_samples: int = 59049,
        frontend_kwargs: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        args, backbone = preset_args(GRUTagger, locals())
        super().__init__(
            self.BACKBONE, frontend=self.FRONTEND, backbone_kwargs=backbone, **args, **kwargs
        )
        self.save_preset_hyperparameters()


class TransformerTagger(Tagger):
    """Transformer-encoder tagger on log-mel frames: each frame a token → linear projection +
    positions → pre-LayerNorm Transformer encoder → pooling over time → Linear → ReLU (embedding)
    → dropout → linear.

    Defaults (our choices, sized like the ~700k-parameter Transformer of
    CVxTz/music_genre_classification: d_model 128, 4 layers, 8 heads, feed-forward 256):
    16 kHz, 128 HTK mel bands (n_fft 512, hop 256) with BatchNorm, 59,049-sample (3.69-s,
    231-frame) crops, sinusoidal positions, GELU, dropout 0.1, mean pooling, a 512-d embedding.
    That is 696,357 parameters for 163 tags (638,388 for 50).

    Args:
        n_tags: Number of output tags.
        n_mels: Mel bands of the frontend (token features).
        d_model: Token size.
        heads: Attention heads.
        layers: Encoder layers.
        dim_feedforward: Feed-forward size.
        dropout: Dropout in the encoder and on the input tokens.
        positional: ``"sinusoidal"``, ``"learned"`` or ``"none"``.
        max_len: Number of learned positions (``positional="learned"``).
        pooling: ``"mean"``, ``"max"``, ``"attention"`` or ``"cls"``.
        mlp_dim: Embedding size (``Linear → ReLU`` after pooling); ``None`` or 0 to skip.
        sample_rate: Input sample rate in Hz.
        crop_samples: Input length in samples.
        frontend_kwargs: Further :class:`~musictag.frontend.LogMelFrontend` settings.
        **kwargs: Any other :class:`~musictag.tagger.Tagger` argument.

    Example:
        >>> import torch
        >>> model = TransformerTagger(n_tags=163)
        >>> model(torch.randn(2, 59049)).shape
        torch.Size([2, 163])
    """

    BACKBONE = "transformer"
    FRONTEND = "logmel"

    def __init__(
        self,
        n_tags: int = 50,
        n_mels: int = 128,
        d_model: int = 128,
        heads: int = 8,
        layers: int = 4,
        dim_feedforward: int = 256,
        dropout: float = 0.1,
        positional: str = "sinusoidal",
        max_len: int = 2048,
        pooling: str = "mean",
        mlp_dim: int | None = 512,
        sample_rate: int = 16000,
        crop_samples: int = 59049,
        frontend_kwargs: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        args, backbone = preset_args(TransformerTagger, locals())
        super().__init__(
            self.BACKBONE, frontend=self.FRONTEND, backbone_kwargs=backbone, **args, **kwargs
        )
        self.save_preset_hyperparameters()


register_model(
    ModelEntry(
        name="gru",
        tagger=GRUTagger,
        paper=_REFERENCE,
        # the reference GRU's figure (micro PR-AUC, 163 genres, with crop averaging; 0.18 without)
        published={"fma_large_pr_auc_micro": 0.19},
    )
)

register_model(
    ModelEntry(
        name="transformer",
        tagger=TransformerTagger,
        paper=_REFERENCE,
        # the reference Transformer's figure (micro PR-AUC, 163 genres, with crop averaging; 0.20 without)
        published={"fma_large_pr_auc_micro": 0.22},
    )
)
