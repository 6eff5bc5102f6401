"""CPU training steps per second of the Tagger's speed options against today's defaults, and the
loss curves of both, in one process.

Two copies of each model start from the same weights and take the same steps on the same random
batches (``[batch, samples]`` noise, random multi-hot targets), with the random generator reseeded
before each step so that both draw the same dropout masks; their steps alternate (A, B, A, B ...)
so that the load of a shared machine hits both alike. *Before* is the defaults
(``Tagger(channels_last=False, fused_optimizer=False)``, float32). *After* (``--after``):

- ``bf16`` (default): bf16 mixed precision (``musictag.precision.autocast``, what Lightning's
  ``precision="bf16-mixed"`` does), the fused optimiser, and channels_last for the models where it
  pays (:data:`CHANNELS_LAST`: not Musicnn, whose tall one-channel filters lose with it);
- ``fp32``: ``channels_last=True, fused_optimizer=True`` in float32.

The first ``--warmup`` steps are not timed; the loss curves are compared over every step (largest
relative difference).

    python -m benchmarks.train_speedup                          # fcn, musicnn, short, short_res
    python -m benchmarks.train_speedup --models short --steps 6 --batch 16 --json out.json
    python -m benchmarks.train_speedup --after fp32             # channels_last + fused only
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch

try:
    from benchmarks import _common as common
except ImportError:  # run as a file
    import _common as common

import musictag
from musictag.precision import BF16_MIXED, FP32, autocast

MODELS = ("fcn", "musicnn", "short", "short_res")
CHANNELS_LAST = {"fcn", "crnn", "short", "short_chunk_cnn", "short_res", "short_chunk_resnet"}
"""Models whose bf16 training step is faster in channels_last (measured, docs/benchmarks.md)."""
BEFORE = {"channels_last": False, "fused_optimizer": False, "precision": FP32}
AFTERS = {
    "bf16": {"fused_optimizer": True, "precision": BF16_MIXED},
    "fp32": {"channels_last": True, "fused_optimizer": True, "precision": FP32},
}


def after_options(name: str, after: str = "bf16") -> dict:
    """The *after* configuration ``after`` for model ``name`` (channels_last where it pays)."""
    options = dict(AFTERS[after])
    options.setdefault("channels_last", name in CHANNELS_LAST)
    return options


def compare(
    name: str,
    batch: int,
    steps: int,
    warmup: int,
    seed: int = 0,
    after: str = "bf16",
    **overrides: object,
) -> dict:
    """Time ``steps`` alternating training steps of the before/after copies of model ``name``.

    ``after`` names the configuration of :data:`AFTERS`; ``overrides`` are further arguments of
    the model (a smaller variant, for the tests).

    Returns:
        ``{"model", "batch", "before_samples_s", "after_samples_s", "speedup",
        "max_loss_rel_diff", "before_losses", "after_losses"}``.
    """
    models, optimizers, precision = {}, {}, {}
    for label, options in (("before", BEFORE), ("after", after_options(name, after))):
        options = dict(options)
        precision[label] = options.pop("precision")
        torch.manual_seed(seed)  # same initial weights
        model = musictag.create_model(
            name, n_tags=len(common.TAGS), scheduler=None, **options, **overrides
        )
        model.train()
        models[label] = model
        optimizers[label] = model.configure_optimizers()
    g = torch.Generator().manual_seed(seed + 1)
    n = models["before"].crop_samples
    batches = [
        (
            0.3 * torch.randn(batch, n, generator=g),
            (torch.rand(batch, len(common.TAGS), generator=g) < 0.3).float(),
        )
        for _ in range(warmup + steps)
    ]
    seconds = {"before": 0.0, "after": 0.0}
    losses: dict[str, list[float]] = {"before": [], "after": []}
    for step, (x, target) in enumerate(batches):
        for label in ("before", "after"):
            model, opt = models[label], optimizers[label]
            torch.manual_seed(seed + 100 + step)  # the same dropout masks for both
            start = time.perf_counter()
            with autocast("cpu", precision[label]):
                loss = model.criterion(model(x).float(), target)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if step >= warmup:
                seconds[label] += time.perf_counter() - start
            losses[label].append(loss.item())
    rel = max(abs(a - b) / max(abs(a), 1e-12) for a, b in zip(losses["before"], losses["after"]))
    rate_before, rate_after = batch * steps / seconds["before"], batch * steps / seconds["after"]
    return {
        "model": name,
        "batch": batch,
        "after": after_options(name, after),
        "before_samples_s": rate_before,
        "after_samples_s": rate_after,
        "speedup": rate_after / rate_before,
        "max_loss_rel_diff": rel,
        "before_losses": losses["before"],
        "after_losses": losses["after"],
    }


def main(argv: Sequence[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=4, help="timed steps per copy")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--after", choices=sorted(AFTERS), default="bf16")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(common.machine())
    print(
        f"before: {BEFORE}; after: {AFTERS[args.after]} (channels_last for {sorted(CHANNELS_LAST)}); "
        f"batch {args.batch}, {args.steps} timed steps; load average {common.load()}"
    )
    rows = []
    for name in args.models:
        row = compare(name, args.batch, args.steps, args.warmup, after=args.after)
        rows.append(row)
        print(f"  {name}: {row['speedup']:.2f}x", file=sys.stderr, flush=True)
    print(
        common.table(
            ["model", "batch", "before samples/s", "after samples/s", "speed-up", "loss rel. diff"],
            [
                [
                    r["model"],
                    r["batch"],
                    r["before_samples_s"],
                    r["after_samples_s"],
                    f"{r['speedup']:.2f}x",
                    f"{r['max_loss_rel_diff']:.1e}",
                ]
                for r in rows
            ],
        )
    )
    print(f"load average after: {common.load()}")
    if args.json:
        args.json.write_text(json.dumps({"machine": common.machine(), "rows": rows}, indent=1))
    return rows


if __name__ == "__main__":
    main()
