"""The ``musictag`` command: prepare, demo, predict, convert-sota, ...

Recipes (training runs) use the LightningCLI entry in :mod:`musictag.cli` instead.

Each subcommand is a thin shell over a library function; this is the only module that prints.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["main"]


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import DemoConfig, run_demo

    cfg = DemoConfig(
        out_dir=Path(args.out),
        n_clips=args.clips,
        clip_seconds=args.seconds,
        max_minutes=args.minutes,
        max_epochs=args.epochs,
        num_workers=args.workers,
        seed=args.seed,
        progress=not args.quiet,
    )
    result = run_demo(cfg)
    print()
    print(f"musictag demo: {result.epochs} epochs, {result.seconds:.0f} s in all")
    print("test metrics (per track, crop-averaged):")
    for k in ("test/pr_auc_macro", "test/pr_auc_micro", "test/roc_auc_macro", "test/roc_auc_micro"):
        print(f"  {k:22s} {result.metrics[k]:.4f}")
    print(f"checkpoint: {result.checkpoint}")
    for track_id, truth, tags in result.examples:
        top = ", ".join(f"{t} {s:.2f}" for t, s in tags.top(len(truth) + 1))
        print(f"  {track_id}: true [{', '.join(truth)}] -> {top}")
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from .audio import AudioReadError
    from .checkpoints import load_tagger
    from .inference import tag_file

    model = load_tagger(args.checkpoint)
    hop = int(args.hop_seconds * model.sample_rate) if args.hop_seconds else None
    rows, failed = [], 0
    for f in args.files:
        try:
            result = tag_file(model, f, hop=hop, batch_size=args.batch_size, how=args.aggregate)
        except AudioReadError as e:
            logging.getLogger("musictag").error("skipped %s", e)
            failed += 1
            continue
        rows.append((f, result.top(args.top_k)))
    if args.format == "json":
        json.dump(
            [
                {"file": f, "tags": [{"tag": t, "score": round(s, 6)} for t, s in top]}
                for f, top in rows
            ],
            sys.stdout,
            indent=2,
        )
        print()
    elif args.format == "csv":
        w = csv.writer(sys.stdout)
        w.writerow(["file", "rank", "tag", "score"])
        for f, top in rows:
            for rank, (t, s) in enumerate(top, 1):
                w.writerow([f, rank, t, f"{s:.6f}"])
    else:
        for f, top in rows:
            print(f"{f}: " + ", ".join(f"{t} ({s:.3f})" for t, s in top))
    return 1 if failed and not rows else 0


def _cmd_prepare(argv: Sequence[str]) -> int:
    """``musictag prepare <collection> --root ... --out ...``: options come from the preparer's signature."""
    import jsonargparse

    from .data.sources import PREPARERS, get_preparer

    if not argv or argv[0] in ("-h", "--help") or argv[0] not in PREPARERS:
        names = ", ".join(sorted(PREPARERS))
        if argv and argv[0] not in ("-h", "--help"):
            print(
                f"musictag prepare: unknown collection {argv[0]!r}; choose one of: {names}",
                file=sys.stderr,
            )
            return 2
        print(
            f"usage: musictag prepare {{{names}}} --root ROOT --out OUT [options]\n"
            "       musictag prepare COLLECTION --help  (its options)"
        )
        return 0
    name = argv[0]
    report = jsonargparse.CLI(
        get_preparer(name), args=list(argv[1:]), prog=f"musictag prepare {name}"
    )
    print(
        f"{name}: {report.n_written} tracks written to {report.out_dir}, {report.n_failed} failed"
        + (f" (listed in {report.out_dir / 'failures.tsv'})" if report.n_failed else "")
    )
    return 0


def _cmd_convert_sota(args: argparse.Namespace) -> int:
    from .pretrained import save_sota_checkpoint

    out = save_sota_checkpoint(args.path, args.arch, args.dataset, args.output)
    print(f"wrote {out} ({args.arch} trained on {args.dataset}); load it with musictag.load_tagger")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``musictag`` command."""
    p = argparse.ArgumentParser(
        prog="musictag", description="Music auto-tagging with PyTorch Lightning."
    )
    p.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = p.add_subparsers(dest="command", required=True)
    # listed for --help; handled before argparse (its options come from each preparer)
    sub.add_parser(
        "prepare", help="prepare a collection into shards: musictag prepare COLLECTION --help"
    )

    d = sub.add_parser(
        "demo", help="generate the synthetic collection, train a CRNN on CPU, test it"
    )
    d.add_argument("--out", default="musictag-demo", help="output folder (default: %(default)s)")
    d.add_argument("--clips", type=int, default=400, help="synthetic clips (default: %(default)s)")
    d.add_argument("--seconds", type=float, default=4.0, help="clip length (default: %(default)s)")
    d.add_argument(
        "--minutes", type=float, default=3.0, help="training budget (default: %(default)s)"
    )
    d.add_argument("--epochs", type=int, default=30, help="maximum epochs (default: %(default)s)")
    d.add_argument(
        "--workers", type=int, default=1, help="data-loader workers (default: %(default)s)"
    )
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--quiet", action="store_true", help="no progress bars")
    d.set_defaults(func=_cmd_demo)

    r = sub.add_parser("predict", help="tag audio files of any length and format")
    r.add_argument("checkpoint", help="a musictag checkpoint (.ckpt)")
    r.add_argument("files", nargs="+", help="audio files")
    r.add_argument("--top-k", type=int, default=5, help="tags per file (default: %(default)s)")
    r.add_argument("--format", choices=("text", "json", "csv"), default="text")
    r.add_argument(
        "--hop-seconds",
        type=float,
        default=None,
        help="window hop; default: the model's input length",
    )
    r.add_argument("--batch-size", type=int, default=16, help="windows per forward pass")
    r.add_argument("--aggregate", choices=("mean", "max"), default="mean")
    r.set_defaults(func=_cmd_predict)

    c = sub.add_parser(
        "convert-sota",
        help="convert a published Won et al. (2020) checkpoint into a musictag checkpoint",
    )
    c.add_argument("path", help="best_model.pth of minzwon/sota-music-tagging-models")
    c.add_argument("--arch", required=True, choices=("fcn", "crnn", "musicnn"))
    c.add_argument("--dataset", required=True, choices=("mtat", "msd", "jamendo"))
    c.add_argument("-o", "--output", required=True, help="output .ckpt")
    c.set_defaults(func=_cmd_convert_sota)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``musictag`` console command."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "prepare":
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
        return _cmd_prepare(argv[1:])
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
