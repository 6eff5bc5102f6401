"""Shared pieces of the speed benchmarks: a synthetic MP3 corpus, the machine, timing, tables.

The corpus stands in for a music collection as people download it (FMA, MTG-Jamendo): 44.1-kHz
stereo MP3 files with a few tags each. Its audio is music-like (harmonic notes on a beat grid, a
bass line and noise drums), so that the FLAC and MP3 codecs see realistic content rather than
silence or white noise. It is written once per settings into a work folder and reused.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from musictag.data.shards import AudioItem

TAGS = ("rock", "pop", "jazz", "electronic", "ambient", "hip-hop", "guitar", "piano")
SOURCE_SR = 44100
DEFAULT_WORK = Path(os.environ.get("MUSICTAG_BENCH_DIR", "/tmp/musictag-bench"))


def synth_track(seconds: float, sr: int, seed: int, channels: int = 2) -> np.ndarray:
    """Music-like audio: ``[frames, channels]`` float32 in about [-0.8, 0.8]."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * sr))
    t = np.arange(n, dtype=np.float64) / sr
    beat = 60.0 / rng.uniform(70, 170)
    phase = (t % beat) / beat  # position within the beat, 0..1
    beat_index = (t // beat).astype(np.int64)
    root = 110.0 * 2 ** (rng.integers(0, 12) / 12)
    steps = rng.choice([0, 3, 4, 5, 7, 9, 10, 12], size=beat_index.max() + 1)
    freq = root * 2 ** (steps[beat_index] / 12)
    pitch_phase = 2 * np.pi * np.cumsum(freq) / sr
    env = np.exp(-phase * rng.uniform(2, 6))
    lead = sum(np.sin(h * pitch_phase) / h for h in (1, 2, 3, 4)) * env
    bass = np.sin(pitch_phase / 4) * (0.5 + 0.5 * env)
    hits = (beat_index % 2 == 0) & (phase < 0.08)
    drums = rng.standard_normal(n) * hits * np.exp(-phase * 40)
    mono = 0.25 * lead + 0.25 * bass + 0.3 * drums
    pans = np.linspace(0.8, 1.2, channels)
    out = np.stack([mono * p + 0.01 * rng.standard_normal(n) for p in pans], axis=1)
    return np.clip(out, -0.9, 0.9).astype(np.float32)


def _write_mp3(args: tuple[str, float, int]) -> None:
    path, seconds, seed = args
    tmp = Path(path).with_suffix(".tmp.mp3")
    sf.write(tmp, synth_track(seconds, SOURCE_SR, seed), SOURCE_SR, format="MP3")
    os.replace(tmp, path)


def make_corpus(
    root: Path, n_files: int, seconds: float, workers: int = 2, log: Callable = print
) -> list[AudioItem]:
    """MP3 files ``root/mp3/{i:04d}.mp3`` (44.1 kHz stereo), written once; their items.

    Returns:
        One :class:`AudioItem` per file, with 1-3 tags from :data:`TAGS`.
    """
    folder = root / "mp3"
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{i:04d}.mp3" for i in range(n_files)]
    todo = [(str(p), seconds, i) for i, p in enumerate(paths) if not p.is_file()]
    if todo:
        start = time.perf_counter()
        if workers > 1:
            with ProcessPoolExecutor(workers) as pool:
                list(pool.map(_write_mp3, todo))
        else:
            for task in todo:
                _write_mp3(task)
        log(f"wrote {len(todo)} MP3 files of {seconds:g} s in {time.perf_counter() - start:.1f} s")
    rng = np.random.default_rng(1)
    return [
        AudioItem(p, tags=tuple(rng.choice(TAGS, size=rng.integers(1, 4), replace=False)))
        for p in paths
    ]


def folder_bytes(path: Path, suffixes: tuple[str, ...] | None = None) -> int:
    """Total size of the files under ``path`` (optionally only those with these suffixes)."""
    return sum(
        p.stat().st_size
        for p in Path(path).rglob("*")
        if p.is_file() and (suffixes is None or p.suffix in suffixes)
    )


def machine() -> str:
    """One line describing the machine, the libraries and the current load."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return (
        f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} "
        f"threads), Python {platform.python_version()}; load average {load()}"
    )


def load() -> str:
    """The 1/5/15-minute load averages."""
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def best_of(fn: Callable[[], object], repeats: int = 3) -> float:
    """Shortest wall time of ``repeats`` calls of ``fn``, in seconds."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def table(header: list[str], rows: list[list[object]]) -> str:
    """A Markdown table (so that the output can be pasted into docs/benchmarks.md)."""

    def fmt(v: object) -> str:
        if isinstance(v, float):
            return f"{v:.3g}" if abs(v) < 100 else f"{v:.0f}"
        return str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def mib(n_bytes: int) -> str:
    return f"{n_bytes / 2**20:.1f} MiB"
