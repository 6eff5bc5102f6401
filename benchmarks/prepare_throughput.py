"""How fast does ``musictag prepare folder`` turn a music folder into shards, with 1 and 2 workers?

Writes ``--n-files`` clips (``--seconds`` long, 44.1 kHz stereo noise with a tone, formats cycling
through mp3, ogg and wav) into a temporary folder laid out as ``<label>/<n>.<ext>``, then runs
:func:`musictag.data.sources.folder.prepare_folder` with ``workers=1`` and ``workers=2`` (each into
a fresh output folder, in this process) and prints files/s for each and the ratio. Decoding,
resampling to 16 kHz and FLAC encoding dominate; the files are written once and reused by both
runs, and a warm-up run on a few files loads the codecs first.

    python benchmarks/prepare_throughput.py --n-files 200 --seconds 10
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from musictag.data.sources.folder import prepare_folder

FORMATS = (("mp3", "MP3"), ("ogg", "OGG"), ("wav", "WAV"))
LABELS = ("rock", "jazz", "pop", "folk")
SR = 44100


def make_folder(root: Path, n_files: int, seconds: float) -> dict[str, int]:
    """Write the clips; returns the number of files per extension."""
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * SR)) / SR
    counts: dict[str, int] = {}
    for i in range(n_files):
        ext, fmt = FORMATS[i % len(FORMATS)]
        tone = 0.3 * np.sin(2 * np.pi * (110 + 20 * i) * t)
        x = (tone[:, None] + 0.05 * rng.standard_normal((t.size, 2))).astype(np.float32)
        path = root / LABELS[i % len(LABELS)] / f"{i:04d}.{ext}"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, x, SR, format=fmt)
        counts[ext] = counts.get(ext, 0) + 1
    return counts


def _cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the pool's workers)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def run(root: Path, out: Path, workers: int) -> tuple[float, float, int]:
    """Prepare the folder once; returns (wall seconds, CPU seconds, files written)."""
    shutil.rmtree(out, ignore_errors=True)
    cpu0, start = _cpu_seconds(), time.perf_counter()
    report = prepare_folder(
        root=str(root), out=str(out), workers=workers, max_samples_per_shard=25, progress=False
    )
    return time.perf_counter() - start, _cpu_seconds() - cpu0, report.n_written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-files", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--keep", type=Path, default=None, help="write here instead of a temp dir")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        base = args.keep or Path(tmp)
        lib = base / "lib"
        t0 = time.perf_counter()
        counts = make_folder(lib, args.n_files, args.seconds)
        print(
            f"wrote {args.n_files} clips of {args.seconds:g} s, 44.1 kHz stereo "
            f"({', '.join(f'{n} {e}' for e, n in counts.items())}) in "
            f"{time.perf_counter() - t0:.1f} s; cpu count {os.cpu_count()}, "
            f"load average {', '.join(f'{x:.2f}' for x in os.getloadavg())}"
        )
        warm = base / "warm"
        make_folder(warm, 6, 1.0)
        run(warm, base / "warm_out", 1)

        for workers in (1, 2):  # fixed cost: starting the pool, on 6 files of 1 s
            seconds, cpu, n = run(warm, base / f"warm{workers}", workers)
            print(f"fixed cost, workers={workers}: {n} tiny files in {seconds:.2f} s")
        rates = {}
        for workers in (1, 2):
            seconds, cpu, n = run(lib, base / f"out{workers}", workers)
            rates[workers] = n / seconds
            print(
                f"workers={workers}: {n} files in {seconds:.2f} s = {rates[workers]:.2f} files/s "
                f"({n * args.seconds / seconds:.0f} s of audio per s; {cpu:.1f} CPU s, "
                f"{cpu / seconds:.2f} cores busy on average)"
            )
        print(f"ratio workers=2 / workers=1: {rates[2] / rates[1]:.2f}x")
        print(f"load average after: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
