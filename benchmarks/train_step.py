"""Training samples per second of every zoo model on CPU, and the share of time spent waiting for data.

Each model of ``musictag.list_models()`` trains (Adam, its own loss) on batches of 16 random crops
of its own input length, streamed by ``TagDataModule.train_dataloader()`` from the shards that
``input_pipeline.py`` writes (30-s tracks, FLAC by default). A manual loop times, per step, the
wait in ``next(iterator)`` (data) and forward + backward + optimiser step (compute):

    wait share = total wait / (total wait + total compute)

The first ``--warmup`` steps are not timed; then at least ``--steps`` steps and ``--min-seconds``
are, so that fast models are timed over many steps. The shuffle buffer is kept small (8 crops),
so that the workers decode one crop per crop delivered, as in the steady state of a long epoch;
with the default buffer of 1000 and a corpus of 128 tracks, every crop would be decoded before
the first step and the wait would look like zero.

    python benchmarks/train_step.py                       # all models, 2 workers, ~30 minutes
    python benchmarks/train_step.py --models 'short*' crnn --workers 0 2
"""

from __future__ import annotations

import argparse
import gc
import itertools
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch

try:
    from benchmarks import _common as common
    from benchmarks.input_pipeline import close, prepare
except ImportError:  # run as a file: python benchmarks/train_step.py
    import _common as common
    from input_pipeline import close, prepare

import musictag
from musictag.data.datamodule import TagDataModule

BATCH = 16


def time_training(
    model: musictag.Tagger,
    loader: torch.utils.data.DataLoader,
    warmup: int,
    steps: int,
    min_seconds: float,
) -> tuple[float, float, int]:
    """Seconds spent waiting for data and computing, over at least ``steps`` timed steps and
    ``min_seconds`` of timed work (fast models get more steps); returns the step count too."""
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    batches = itertools.chain.from_iterable(itertools.repeat(loader))  # epoch after epoch
    wait = compute = 0.0
    timed = 0
    for step in itertools.count():
        if step >= warmup and timed >= steps and wait + compute >= min_seconds:
            break
        start = time.perf_counter()
        batch = next(batches)
        fetched = time.perf_counter()
        loss = model.criterion(model(batch["audio"]), batch["target"])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        done = time.perf_counter()
        if step >= warmup:
            wait += fetched - start
            compute += done - fetched
            timed += 1
    return wait, compute, timed


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["*"], help="globs of list_models()")
    parser.add_argument("--workers", type=int, nargs="+", default=[2])
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3, help="at least this many timed steps")
    parser.add_argument("--min-seconds", type=float, default=15.0, help="and this much time")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    parser.add_argument("--audio-format", choices=["flac", "pcm16"], default="flac")
    parser.add_argument("--n-files", type=int, default=128)
    parser.add_argument("--work", type=Path, default=common.DEFAULT_WORK)
    args = parser.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    data = prepare(args.work, args.n_files, 30.0)
    names = sorted({n for pattern in args.models for n in musictag.list_models(pattern)})
    print(common.machine())
    print(
        f"batch {BATCH}, {args.audio_format} shards, {args.warmup} warm-up steps, then at least "
        f"{args.steps} steps and {args.min_seconds:g} s per model"
    )
    rows = []
    for name in names:
        for workers in args.workers:
            torch.manual_seed(0)
            model = musictag.create_model(name, n_tags=len(common.TAGS))
            dm = TagDataModule(
                root=str(data[args.audio_format]),
                tags=list(common.TAGS),
                crop_samples=model.crop_samples,
                batch_size=BATCH,
                num_workers=workers,
                persistent_workers=workers > 0,
                shuffle_buffer=8,
            )
            loader = dm.train_dataloader()
            wait, compute, steps = time_training(
                model, loader, args.warmup, args.steps, args.min_seconds
            )
            close(loader)
            total = wait + compute
            rows.append(
                [
                    name,
                    f"{model.crop_samples / model.sample_rate:.2f} s",
                    workers,
                    BATCH * steps / total,
                    1e3 * total / steps,
                    f"{100 * wait / total:.1f} %",
                ]
            )
            print(
                f"  {name} workers={workers}: {rows[-1][3]:.2f} samples/s, wait {rows[-1][5]}",
                file=sys.stderr,
                flush=True,
            )
            del model, loader, dm
            gc.collect()
    print(common.table(["model", "input", "workers", "samples/s", "ms/step", "data wait"], rows))
    print(f"load average after: {common.load()}")


if __name__ == "__main__":
    main()
