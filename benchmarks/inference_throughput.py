"""Tracks per second when tagging 30-s tracks with 16-crop averaging: batched vs one crop at a time.

Writes ``--tracks`` 30-second 44.1 kHz stereo mp3 files of synthetic music, converts a published
tagger (``--model``, default the MTAT Musicnn of Won et al. 2020: 16 crops of 3 s per track), and
tags the files in this process twice, after a warm-up on one file:

- **batched**: ``Inference(model, crops=16, batch_size=--batch-size)``: the crops of a track, and
  of consecutive tracks, share forward passes;
- **one crop at a time**: the same with ``batch_size=1``;
- **measured**: ``Inference(model, crops=16)`` with the batch size and threads that inference
  measures on this machine (:mod:`musictag.autotune`, measured afresh into a temporary cache).

All include decoding and resampling and run the model as it is (``optimize=False``, so that
only the batching differs); all give the same scores (the largest difference is printed).
Prints tracks/s for each, the ratios, and the measured choice: a fixed ``--batch-size`` can be
the fastest on one CPU and 2x too slow on another, the measured choice should be near the best.

    python benchmarks/inference_throughput.py --tracks 8
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from inference_common import MODELS, clips, make_checkpoint

from musictag import load_tagger
from musictag.autotune import CACHE_ENV
from musictag.inference import Inference


def run(
    model, files: list[Path], crops: int, batch_size: int | None, threads: int | None = None
) -> tuple[float, np.ndarray]:
    inference = Inference(
        model, crops=crops, batch_size=batch_size, threads=threads, prefetch=0, optimize=False
    )
    inference.settings  # noqa: B018 - measure (or read) the settings before timing
    t0 = time.perf_counter()
    scores = [r.scores for _, r in inference.iter_files(files)]
    return len(files) / (time.perf_counter() - t0), np.stack(scores)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tracks", type=int, default=8)
    p.add_argument("--crops", type=int, default=16)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--model", choices=MODELS, default="mtat_musicnn")
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        files = []
        for i, x in enumerate(clips(args.tracks, 30.0, 44100, seed=1)):
            files.append(tmp / f"{i}.mp3")
            sf.write(files[-1], x, 44100)
        model = load_tagger(make_checkpoint(args.model, tmp)).to(args.device)
        os.environ[CACHE_ENV] = str(tmp / "cache")
        chosen = Inference(model, optimize=False).settings  # measured now, into tmp/cache
        run(model, files[:1], args.crops, args.batch_size)  # warm-up
        run(model, files[:1], args.crops, 1)
        batched, a = run(model, files, args.crops, args.batch_size)
        single, b = run(model, files, args.crops, 1)
        measured, c = run(model, files, args.crops, None)
    print(
        f"{args.model}, {args.tracks} tracks x {args.crops} crops, {torch.get_num_threads()} threads, "
        f"{args.device}"
    )
    print(f"batched ({args.batch_size} crops/pass)  {batched:6.2f} tracks/s")
    print(f"one crop at a time          {single:6.2f} tracks/s")
    print(
        f"measured (batch {chosen.batch_size}, {chosen.threads} threads) {measured:6.2f} tracks/s"
    )
    diff = max(np.abs(a - b).max(), np.abs(a - c).max())
    print(f"batched / one at a time     {batched / single:6.2f}x   (max |score diff| {diff:.1e})")
    print(f"measured / one at a time    {measured / single:6.2f}x")
    print(json.dumps({"model": args.model, "tracks": args.tracks, "crops": args.crops,
                      "batch_size": args.batch_size, "threads": torch.get_num_threads(),
                      "device": args.device, "batched_tracks_per_s": batched,
                      "single_tracks_per_s": single, "ratio": batched / single,
                      "measured_batch_size": chosen.batch_size, "measured_threads": chosen.threads,
                      "measured_tracks_per_s": measured, "measured_ratio": measured / single,
                      "load": ", ".join(f"{x:.2f}" for x in os.getloadavg())}))  # fmt: skip


if __name__ == "__main__":
    main()
