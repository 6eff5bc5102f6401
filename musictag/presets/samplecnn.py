"""``SampleCNNTagger``: sample-level CNNs on the raw waveform (Lee et al. 2017; Kim et al. 2018)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..tagger import Tagger
from .base import preset_args
from .registry import ModelEntry, register_model

__all__ = ["SampleCNNTagger"]


class SampleCNNTagger(Tagger):
    """Sample-level CNN tagger: waveform → strided stem → 9 blocks (k=3, pool 3) → [1×1 block] →
    global max (or multi-level) pooling → [dense → BN → ReLU] → dropout → linear.

    With the defaults this is the published ``SampleCNN`` of Won et al. (2020) for ``n_tags=50``
    (1,869,874 parameters; 59,049-sample input at 16 kHz). ``block="rese", amplifying_ratio=1,
    fc=True`` is their ``SampleCNNSE`` (6,951,858 parameters), registered as ``samplecnn_se``.

    Args:
        n_tags: Number of output tags.
        block: ``"basic"``, ``"se"`` (basic + SE), ``"res"`` or ``"rese"`` (residual + SE).
        amplifying_ratio: SE hidden size as a multiple of the block width (16 in Kim et al. 2018;
            1 in Won et al.'s ``ResSE_1d``).
        multi_level: Concatenate the global max-pools of the last three layers (Kim et al. 2018).
        fc: Add ``dense1 → bn → ReLU`` of the same width before the head.
        final_conv: Add the 1×1 block after the pooled blocks (Won et al.; Kim et al. have none).
        channels: Output channels of the nine pooled blocks.
        stem_channels: Output channels of the strided stem.
        kernel_size: Kernel size of the stem and the pooled blocks.
        pool: Max-pool size (and stem stride) of the pooled blocks; the input length that pools to
            one frame is ``pool ** (len(channels) + 1)``.
        sample_rate: Input sample rate in Hz.
        crop_samples: Input length in samples (59,049 = 3^10, pooled to exactly one frame).
        frontend_kwargs: Further :class:`~musictag.frontend.WaveformFrontend` settings.
        **kwargs: Any other :class:`~musictag.tagger.Tagger` argument (``lr``, ``tags``, ``loss`` ...).

    Example:
        >>> import torch
        >>> model = SampleCNNTagger(n_tags=50)
        >>> model(torch.randn(2, 59049)).shape
        torch.Size([2, 50])
    """

    BACKBONE = "samplecnn"
    FRONTEND = "waveform"

    def __init__(
        self,
        n_tags: int = 50,
        block: str = "basic",
        amplifying_ratio: float = 16,
        multi_level: bool = False,
        fc: bool = False,
        final_conv: bool = True,
        channels: Sequence[int] = (128, 128, 256, 256, 256, 256, 256, 256, 512),
        stem_channels: int = 128,
        kernel_size: int = 3,
        pool: int = 3,
        sample_rate: int = 16000,
        crop_samples: int = 59049,
        frontend_kwargs: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        args, backbone = preset_args(SampleCNNTagger, locals())
        super().__init__(
            self.BACKBONE, frontend=self.FRONTEND, backbone_kwargs=backbone, **args, **kwargs
        )
        self.save_preset_hyperparameters()


_LEE = "Lee et al. 2017, Sample-level deep CNNs for music auto-tagging using raw waveforms"
_KIM = (
    "Kim, Lee & Nam 2018, Sample-level CNN architectures for music auto-tagging using raw waveforms"
)
# Kim et al.'s layout: no 1×1 block, dense → BN → ReLU before the head, SE amplifying ratio 16
_KIM_KW: dict[str, Any] = {"amplifying_ratio": 16, "fc": True, "final_conv": False}

register_model(
    ModelEntry(
        name="samplecnn",
        tagger=SampleCNNTagger,
        paper=_LEE + " (Won et al. 2020 SampleCNN)",
        published={
            "mtat_roc_auc": 0.9058,
            "mtat_pr_auc": 0.4422,
            "msd_roc_auc": 0.8789,
            "msd_pr_auc": 0.2959,
            "jamendo_roc_auc": 0.8208,
            "jamendo_pr_auc": 0.2742,
        },
        reference_params=1_869_874,
    )
)

# Won et al.'s "Sample-level + SE" (SampleCNNSE): residual SE blocks (ResSE_1d, whose excitation
# is Linear(C, C), i.e. amplifying ratio 1) in every layer, then Linear(512, 512) → BN → ReLU.
register_model(
    ModelEntry(
        name="samplecnn_se",
        tagger=SampleCNNTagger,
        kwargs={"block": "rese", "amplifying_ratio": 1, "fc": True},
        paper=_KIM + " (Won et al. 2020 SampleCNNSE: ResSE blocks, ratio 1)",
        published={
            "mtat_roc_auc": 0.9103,
            "mtat_pr_auc": 0.4520,
            "msd_roc_auc": 0.8838,
            "msd_pr_auc": 0.3109,
            "jamendo_roc_auc": 0.8233,
            "jamendo_pr_auc": 0.2784,
        },
        reference_params=6_951_858,
    )
)

register_model(
    ModelEntry(
        name="samplecnn_res",
        tagger=SampleCNNTagger,
        kwargs={"block": "res", **_KIM_KW},
        paper=_KIM + " (Res blocks)",
    )
)

register_model(
    ModelEntry(
        name="samplecnn_rese",
        tagger=SampleCNNTagger,
        kwargs={"block": "rese", **_KIM_KW},
        paper=_KIM + " (ReSE blocks, amplifying ratio 16)",
    )
)

register_model(
    ModelEntry(
        name="samplecnn_se_ml",
        tagger=SampleCNNTagger,
        kwargs={"block": "se", "multi_level": True, **_KIM_KW},
        paper=_KIM + " (SE blocks + multi-level feature aggregation)",
        published={"mtat_roc_auc": 0.9111},
    )
)

register_model(
    ModelEntry(
        name="samplecnn_rese_ml",
        tagger=SampleCNNTagger,
        kwargs={"block": "rese", "multi_level": True, **_KIM_KW},
        paper=_KIM + " (ReSE blocks + multi-level feature aggregation)",
        published={"mtat_roc_auc": 0.9113},
    )
)
