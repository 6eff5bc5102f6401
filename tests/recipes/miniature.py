"""Miniature shard collections for the recipe, DDP, resume and fine-tuning tests.

:func:`write_miniature` writes a few seconds of noise per split into shards whose manifest looks
like the real collection's: the same number of tags, single- or multi-label
(``provenance.options.single_label``). :func:`write_synth` writes the learnable synthetic
collection of ``musictag.data.sources.synth``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from musictag.data.shards import AudioItem, write_shards

SR = 8000


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Run tiny models on one thread: faster, and far faster on a busy machine (no OpenMP
    threads spinning against other processes). Import it into a test module to use it there."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def write_miniature(
    out: Path,
    n_tags: int,
    *,
    single_label: bool = False,
    n_tracks: dict[str, int] | None = None,
    seconds: float = 1.0,
    sample_rate: int = SR,
    per_shard: int = 4,
    tags_per_track: int | None = None,
    seed: int = 0,
) -> Path:
    """Write a noise collection with ``n_tags`` tags, every tag on a training track.

    Args:
        out: Output folder (shards + ``manifest.json``); audio goes to ``out/../<name>-wav``.
        n_tags: Tags of the collection (``genre_000`` ...).
        single_label: One tag per track, recorded in the manifest like GTZAN.
        n_tracks: Tracks per split (default: train 8, or ``n_tags`` if single-label and more;
            val 4; test 4).
        seconds: Track length.
        sample_rate: Sample rate of audio and shards.
        per_shard: Tracks per shard.
        tags_per_track: Tags of a multi-label track (default: enough to cover every tag).
        seed: Noise seed.

    Returns:
        ``out``.
    """
    n_train = max(8, n_tags) if single_label else 8
    n_tracks = n_tracks or {"train": n_train, "val": 4, "test": 4}
    rng = np.random.default_rng(seed)
    names = [f"genre_{i:03d}" for i in range(n_tags)]
    wav = out.parent / f"{out.name}-wav"
    wav.mkdir(parents=True, exist_ok=True)
    k = 1 if single_label else tags_per_track or max(2, -(-n_tags // n_tracks["train"]))
    splits = {}
    for split, n in n_tracks.items():
        items = []
        for i in range(n):
            path = wav / f"{split}{i:03d}.wav"
            sf.write(path, rng.uniform(-0.5, 0.5, int(seconds * sample_rate)), sample_rate)
            tags = tuple(names[(i * k + j) % n_tags] for j in range(k))
            items.append(AudioItem(path, tags=tags, track_id=f"{split}{i:03d}"))
        splits[split] = items
    options = {"single_label": single_label, "sample_rate": sample_rate}
    write_shards(
        splits,
        out,
        sample_rate=sample_rate,
        max_samples_per_shard=per_shard,
        progress=False,
        provenance={"source": "miniature", "options": options, "tags": names},
    )
    return out


def write_synth(
    out: Path,
    n_clips: int = 160,
    *,
    seconds: float = 2.0,
    sample_rate: int = SR,
    per_shard: int = 16,
    seed: int = 0,
    split_fractions: tuple[float, float, float] = (0.7, 0.15, 0.15),
) -> Path:
    """Write the synthetic collection (``musictag.data.sources.synth``) into shards at ``out``."""
    from musictag.data.sources.synth import generate_collection, load_labels

    labels = generate_collection(
        out.parent / f"{out.name}-audio",
        n_clips,
        seconds,
        sample_rate,
        seed=seed,
        split_fractions=split_fractions,
    )
    write_shards(
        load_labels(labels),
        out,
        sample_rate=sample_rate,
        max_samples_per_shard=per_shard,
        progress=False,
        provenance={"source": "synth", "seed": seed, "n_clips": n_clips},
    )
    return out
