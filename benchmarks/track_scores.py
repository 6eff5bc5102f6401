"""30-s tracks per second through ``Tagger.track_scores`` (16 crops each, averaged) for every zoo model.

The model-side inference figure: ``--tracks`` tracks of 30 s (16 kHz) are cut into 16 evenly spaced
crops of each model's input length (``musictag.tta.extract_crops``) and scored in one call of
``track_scores`` (eval mode, ``torch.inference_mode``), which runs the crops in chunks of the
model's ``eval_chunk_size`` (64) and averages the per-crop probabilities. Decoding files is not
included: ``benchmarks/inference_*.py`` measure file-level inference.

With ``--compare-conv``, log-mel models also run with the nnAudio conv-STFT frontend
(``stft="conv"``), in the same process, to show what the CPU ``torch.stft`` path gains end to end.

    python benchmarks/track_scores.py                 # all models, ~5 minutes
    python benchmarks/track_scores.py --models 'short*' --compare-conv
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

import numpy as np
import torch

try:
    from benchmarks import _common as common
except ImportError:  # run as a file: python benchmarks/track_scores.py
    import _common as common

import musictag
from musictag.frontend import LogMelFrontend
from musictag.tta import extract_crops

SR = 16000
K = 16


def tracks_per_second(model: musictag.Tagger, crops: torch.Tensor, repeats: int) -> float:
    """Best rate of ``repeats`` calls of ``track_scores`` on ``crops`` ``[tracks, K, samples]``."""
    model.eval()
    with torch.inference_mode():
        model.track_scores(crops[:1])  # warm-up
        best = min(_timed(lambda: model.track_scores(crops)) for _ in range(repeats))
    return crops.shape[0] / best


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["*"], help="globs of list_models()")
    parser.add_argument("--tracks", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--compare-conv", action="store_true")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    audio = torch.from_numpy(
        np.stack(
            [common.synth_track(30.0, SR, seed=i, channels=1)[:, 0] for i in range(args.tracks)]
        )
    )
    names = sorted({n for pattern in args.models for n in musictag.list_models(pattern)})
    print(common.machine())
    print(f"{args.tracks} tracks of 30 s, {K} crops each, batched by track_scores")
    rows = []
    for name in names:
        torch.manual_seed(0)
        model = musictag.create_model(name, n_tags=50)
        crops = torch.stack([extract_crops(x, model.crop_samples, K) for x in audio])
        rate = tracks_per_second(model, crops, args.repeats)
        row = [name, f"{model.crop_samples / SR:.2f} s", rate, 1e3 / rate]
        if args.compare_conv:
            if isinstance(model.frontend, LogMelFrontend):
                model.frontend.stft = "conv"
                row.append(rate / tracks_per_second(model, crops, args.repeats))
            else:
                row.append("-")
        rows.append(row)
        print(f"  {name}: {rate:.2f} tracks/s", flush=True)
    header = ["model", "crop", "tracks/s", "ms/track"]
    if args.compare_conv:
        header.append("vs stft=conv")
    print(common.table(header, rows))
    print(f"load average after: {common.load()}")


if __name__ == "__main__":
    main()
