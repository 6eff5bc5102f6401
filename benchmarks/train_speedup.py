"""CPU training steps per second of the Tagger's speed options against the code of issue 14's
filing (commit c401046) and against today's float32 defaults, and the loss curves, in one process.

Copies of each model start from the same weights and take the same steps on the same random
batches (``[batch, samples]`` noise, random multi-hot targets), with the random generator reseeded
before each step so that all draw the same dropout masks; their steps alternate (A, B, C, A, B,
C ...) so that the load of a shared machine hits all alike. The copies:

- *c401046* (the baseline, "today" in issue 14): float32, the defaults, and the ops the blocks
  ran at commit c401046 (:func:`as_of_c401046`: ReLU before the max-pool, Musicnn's vertical
  filters as a 2D convolution and ``amax`` over frequency); the same values, other gradients'
  cost;
- *current* (``--current``, default on): today's defaults in float32
  (``Tagger(channels_last=False, fused_optimizer=False)``);
- *after* (``--after``):

  - ``bf16`` (default): bf16 mixed precision (``musictag.precision.autocast``, what Lightning's
    ``precision="bf16-mixed"`` does), the fused optimiser, and channels_last for the models where
    it pays (:data:`CHANNELS_LAST`: not Musicnn, whose convolutions all run as 1D ones, its
    vertical filters included: ``musictag.models.musicnn.vertical_conv``);
  - ``fp32``: ``channels_last=True, fused_optimizer=True`` in float32.

The first ``--warmup`` steps are not timed; the loss curves are compared over every step (largest
relative difference from the c401046 copy's).

    python -m benchmarks.train_speedup                          # fcn, musicnn, short, short_res
    python -m benchmarks.train_speedup --models short --steps 6 --batch 16 --json out.json
    python -m benchmarks.train_speedup --after fp32             # channels_last + fused only
    python -m benchmarks.train_speedup --no-current             # c401046 and after only
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import types
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

try:
    from benchmarks import _common as common
except ImportError:  # run as a file
    import _common as common

import musictag
from musictag.models.blocks import ConvBlock1d, ConvBlock2d
from musictag.models.musicnn import ConvV
from musictag.models.shortchunk import Res2dMP
from musictag.precision import BF16_MIXED, FP32, autocast

MODELS = ("fcn", "musicnn", "short", "short_res")
CHANNELS_LAST = {"fcn", "crnn", "short", "short_chunk_cnn", "short_res", "short_chunk_resnet"}
"""Models whose bf16 training step is faster in channels_last (measured, docs/benchmarks.md)."""
BEFORE = {"channels_last": False, "fused_optimizer": False, "precision": FP32}
"""The float32 defaults: the c401046 copy and the current copy."""
AFTERS = {
    "bf16": {"fused_optimizer": True, "precision": BF16_MIXED},
    "fp32": {"channels_last": True, "fused_optimizer": True, "precision": FP32},
}


def after_options(name: str, after: str = "bf16") -> dict:
    """The *after* configuration ``after`` for model ``name`` (channels_last where it pays)."""
    options = dict(AFTERS[after])
    options.setdefault("channels_last", name in CHANNELS_LAST)
    return options


def _block_c401046(self: ConvBlock2d | ConvBlock1d, x: torch.Tensor) -> torch.Tensor:
    return self.pool(self.relu(self.bn(self.conv(x))))


def _res2dmp_c401046(self: Res2dMP, x: torch.Tensor) -> torch.Tensor:
    out = self.bn_2(self.conv_2(self.relu(self.bn_1(self.conv_1(x)))))
    return self.mp(self.relu(x + out))


def _conv_v_c401046(self: ConvV, x: torch.Tensor) -> torch.Tensor:
    return self.relu(self.bn(self.conv(x))).amax(dim=2)


FORWARD_C401046: dict[type, Callable] = {
    ConvBlock2d: _block_c401046,
    ConvBlock1d: _block_c401046,
    Res2dMP: _res2dmp_c401046,
    ConvV: _conv_v_c401046,
}
"""The ``forward`` of the blocks that changed since commit c401046 (``git show
c401046:musictag/models/blocks.py`` ...), as they were then. Everything else a training step of
fcn, musicnn, short and short_res runs (frontend, other blocks, loss, Adam) is unchanged since."""


def as_of_c401046(model: torch.nn.Module) -> torch.nn.Module:
    """Give the blocks of ``model`` their forward of commit c401046, in place; returns ``model``.

    Same weights, same values (float32 round-off); what differs is the work of the backward pass
    (the ReLU on the unpooled map, ``amax`` and the 2D vertical convolution's gradients).
    """
    for module in model.modules():
        forward = FORWARD_C401046.get(type(module))
        if forward is not None:
            module.forward = types.MethodType(forward, module)
    return model


def compare(
    name: str,
    batch: int,
    steps: int,
    warmup: int,
    seed: int = 0,
    after: str = "bf16",
    current: bool = True,
    **overrides: object,
) -> dict:
    """Time ``steps`` alternating training steps of the copies of model ``name``.

    The copies: ``"before"`` (the code of commit c401046, :func:`as_of_c401046`), ``"current"``
    (today's float32 defaults; left out when ``current`` is false) and ``"after"`` (the
    configuration ``after`` of :data:`AFTERS`); ``overrides`` are further arguments of the model
    (a smaller variant, for the tests).

    Returns:
        ``{"model", "batch", "after", "before_samples_s", "after_samples_s", "speedup",
        "max_loss_rel_diff", "before_losses", "after_losses"}``, and with ``current``
        ``"current_samples_s"``, ``"speedup_vs_current"`` (after against current),
        ``"current_loss_rel_diff"`` (current against before), ``"current_losses"``.
    """
    configs = {"before": BEFORE, "current": BEFORE, "after": after_options(name, after)}
    if not current:
        del configs["current"]
    models, optimizers, precision = {}, {}, {}
    for label, options in configs.items():
        options = dict(options)
        precision[label] = options.pop("precision")
        torch.manual_seed(seed)  # same initial weights
        model = musictag.create_model(
            name, n_tags=len(common.TAGS), scheduler=None, **options, **overrides
        )
        if label == "before":
            as_of_c401046(model)
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
    seconds = dict.fromkeys(configs, 0.0)
    losses: dict[str, list[float]] = {label: [] for label in configs}
    for step, (x, target) in enumerate(batches):
        for label in configs:
            model, opt = models[label], optimizers[label]
            torch.manual_seed(seed + 100 + step)  # the same dropout masks for all
            start = time.perf_counter()
            with autocast("cpu", precision[label]):
                loss = model.criterion(model(x).float(), target)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if step >= warmup:
                seconds[label] += time.perf_counter() - start
            losses[label].append(loss.item())
    rate = {label: batch * steps / s for label, s in seconds.items()}
    row = {
        "model": name,
        "batch": batch,
        "after": after_options(name, after),
        "before_samples_s": rate["before"],
        "after_samples_s": rate["after"],
        "speedup": rate["after"] / rate["before"],
        "max_loss_rel_diff": _max_rel_diff(losses["before"], losses["after"]),
        "before_losses": losses["before"],
        "after_losses": losses["after"],
    }
    if current:
        row |= {
            "current_samples_s": rate["current"],
            "speedup_vs_current": rate["after"] / rate["current"],
            "current_loss_rel_diff": _max_rel_diff(losses["before"], losses["current"]),
            "current_losses": losses["current"],
        }
    return row


def _max_rel_diff(reference: Sequence[float], other: Sequence[float]) -> float:
    return max(abs(a - b) / max(abs(a), 1e-12) for a, b in zip(reference, other))


def main(argv: Sequence[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=4, help="timed steps per copy")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--after", choices=sorted(AFTERS), default="bf16")
    parser.add_argument(
        "--current",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also time today's float32 defaults (default: on)",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(common.machine())
    print(
        f"before: the float32 step of commit c401046; current: {BEFORE}; after: "
        f"{AFTERS[args.after]} (channels_last for {sorted(CHANNELS_LAST)}); "
        f"batch {args.batch}, {args.steps} timed steps; load average {common.load()}"
    )
    rows = []
    for name in args.models:
        row = compare(
            name, args.batch, args.steps, args.warmup, after=args.after, current=args.current
        )
        rows.append(row)
        print(f"  {name}: {row['speedup']:.2f}x", file=sys.stderr, flush=True)
    header = ["model", "batch", "c401046 samples/s"]
    header += ["current samples/s"] if args.current else []
    header += ["after samples/s", "speed-up vs c401046"]
    header += ["vs current"] if args.current else []
    header += ["loss rel. diff"]
    table = []
    for r in rows:
        line = [r["model"], r["batch"], r["before_samples_s"]]
        line += [r["current_samples_s"]] if args.current else []
        line += [r["after_samples_s"], f"{r['speedup']:.2f}x"]
        line += [f"{r['speedup_vs_current']:.2f}x"] if args.current else []
        line += [f"{r['max_loss_rel_diff']:.1e}"]
        table.append(line)
    print(common.table(header, table))
    print(f"load average after: {common.load()}")
    if args.json:
        args.json.write_text(json.dumps({"machine": common.machine(), "rows": rows}, indent=1))
    return rows


if __name__ == "__main__":
    main()
