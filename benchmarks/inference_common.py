"""Shared by the inference benchmarks: the model under test and synthetic music files."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import soundfile as sf

from musictag.data.sources.synth import render_clip, sample_spec

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MUSICTAG_SHARED", REPO.parent / "shared"))
MODELS = ("mtat_musicnn", "mtat_fcn", "mtat_crnn")


def make_checkpoint(name: str, out_dir: Path) -> Path:
    """Convert the published ``<dataset>_<arch>`` weights (Won et al. 2020) into a checkpoint."""
    from musictag.pretrained import save_sota_checkpoint

    dataset, arch = name.split("_", 1)
    weights = SHARED / "pretrained" / "sota" / dataset / arch / "best_model.pth"
    if not weights.is_file():
        raise SystemExit(f"{weights} not found: set MUSICTAG_SHARED to the shared data folder")
    return save_sota_checkpoint(weights, arch, dataset, out_dir / f"{name}.ckpt")


def clips(n: int, seconds: float, rate: int, seed: int = 0) -> list[np.ndarray]:
    """``n`` different synthetic music clips (``musictag.data.sources.synth``), stereo ``[frames, 2]``."""
    out = []
    for i in range(n):
        x = render_clip(sample_spec(np.random.default_rng([seed, i]), i, seconds), rate)
        pan = 0.6 + 0.3 * (i % 3) / 2
        out.append((0.9 * np.stack([pan * x, (1.2 - pan) * x], axis=1)).astype(np.float32))
    return out


def write_long_file(path: Path, minutes: float, rate: int = 44100, fmt: str = "FLAC") -> Path:
    """A stereo file of ``minutes`` of music, written block by block (a few clips, cycled)."""
    loop = clips(6, 20.0, rate)
    total = int(minutes * 60 * rate)
    with sf.SoundFile(
        path, "w", rate, 2, format=fmt, subtype=None if fmt == "MP3" else "PCM_16"
    ) as f:
        written, i = 0, 0
        while written < total:
            block = loop[i % len(loop)][: total - written]
            f.write(block)
            written += block.shape[0]
            i += 1
    return path
