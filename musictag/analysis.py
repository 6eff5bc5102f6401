"""Looking inside a tagger: squeeze-and-excitation activations per tag (Kim, Lee & Nam 2018).

An SE block rescales each channel of its input by an *excitation* ``sigmoid(dense2(relu(dense1(
mean over time))))`` in (0, 1). Kim et al. (2018, Sample-level CNN architectures for music
auto-tagging using raw waveforms, Fig. 4) average the excitations of every block over the tracks
of a tag and compare tags: early blocks excite alike for every tag, the last blocks tell tags
apart. :class:`ExcitationRecorder` reads the excitations with forward hooks on each SE block's
``dense2`` (the model is not modified); :func:`collect_excitations` averages them per tag over
tracks (each track is the mean of its ``K`` evaluation crops), and
:func:`musictag.plots.plot_excitations` draws one subplot per block.

Works with every model whose SE blocks are :class:`~musictag.models.samplecnn.SqueezeExcitation1d`
(``block="se"``) or :class:`~musictag.models.samplecnn.ResBlock1d` with ``se=True`` (``"rese"``,
the ``samplecnn_se`` of the registry).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from .models.samplecnn import ResBlock1d, SqueezeExcitation1d
from .tta import extract_crops

if TYPE_CHECKING:
    from .tagger import Tagger

log = logging.getLogger(__name__)

__all__ = [
    "ExcitationRecorder",
    "ExcitationStats",
    "collect_excitations",
    "collect_excitations_from_shards",
    "se_layers",
]


def se_layers(model: nn.Module) -> dict[str, nn.Linear]:
    """The excitation layer (``dense2``, before its sigmoid) of every SE block, by block name.

    Args:
        model: A tagger or backbone.

    Returns:
        ``{"layer1": Linear, ...}`` in forward order (``backbone.`` and ``.se`` stripped from the
        module names).

    Raises:
        ValueError: if the model has no squeeze-and-excitation blocks.
    """
    out: dict[str, nn.Linear] = {}
    for name, module in model.named_modules():
        if isinstance(module, SqueezeExcitation1d) or (
            isinstance(module, ResBlock1d) and module.se
        ):
            short = name.removeprefix("backbone.").removesuffix(".se") or name
            out[short] = module.dense2
    if not out:
        raise ValueError(
            f"{type(model).__name__} has no squeeze-and-excitation blocks; use a SampleCNN with "
            'block="se" or "rese" (e.g. create_model("samplecnn_se"))'
        )
    return out


class ExcitationRecorder:
    """Context manager recording every SE block's excitations during forward passes.

    Example:
        >>> with ExcitationRecorder(model) as rec:
        ...     model(crops)
        >>> rec.excitations["layer3"].shape   # [batch, channels]

    Args:
        model: A model with SE blocks (see :func:`se_layers`).

    Attributes:
        excitations: Block name → excitations of the last forward pass, ``[batch, channels]``
            float32 on the CPU, in (0, 1).
    """

    def __init__(self, model: nn.Module) -> None:
        self.layers = se_layers(model)
        self.excitations: dict[str, torch.Tensor] = {}
        self._handles: list[Any] = []

    @property
    def blocks(self) -> list[str]:
        return list(self.layers)

    def __enter__(self) -> ExcitationRecorder:
        for name, layer in self.layers.items():
            self._handles.append(layer.register_forward_hook(self._hook(name)))
        return self

    def __exit__(self, *exc: Any) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def _hook(self, name: str) -> Any:
        def hook(module: nn.Module, inputs: Any, output: torch.Tensor) -> None:
            self.excitations[name] = torch.sigmoid(output.detach()).float().cpu()

        return hook


@dataclass
class ExcitationStats:
    """Excitations summed per tag over tracks.

    Attributes:
        tags: The tags tracks were grouped by.
        blocks: SE block names, in forward order.
        sums: Block → ``[n_tags, channels]`` sums of the per-track excitations.
        counts: ``[n_tags]`` tracks per tag.
        total: Block → ``[channels]`` sum over every track (tagged or not).
        n_tracks: Tracks seen.
        n_skipped: Damaged or undecodable tracks left out (shard sets only).
    """

    tags: list[str]
    blocks: list[str]
    sums: dict[str, np.ndarray]
    counts: np.ndarray
    total: dict[str, np.ndarray]
    n_tracks: int = 0
    n_skipped: int = 0

    def mean(self, block: str) -> np.ndarray:
        """Mean excitation per tag in one block, ``[n_tags, channels]`` (NaN for unseen tags)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.sums[block] / self.counts[:, None]

    def overall(self, block: str) -> np.ndarray:
        """Mean excitation over every track in one block, ``[channels]``."""
        return self.total[block] / max(1, self.n_tracks)


@torch.inference_mode()
def collect_excitations(
    model: Tagger,
    tracks: Iterable[tuple[np.ndarray | torch.Tensor, Sequence[str]]],
    tags: Sequence[str],
    crops: int | None = None,
    batch_size: int = 16,
) -> ExcitationStats:
    """Average SE excitations per tag over tracks (each track: the mean of its ``K`` crops).

    Args:
        model: A tagger with SE blocks (put in eval mode).
        tracks: ``(waveform [samples] at the model's rate, tags of the track)`` pairs.
        tags: Tags to group by; a track counts for each of them it carries.
        crops: Evenly spaced crops per track; default: the model's ``eval_crops``.
        batch_size: Crops per forward pass.

    Returns:
        The per-tag sums and counts (:meth:`ExcitationStats.mean` gives the means).
    """
    model.eval()
    k = int(crops or model.hparams.get("eval_crops", 16))
    tag_index = {t: i for i, t in enumerate(tags)}
    device = next(model.parameters()).device
    stats: ExcitationStats | None = None
    with ExcitationRecorder(model) as rec:
        for wave, track_tags in tracks:
            x = torch.as_tensor(np.asarray(wave, dtype=np.float32)).reshape(-1)
            clips = extract_crops(x, model.crop_samples, k).to(device)
            per_block: dict[str, list[torch.Tensor]] = {b: [] for b in rec.blocks}
            for i in range(0, k, batch_size):
                model(clips[i : i + batch_size])
                for b in rec.blocks:
                    per_block[b].append(rec.excitations[b])
            track = {b: torch.cat(v).mean(0).numpy() for b, v in per_block.items()}
            if stats is None:
                stats = ExcitationStats(
                    tags=list(tags),
                    blocks=rec.blocks,
                    sums={b: np.zeros((len(tags), v.size)) for b, v in track.items()},
                    counts=np.zeros(len(tags), dtype=np.int64),
                    total={b: np.zeros(v.size) for b, v in track.items()},
                )
            rows = sorted({tag_index[t] for t in track_tags if t in tag_index})
            for b, v in track.items():
                stats.total[b] += v
                for r in rows:
                    stats.sums[b][r] += v
            stats.counts[rows] += 1
            stats.n_tracks += 1
    if stats is None:
        raise ValueError("no tracks to analyse")
    return stats


def collect_excitations_from_shards(
    model: Tagger,
    shard_dir: str | Path,
    tags: Sequence[str] | None = None,
    split: str | None = None,
    crops: int | None = None,
    max_tracks: int | None = None,
    top_tags: int = 5,
    batch_size: int = 16,
) -> ExcitationStats:
    """:func:`collect_excitations` over the tracks of a shard set, grouped by their true tags.

    Args:
        model: A tagger with SE blocks.
        shard_dir: Folder with ``manifest.json``.
        tags: Tags to group by; default: the ``top_tags`` most frequent tags of the split.
        split: Split to read; default: all splits.
        crops: Crops per track; default: the model's ``eval_crops``.
        max_tracks: Stop after this many tracks.
        top_tags: Number of tags when ``tags`` is not given.
        batch_size: Crops per forward pass.
    """
    from itertools import islice

    from .audio import to_mono_resampled
    from .data.shards import iter_shard_tracks, load_manifest

    if tags is None:
        manifest = load_manifest(shard_dir)
        counts = manifest["splits"][split]["tag_counts"] if split else manifest["tag_counts"]
        tags = [t for t, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))][:top_tags]
    sr = model.sample_rate
    skipped: list = []  # damaged tracks, each already logged with its shard and key
    tracks = (
        (to_mono_resampled(wave, rate, sr), info["tags"])
        for info, wave, rate in iter_shard_tracks(
            shard_dir, [split] if split else None, skipped=skipped
        )
    )
    stats = collect_excitations(
        model, islice(tracks, max_tracks), tags, crops=crops, batch_size=batch_size
    )
    stats.n_skipped = len(skipped)
    if skipped:
        log.warning("%d damaged or undecodable tracks were left out of the analysis", len(skipped))
    return stats
