"""In-memory track sets for ``musictag train``: splits of a shard set read once, and their hash.

The collections ``musictag train`` is made for (a user's own tagged music: hundreds to a few
thousand tracks) fit in memory once decoded, so every split is read once and training never
decodes audio again.
"""

from __future__ import annotations

import hashlib
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data.shards import MANIFEST_NAME, load_manifest, shard_urls
from ..data.vocab import TagVocab
from ..evaluation import iter_split_tracks

__all__ = ["TrackSet", "choose_window", "load_split", "manifest_hash", "train_vocab"]

log = logging.getLogger(__name__)


@dataclass
class TrackSet:
    """The tracks of one split.

    Attributes:
        keys: Track keys.
        waves: Waveforms, ``[samples]`` float32 each.
        targets: ``[tracks, n_tags]`` float32 multi-hot.
        n_failed: Tracks (or shards) that could not be read.
    """

    keys: list[str]
    waves: list[np.ndarray]
    targets: np.ndarray
    n_failed: int = 0

    def __len__(self) -> int:
        return len(self.keys)


def train_vocab(shard_dir: str | Path) -> TagVocab:
    """Every tag of the training split (by descending count), the output tags of the model."""
    manifest = load_manifest(shard_dir)
    split = manifest["splits"].get("train")
    if split is None:
        raise ValueError(f"{shard_dir}: no train split (it has {sorted(manifest['splits'])})")
    return TagVocab.from_counts(split.get("tag_counts", {}))


def load_split(shard_dir: str | Path, split: str, vocab: TagVocab) -> TrackSet:
    """Decode every track of one split into memory; unreadable tracks are skipped and counted."""
    manifest = load_manifest(shard_dir)
    if split not in manifest["splits"]:
        raise ValueError(f"{shard_dir}: no {split} split (it has {sorted(manifest['splits'])})")
    keys, waves, targets = [], [], []
    skipped: list[Exception] = []
    for info, wave in iter_split_tracks(shard_dir, split, skipped):
        keys.append(f"{split}/{info['key']}")
        waves.append(wave.astype(np.float32, copy=False))
        targets.append(vocab.encode(info["tags"]))
    if not keys:
        raise ValueError(f"{shard_dir}: no readable track in the {split} split")
    return TrackSet(keys, waves, np.stack(targets), len(skipped))


def manifest_hash(shard_dir: str | Path) -> str:
    """SHA-256 of the manifest and of each shard's name, size and modification time.

    Rewriting or resuming the shards changes it, so cached features of the old shards are not
    reused.
    """
    manifest = load_manifest(shard_dir)
    h = hashlib.sha256((Path(manifest["_dir"]) / MANIFEST_NAME).read_bytes())
    for split in sorted(manifest["splits"]):
        for url in shard_urls(manifest, split):
            st = Path(url).stat()
            h.update(f"{Path(url).name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()


def choose_window(
    lengths: list[int], sample_rate: int, max_seconds: float = 10.0
) -> tuple[int, int]:
    """Crop length and evaluation crops that suit the clips: no padding of short clips.

    Args:
        lengths: Track lengths in samples.
        sample_rate: Sample rate in Hz.
        max_seconds: Longest crop.

    Returns:
        ``(crop_samples, eval_crops)``: the median track length capped at ``max_seconds``, and
        enough crops to cover a median track (at most 8).
    """
    median = int(np.median(lengths))
    crop = max(sample_rate, min(median, int(max_seconds * sample_rate)))
    return crop, int(min(8, max(1, math.ceil(median / crop))))
