"""Shared by the ``musictag train`` ablations: a development set's splits, read once, and how
they are scored (the instrument tags only; the tempo tags are trained but not scored)."""

from __future__ import annotations

from dataclasses import dataclass

from musictag.data.shards import load_manifest
from musictag.training.data import TrackSet, choose_window, load_split, train_vocab

TEMPO = ("fast", "slow")


@dataclass
class DevSet:
    tags: list[str]
    keep: list[int]  # columns of the scored (instrument) tags
    sample_rate: int
    splits: dict[str, TrackSet]
    crop: int
    crops: int


def load_dev_set(shards: str) -> DevSet:
    """Train, val and test splits of a shard set, with ``musictag train``'s crop settings."""
    vocab = train_vocab(shards)
    tags = list(vocab.tags)
    keep = [i for i, t in enumerate(tags) if t not in TEMPO]
    sr = int(load_manifest(shards)["sample_rate"])
    splits = {s: load_split(shards, s, vocab) for s in ("train", "val", "test")}
    crop, k = choose_window([len(w) for w in splits["train"].waves], sr)
    return DevSet(tags, keep, sr, splits, crop, k)
