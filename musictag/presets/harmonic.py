"""``HarmonicCNNTagger``: the Harmonic CNN of Won et al. (2020) with its learnable harmonic frontend."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

from ..tagger import Tagger
from .base import preset_args
from .registry import ModelEntry, register_model

__all__ = ["HarmonicCNNTagger"]


class HarmonicCNNTagger(Tagger):
    """Harmonic CNN tagger: harmonic STFT (learnable bandwidth) → dB → BN → residual CNN →
    global max → Linear → BN → ReLU (embedding) → dropout → linear.

    With the defaults this is the published ``HarmonicCNN`` of Won et al. (2020) for ``n_tags=50``
    (3,631,551 parameters; 80,000-sample (5-s) input at 16 kHz, n_fft 512, 6 harmonics,
    2 filters per semitone from C1, learnable ``Q``).

    The harmonic frontend is the backbone's first layer (``backbone.hstft``, ``backbone.hstft_bn``,
    as published, so the published state_dict names map 1:1) and its settings are backbone
    settings; the Tagger frontend is ``"waveform"`` (identity).

    Args:
        n_tags: Number of output tags.
        n_channels: Channels of the first CNN layers (doubled from ``layer5``; embedding
            ``2 * n_channels``).
        n_harmonic: Number of harmonics.
        semitone_scale: Filters per semitone.
        learn_bw: ``"only_Q"`` (learnable bandwidth factor, as published) or ``"fix"``.
        n_fft: FFT size of the harmonic STFT.
        hop_length: Hop of the harmonic STFT; ``None``: ``n_fft // 2``.
        bw_Q: Initial bandwidth factor ``Q`` of the harmonic filters.
        amin: Floor before the logarithm.
        nonlocal_after: Backbone stages to follow with a non-local block (e.g. ``["layer4"]``).
        sample_rate: Input sample rate in Hz.
        crop_samples: Input length in samples.
        frontend_kwargs: Deprecated: the harmonic STFT's ``hop_length``, ``bw_Q``, ``amin``, as
            musictag < 0.2 took them (old checkpoints still hold them here).
        **kwargs: Any other :class:`~musictag.tagger.Tagger` argument.

    Example:
        >>> import torch
        >>> model = HarmonicCNNTagger(n_tags=50)
        >>> model(torch.randn(2, 80000)).shape
        torch.Size([2, 50])
    """

    BACKBONE = "harmonic_cnn"
    FRONTEND = "waveform"

    def __init__(
        self,
        n_tags: int = 50,
        n_channels: int = 128,
        n_harmonic: int = 6,
        semitone_scale: int = 2,
        learn_bw: str = "only_Q",
        n_fft: int = 512,
        hop_length: int | None = None,
        bw_Q: float = 1.0,
        amin: float = 1e-10,
        nonlocal_after: Sequence[str] = (),
        sample_rate: int = 16000,
        crop_samples: int = 80000,
        frontend_kwargs: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if frontend_kwargs:  # musictag < 0.2 took the harmonic STFT's settings here
            warnings.warn(
                "HarmonicCNNTagger: pass hop_length, bw_Q and amin by name, not in frontend_kwargs",
                DeprecationWarning,
                stacklevel=2,
            )
            hop_length = frontend_kwargs.get("hop_length", hop_length)
            bw_Q = frontend_kwargs.get("bw_Q", bw_Q)
            amin = frontend_kwargs.get("amin", amin)
            frontend_kwargs = None
        args, backbone = preset_args(HarmonicCNNTagger, locals())
        super().__init__(
            self.BACKBONE, frontend=self.FRONTEND, backbone_kwargs=backbone, **args, **kwargs
        )
        self.save_preset_hyperparameters()


register_model(
    ModelEntry(
        name="harmonic_cnn",
        tagger=HarmonicCNNTagger,
        paper="Won et al. 2020, Data-driven harmonic filters for audio representation learning",
        published={
            "mtat_roc_auc": 0.9127,
            "mtat_pr_auc": 0.4611,
            "msd_roc_auc": 0.8898,
            "msd_pr_auc": 0.3298,
            "jamendo_roc_auc": 0.8322,
            "jamendo_pr_auc": 0.2956,
        },
        reference_params=3_631_551,
    )
)
