"""The ``musictag train`` sub-command: argument parsing and the summary it prints."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable
from typing import Any

__all__ = ["add_train_parser", "run_train_command", "train_config"]


def add_train_parser(sub: Any, handler: Callable[[argparse.Namespace], int]) -> None:
    """Register ``musictag train`` on the sub-parsers ``sub`` of the ``musictag`` command."""
    t = sub.add_parser(
        "train",
        help="the best tagger within a time budget: from scratch, or transferred from checkpoints",
    )
    t.add_argument("shards", help="shard folder (manifest.json) with train and val splits")
    t.add_argument("-o", "--output", required=True, help="checkpoint to write (.ckpt)")
    t.add_argument(
        "--max-minutes", type=float, default=10.0, help="wall-clock budget (default: %(default)s)"
    )
    t.add_argument(
        "--pretrained",
        nargs="+",
        default=None,
        metavar="CKPT",
        help="musictag checkpoints to transfer from (several are combined)",
    )
    t.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if any)")
    t.add_argument(
        "--cache-dir",
        default=None,
        help="transfer-feature cache (default: $XDG_CACHE_HOME/musictag/features)",
    )
    t.add_argument(
        "--members",
        type=int,
        default=None,
        metavar="N",
        help="most compact CNNs to train while the budget holds them: from scratch, averaged "
        "(default 8); with --pretrained, blended with the probe (default 6; 0: the probe alone)",
    )
    t.add_argument(
        "--no-finetune",
        action="store_true",
        help="with --pretrained: no end-to-end fine-tuning after the probe",
    )
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--quiet", action="store_true", help="no progress bars")
    t.set_defaults(func=handler)


def train_config(args: argparse.Namespace):
    """The :class:`~musictag.training.api.TrainConfig` that ``musictag train``'s arguments ask for."""
    from .api import TrainConfig

    cfg = TrainConfig(
        shards=args.shards,
        output=args.output,
        max_minutes=args.max_minutes,
        pretrained=list(args.pretrained or []),
        device=args.device,
        cache_dir=args.cache_dir,
        seed=args.seed,
        progress=not args.quiet,
    )
    if args.members is not None:
        if args.members < 0:
            raise ValueError(f"--members must be 0 or more, got {args.members}")
        if cfg.pretrained:
            n = args.members
            cfg.ensemble = dataclasses.replace(cfg.ensemble, members=n) if n else None
        else:
            cfg.scratch = dataclasses.replace(cfg.scratch, members=max(1, args.members))
    if args.no_finetune:
        cfg.finetune = None
    return cfg


def run_train_command(args: argparse.Namespace) -> int:
    """Run ``musictag train`` and print what was chosen and its validation figure."""
    from .api import train_tagger

    result = train_tagger(train_config(args))
    print(f"musictag train: {result.summary}")
    print(f"  validation pr_auc_macro {result.val_pr_auc:.4f} ({result.n_val} tracks)")
    print(f"  {result.seconds:.0f} s of a {args.max_minutes * 60:.0f}-s budget")
    print(f"checkpoint: {result.checkpoint}")
    return 0
