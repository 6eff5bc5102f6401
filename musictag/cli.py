"""The ``musictag`` command: prepare, demo, predict, embed, index, search, se-analysis, verify, ...

Recipes (training runs) use the LightningCLI entry in :mod:`musictag.lightning_cli` instead.

Each subcommand is a thin shell over a library function; this is the only module that prints.
"""

from __future__ import annotations

import argparse
import csv
import functools
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

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


def _user_errors(func: Any) -> Any:
    """Report bad arguments (missing files, wrong folders) as one line on stderr, exit status 2."""

    @functools.wraps(func)
    def wrapper(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except (FileNotFoundError, ValueError) as e:
            print(f"musictag {args.command}: error: {e}", file=sys.stderr)
            return 2

    return wrapper


def _progress(iterable: Any, total: int | None, desc: str, quiet: bool, unit: str = "file") -> Any:
    from tqdm import tqdm

    # disable=None: a bar only on a terminal, so pipes and logs stay clean
    return tqdm(
        iterable,
        total=total,
        desc=desc,
        unit=unit,
        disable=True if quiet else None,
        file=sys.stderr,
    )


def _load_model(checkpoint: str, device: str | None) -> Any:
    from .checkpoints import load_tagger

    model = load_tagger(checkpoint)
    return model.to(device) if device else model


def _hop(args: argparse.Namespace, model: Any) -> int | None:
    return int(round(args.hop_seconds * model.sample_rate)) if args.hop_seconds else None


def _inference(args: argparse.Namespace, model: Any, **kwargs: Any) -> Any:
    """The ``Inference`` of ``--hop-seconds``, ``--crops`` and ``--batch-size``."""
    from .inference import Inference

    return Inference(
        model, hop=_hop(args, model), crops=args.crops, batch_size=args.batch_size, **kwargs
    )


def _thresholds(args: argparse.Namespace, model: Any) -> tuple[Any, int | None]:
    """``--threshold`` (a number, or ``auto``: the checkpoint's calibrated per-tag thresholds)
    and ``--top-k`` (default: every tag above its threshold with ``auto``, else the 5 best)."""
    threshold = args.threshold
    if threshold == "auto":
        from .calibrate import load_calibration

        calibration = load_calibration(args.checkpoint)
        if calibration is None:
            raise ValueError(
                f"{args.checkpoint} holds no calibrated thresholds: run "
                "`musictag calibrate CHECKPOINT SHARDS` first, or pass a number"
            )
        threshold = calibration.for_tags(model.tags)
    top_k = args.top_k
    if top_k is None:
        top_k = None if args.threshold == "auto" else 5
    return threshold, top_k


def _plot_paths(spec: str, files: Sequence[Path]) -> dict[Path, Path]:
    """``out.png`` for one file; ``out_<stem>.png`` for several; ``<folder>/<stem>.png`` for a folder."""
    target = Path(spec)
    folder = spec.endswith(("/", "\\")) or target.is_dir() or not target.suffix
    if len(files) == 1 and not folder:
        return {files[0]: target}
    out: dict[Path, Path] = {}
    used: set[Path] = set()
    for f in files:
        stem, n = f.stem, 1
        while True:
            name = stem if n == 1 else f"{stem}_{n}"
            p = (
                target / f"{name}.png"
                if folder
                else target.with_name(f"{target.stem}_{name}{target.suffix}")
            )
            if p not in used:
                break
            n += 1
        used.add(p)
        out[f] = p
    return out


def _audio_files(inputs: Sequence[str]) -> list[Path]:
    """The audio files of files, folders and @lists; ``FileNotFoundError`` if there are none."""
    from .inputs import collect_audio_files

    files = collect_audio_files(inputs)
    if not files:
        raise FileNotFoundError(f"no audio files in {' '.join(inputs)}")
    return files


def _lightning_devices(args: argparse.Namespace) -> dict[str, Any]:
    """Trainer placement of a ``--db`` run: ``--accelerator/--devices/--num-nodes/--strategy``,
    or ``--device cuda:1`` read as one GPU."""
    accelerator, devices = args.accelerator, args.devices
    if args.device:
        kind, _, index = args.device.partition(":")
        accelerator = accelerator or ("gpu" if kind == "cuda" else kind)
        if devices is None and index:
            devices = [int(index)]
    devices = 1 if devices is None else int(devices) if str(devices).isdigit() else devices
    # a list names devices of this node; "auto" or -1 may mean several
    several = (len(devices) if isinstance(devices, list) else devices) != 1 or args.num_nodes > 1
    return {
        "accelerator": accelerator or "cpu",
        "devices": devices,
        "num_nodes": args.num_nodes,
        "strategy": args.strategy or ("ddp" if several else "auto"),
    }


def _run_catalogue(
    args: argparse.Namespace, inference: Any, files: Sequence[Path], task: str
) -> Any:
    """Run a ``--db`` job; the report on global rank 0, ``None`` on the other ranks."""
    from .catalogue import run_catalogue

    report = run_catalogue(
        inference,
        files,
        args.db,
        task=task,
        checkpoint=args.checkpoint,
        files_per_step=args.files_per_step,
        workers=args.workers,
        progress=not args.quiet,
        **_lightning_devices(args),
    )
    if report is not None:
        logging.getLogger("musictag").info(
            "%s: %d of %d files done (%d by this run, %d before), %d failed",
            report.db, report.done_before + report.done_now, report.files, report.done_now,
            report.done_before, len(report.failed),
        )  # fmt: skip
    return report


def _write_predictions(results: Any, args: argparse.Namespace) -> int:
    """Write ``TagResult``s as they come (text, JSON or CSV); returns how many were written."""
    out = open(args.output, "w", newline="", encoding="utf-8") if args.output else sys.stdout
    n = 0
    try:
        if args.format == "csv":
            w = csv.writer(out)
            w.writerow(["file", "rank", "tag", "score"])
        elif args.format == "json":
            out.write("[")
        for r in results:
            if args.format == "json":
                doc = r.to_dict(windows=args.windows, all_scores=args.all_scores)
                # json.dump(list, indent=2), one item at a time
                text = json.dumps(doc, indent=2, ensure_ascii=False).replace("\n", "\n  ")
                out.write(("," if n else "") + "\n  " + text)
            elif args.format == "csv":
                for rank, (t, s) in enumerate(r.labels, 1):
                    w.writerow([r.source, rank, t, f"{s:.6f}"])
            else:
                out.write(f"{r.source}: " + ", ".join(f"{t} ({s:.3f})" for t, s in r.labels) + "\n")
            n += 1
        if args.format == "json":
            out.write("\n]\n" if n else "]\n")
    finally:
        if out is not sys.stdout:
            out.close()
    return n


@_user_errors
def _cmd_predict(args: argparse.Namespace) -> int:
    from .plots import plot_tag_activation

    log = logging.getLogger("musictag")
    files = _audio_files(args.inputs)
    model = _load_model(args.checkpoint, None if args.db else args.device)
    threshold, top_k = _thresholds(args, model)
    inference = _inference(
        args,
        model,
        aggregation=args.aggregate,
        top_k=top_k,
        threshold=threshold,
        strict=args.strict,
        threads=args.threads,
        prefetch=args.prefetch,
        pad_short=args.pad_short,
        optimize=args.optimize,
    )
    plots = _plot_paths(args.plot, files) if args.plot else {}
    plotted: list[Path] = []
    failed: list[Any] = []

    def tagged() -> Any:
        if args.db:
            from .catalogue import read_results

            stored = read_results(args.db, files)
        else:
            stored = _progress(inference.iter_files(files), len(files), "tagging", args.quiet)
        for path, result in stored:
            if isinstance(result, Exception):
                log.error("skipped %s", result)
                failed.append(path)
                continue
            if args.plot:
                plotted.append(plot_tag_activation(result, plots[path], top_k=args.plot_tags))
            yield result

    if args.db:
        report = _run_catalogue(args, inference, files, "predict")
        if report is None:
            return 0  # not global rank 0: rank 0 writes the outputs
        failed.extend(path for path, _ in report.failed)
    n = _write_predictions(tagged(), args)
    if plotted:
        log.info("tag activation plots: %s", ", ".join(map(str, plotted)))
    if inference.truncated:
        log.warning(
            "%d of %d files decoded to less audio than their headers promise and were tagged "
            "from what decodes (--strict refuses them): %s",
            len(inference.truncated),
            len(files),
            "; ".join(
                f"{t.path} ({t.decoded_s:.2f} s of {t.expected_s:.2f} s)"
                for t in inference.truncated
            ),
        )
    if failed:
        log.warning("%d of %d files could not be tagged", len(failed), len(files))
    return 1 if not n else 0


def _embed_set(args: argparse.Namespace, model: Any, inputs: Sequence[str]) -> Any:
    """Embed files, folders, @lists and shard sets into an EmbeddingSet (None if nothing worked)."""
    import numpy as np

    from .search import EmbeddingSet, embed_tracks

    log = logging.getLogger("musictag")
    vectors, tracks, failed = [], [], 0
    stream = embed_tracks(
        model,
        inputs,
        layers=args.layers,
        hop=_hop(args, model),
        crops=args.crops,
        batch_size=args.batch_size,
        splits=args.split,
    )
    for info, emb in _progress(stream, None, "embedding", args.quiet, unit="track"):
        if isinstance(emb, Exception):
            log.error("skipped %s", emb)
            failed += 1
            continue
        vectors.append(emb)
        tracks.append(info)
    if failed:
        log.warning("%d tracks could not be embedded", failed)
    if not vectors:
        return None
    return EmbeddingSet(np.stack(vectors), tracks, _embedding_meta(args, model))


def _embedding_meta(args: argparse.Namespace, model: Any) -> dict[str, Any]:
    """How the vectors of ``musictag embed`` are made (``index.json``)."""
    return {
        "checkpoint": str(Path(args.checkpoint).resolve()),
        "model": type(model).__name__,
        "layers": args.layers,
        "protocol": {
            "sample_rate": model.sample_rate,
            "window": model.crop_samples,
            "hop": _hop(args, model),
            "crops": args.crops,
            "shard_crops": args.crops or int(model.hparams.get("eval_crops", 16)),
        },
    }


def _catalogue_embed(args: argparse.Namespace) -> Any:
    """``embed --db``: the EmbeddingSet of the stored results (``False`` on ranks other than
    0, ``None`` if nothing could be embedded)."""
    import numpy as np

    from .catalogue import read_results
    from .inputs import is_shard_folder
    from .search import EmbeddingSet

    shards = [s for s in args.inputs if not s.startswith("@") and is_shard_folder(s)]
    if shards:
        raise ValueError(f"{shards[0]} is a shard set: --db runs take audio files and folders")
    files = _audio_files(args.inputs)
    model = _load_model(args.checkpoint, None)
    inference = _inference(args, model, embeddings=args.layers, top_k=5)  # top 5: `predicted`
    if _run_catalogue(args, inference, files, "embed") is None:
        return False
    vectors, tracks = [], []
    for path, r in read_results(args.db, files):
        vectors.append(r.embedding)
        predicted = [[t, round(s, 6)] for t, s in r.labels]
        tracks.append({"id": path.stem, "path": str(path), "tags": [], "predicted": predicted})
    if not vectors:
        return None
    return EmbeddingSet(np.stack(vectors), tracks, _embedding_meta(args, model))


@_user_errors
def _cmd_embed(args: argparse.Namespace) -> int:
    if args.db:
        emb = _catalogue_embed(args)
        if emb is False:
            return 0  # not global rank 0: rank 0 writes the outputs
    else:
        emb = _embed_set(args, _load_model(args.checkpoint, args.device), args.inputs)
    if emb is None:
        print("musictag embed: nothing could be embedded", file=sys.stderr)
        return 1
    out = emb.save(args.output)
    print(f"wrote {len(emb)} embeddings [{len(emb)}, {emb.dim}] to {out / 'embeddings.npy'}")
    print(f"track index (row -> id, path, tags): {out / 'index.json'}")
    return 0


@_user_errors
def _cmd_index(args: argparse.Namespace) -> int:
    from .search import EMBEDDINGS_NAME, EmbeddingSet, TrackIndex

    sets, audio = [], []
    for inp in args.inputs:
        if Path(inp).is_dir() and (Path(inp) / EMBEDDINGS_NAME).is_file():
            sets.append(EmbeddingSet.load(inp))
        else:
            audio.append(inp)
    if audio:
        if not args.checkpoint:
            raise ValueError(
                f"{audio[0]} is audio (or a shard set), not a folder written by `musictag embed`: "
                "pass --checkpoint to embed it"
            )
        model = _load_model(args.checkpoint, args.device)
        emb = _embed_set(args, model, audio)
        if emb is not None:
            sets.append(emb)
    if not sets:
        print("musictag index: nothing to index", file=sys.stderr)
        return 1
    index = TrackIndex.build(sets, backend=args.backend)
    out = index.save(args.output)
    print(f"index of {len(index)} tracks ({index.set.dim}-d, {index.backend} search) in {out}")
    return 0


@_user_errors
def _cmd_search(args: argparse.Namespace) -> int:
    import numpy as np

    from .inference import Inference
    from .search import TrackIndex

    log = logging.getLogger("musictag")
    index = TrackIndex.load(args.index, backend=args.backend)
    meta = index.set.meta
    names, vectors = [], []
    audio = [q for q in args.queries if not q.endswith(".npy")]
    for q in args.queries:
        if q.endswith(".npy"):
            v = np.load(q, allow_pickle=False)
            for i, row in enumerate(np.atleast_2d(v)):
                names.append(q if v.ndim == 1 else f"{q}[{i}]")
                vectors.append(row)
    if audio:
        checkpoint = args.checkpoint or meta.get("checkpoint")
        if not checkpoint:
            raise ValueError(f"{args.index} records no checkpoint: pass --checkpoint")
        model = _load_model(checkpoint, args.device)
        proto = meta.get("protocol", {})
        inference = Inference(
            model,
            hop=proto.get("hop"),
            crops=args.crops or proto.get("crops"),
            batch_size=args.batch_size,
            embeddings=meta.get("layers", "last"),
        )
        for path, result in inference.iter_files(audio):
            if isinstance(result, Exception):
                log.error("skipped %s", result)
                continue
            names.append(str(path))
            vectors.append(result.embedding)
    if not vectors:
        print("musictag search: no query could be embedded", file=sys.stderr)
        return 1
    hits = index.search(np.stack(vectors), top_k=args.top_k)
    if args.format == "json":
        docs = [
            {
                "query": name,
                "results": [
                    {"rank": h.rank, "score": round(h.score, 6), "row": h.index, **h.track}
                    for h in row
                ],
            }
            for name, row in zip(names, hits)
        ]
        json.dump(docs, sys.stdout, indent=2, ensure_ascii=False)
        print()
    else:
        for name, row in zip(names, hits):
            print(f"{name}:")
            for h in row:
                print(f"  {h.rank:3d}  {h.score:.4f}  {h.track.get('id')}  {h.track.get('path')}")
    return 0


@_user_errors
def _cmd_serve(args: argparse.Namespace) -> int:
    try:
        from .serve import load_app, run
    except ImportError as e:
        print(f"musictag serve: error: {e}", file=sys.stderr)
        return 2
    app = load_app(
        args.checkpoint,
        args.index,
        hop_seconds=args.hop_seconds,
        batch_size=args.batch_size,
        max_upload_mb=args.max_upload_mb,
        device=args.device,
    )
    print(f"musictag serve: open http://{args.host}:{args.port}/ (Ctrl+C stops)", flush=True)
    run(app, args.host, args.port)
    return 0


@_user_errors
def _cmd_se_analysis(args: argparse.Namespace) -> int:
    import numpy as np

    from .analysis import collect_excitations_from_shards
    from .plots import plot_excitations

    model = _load_model(args.checkpoint, args.device)
    stats = collect_excitations_from_shards(
        model,
        args.shards,
        tags=args.tags,
        split=args.split,
        crops=args.crops,
        max_tracks=args.max_tracks,
        top_tags=args.top_tags,
    )
    out = plot_excitations(stats, args.output)
    counts = ", ".join(f"{t} {c}" for t, c in zip(stats.tags, stats.counts))
    print(
        f"{stats.n_tracks} tracks; per tag: {counts}"
        + (f" ({stats.n_skipped} damaged tracks left out)" if stats.n_skipped else "")
    )
    print("block     mean excitation   spread across tags (mean over channels of the std)")
    for b in stats.blocks:
        means = stats.mean(b)[stats.counts > 0]
        spread = float(np.nanmean(means.std(axis=0))) if len(means) > 1 else float("nan")
        print(f"{b:9s} {float(stats.overall(b).mean()):.4f}            {spread:.4f}")
    print(f"plot: {out}")
    return 0


@_user_errors
def _cmd_verify(args: argparse.Namespace) -> int:
    from .data.integrity import verify_shards

    failed = False
    for path in args.shards:
        report = verify_shards(path)
        for problem in report.problems:
            print(Path(path) / str(problem))  # shards/train-000002.tar: key: what
        if report.unverified_shards:
            print(
                f"musictag verify: {path}: {len(report.unverified_shards)} of {report.n_shards} "
                "shards carry no checksums (written before musictag recorded them): their tracks "
                "were decoded but are unverified",
                file=sys.stderr,
            )
        print(
            f"musictag verify: {path}: {report.n_shards} shards, {report.n_samples} tracks: "
            + ("ok" if report.ok else f"{len(report.problems)} problems"),
            file=sys.stderr,
        )
        failed = failed or not report.ok
    return 1 if failed else 0


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
    if report.truncated:
        print(
            f"{name}: {len(report.truncated)} of the written tracks decoded to less audio than "
            f"their headers promise (listed in {report.out_dir / 'truncated.tsv'}; --strict "
            "refuses them)"
        )
    return 0


def _cmd_doctor(args: argparse.Namespace) -> int:
    from .doctor import check_environment, format_checks

    checks = check_environment()
    print(format_checks(checks))
    return 0 if all(c.ok for c in checks) else 1

def _threshold_arg(value: str) -> float | str:
    if value == "auto":
        return value
    try:
        return float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'auto', got {value!r}") from None


@_user_errors
def _cmd_export(args: argparse.Namespace) -> int:
    from .export import export_checkpoint

    try:
        result = export_checkpoint(
            args.checkpoint,
            args.output,
            format=args.format,
            opset=args.opset,
            license=args.license,
            check=not args.no_check,
        )
    except ImportError as e:  # the export extra is not installed
        print(f"musictag export: error: {e}", file=sys.stderr)
        return 2
    card = result.card
    print(
        f"wrote {result.path} ({card['format']}): waveform [batch, {card['window']['samples']}] "
        f"at {card['sample_rate']} Hz -> scores [batch, {len(card['tags'])}] "
        f"({card['output']['activation']})"
    )
    if result.max_abs_diff is not None:
        print(
            f"check on synthetic music: max |score difference| vs PyTorch {result.max_abs_diff:.2e}"
        )
    print(f"model card: {result.card_path}")
    return 0


@_user_errors
def _cmd_calibrate(args: argparse.Namespace) -> int:
    from .calibrate import calibrate_checkpoint, thresholds_summary

    cal, out = calibrate_checkpoint(
        args.checkpoint,
        args.shards,
        split=args.split,
        precision=args.precision,
        crops=args.crops,
        batch_size=args.batch_size,
        device=args.device,
        output=args.output,
    )
    for line in thresholds_summary(cal):
        print(line)
    print(f"stored in {out}; use them with `musictag predict {out} ... --threshold auto`")
    return 0


@_user_errors
def _cmd_evaluate(args: argparse.Namespace) -> int:
    from .calibrate import load_calibration
    from .evaluation import METRIC_KEYS, evaluate_shards

    model = _load_model(args.checkpoint, args.device)
    calibration = load_calibration(args.checkpoint)
    thresholds = calibration.for_tags(model.tags) if calibration is not None else 0.5
    report = evaluate_shards(
        model, args.shards, split=args.split, crops=args.crops, thresholds=thresholds
    )
    print(f"{args.split}: {report.n_tracks} tracks (per track, crop-averaged)")
    for k in (*METRIC_KEYS, "f1_macro", "f1_micro"):
        print(f"  {k:14s} {report.metrics[k]:.4f}")
    print(f"  F1 at {'the calibrated thresholds' if calibration is not None else '0.5'}")
    if report.n_failed:
        print(f"  {report.n_failed} damaged or undecodable tracks not scored (see the log)")
    if args.json:
        Path(args.json).write_text(json.dumps(report.to_dict(), indent=2) + "\n")
        print(f"metrics: {args.json}")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from .training.cli import run_train_command

    return run_train_command(args)


def _cmd_convert_sota(args: argparse.Namespace) -> int:
    from .pretrained import save_sota_checkpoint

    out = save_sota_checkpoint(args.path, args.arch, args.dataset, args.output)
    print(f"wrote {out} ({args.arch} trained on {args.dataset}); load it with musictag.load_tagger")
    return 0


def _add_inputs(p: argparse.ArgumentParser, shards: bool = False) -> None:
    p.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="audio files, folders (searched recursively), @list.txt (one path per line)"
        + (", shard folders (manifest.json)" if shards else ""),
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _add_windowing(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--hop-seconds", type=float, default=None, help="window hop; default: the model's input"
    )
    p.add_argument(
        "--crops", type=int, default=None, help="K evenly spaced crops per track, not windows"
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="windows per forward pass (default: the fastest, measured once per model and "
        "device and cached)",
    )
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cpu)")


def _add_embedding(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--layers",
        choices=("last", "all"),
        default="last",
        help="last: penultimate layer; all: every stage pooled + concatenated",
    )
    p.add_argument("--split", nargs="+", default=None, help="shard splits (default: all)")
    _add_windowing(p)


def _add_speed(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("speed (docs/inference.md#speed)")
    g.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads of the model on CPU (default: measured with --batch-size)",
    )
    g.add_argument(
        "--prefetch",
        type=int,
        default=None,
        help="files decoded ahead on background threads; 0: decode in turn (default: cores - 1, "
        "at most 2 on CPU, 4 with a GPU)",
    )
    g.add_argument(
        "--pad-short",
        action="store_true",
        default=None,
        help="zero-pad files shorter than one window to the window (default: score them at "
        "their own length when the model accepts it, except the FCN)",
    )
    g.add_argument(
        "--exact",
        dest="optimize",
        action="store_false",
        help="run the model as it is, not its optimised copy (BatchNorm folded, channels_last; "
        "equal to 1e-5)",
    )


def _add_catalogue(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group(
        "catalogue runs: resumable, on several processes, GPUs or nodes (docs/catalogue.md)"
    )
    g.add_argument(
        "--db",
        default=None,
        metavar="FILE.sqlite",
        help="results database and journal: finished files are committed as they complete and "
        "a rerun with the same --db skips them; runs through Lightning's Trainer.predict",
    )
    g.add_argument("--accelerator", default=None, help="cpu, gpu, auto ... (default: cpu)")
    g.add_argument("--devices", default=None, help="devices (processes) per node (default: 1)")
    g.add_argument("--num-nodes", type=int, default=1, help="nodes (default: %(default)s)")
    g.add_argument("--strategy", default=None, help="default: ddp for several processes")
    g.add_argument("--workers", type=int, default=0, help="data-loader processes decoding audio")
    g.add_argument(
        "--files-per-step", type=int, default=8, help="files per prediction step (default: 8)"
    )


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
        "--minutes", type=float, default=3.5, help="training budget (default: %(default)s)"
    )
    d.add_argument("--epochs", type=int, default=60, help="maximum epochs (default: %(default)s)")
    d.add_argument(
        "--workers", type=int, default=1, help="data-loader workers (default: %(default)s)"
    )
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--quiet", action="store_true", help="no progress bars")
    d.set_defaults(func=_cmd_demo)

    r = sub.add_parser("predict", help="tag audio files of any length and format")
    r.add_argument(
        "checkpoint", help="a musictag checkpoint (.ckpt; musictag convert-sota makes one)"
    )
    _add_inputs(r)
    r.add_argument(
        "--top-k", type=int, default=None, help="tags per file (default: 5; all with auto)"
    )
    r.add_argument(
        "--threshold",
        type=_threshold_arg,
        default=None,
        help="only tags scoring at least this; 'auto': each tag's calibrated threshold "
        "(musictag calibrate)",
    )
    r.add_argument("--format", choices=("text", "json", "csv"), default="text")
    r.add_argument("-o", "--output", default=None, help="write the results here (default: stdout)")
    r.add_argument("--windows", action="store_true", help="JSON: add per-window scores")
    r.add_argument("--all-scores", action="store_true", help="JSON: add every tag's track score")
    r.add_argument(
        "--plot",
        default=None,
        metavar="PNG",
        help="draw tag activation over time: out.png (one file), out_<stem>.png (several), "
        "or a folder",
    )
    r.add_argument("--plot-tags", type=int, default=5, help="tags drawn (default: %(default)s)")
    _add_windowing(r)
    r.add_argument("--aggregate", choices=("mean", "max"), default=None, help="default: model's")
    _add_catalogue(r)
    r.add_argument(
        "--strict",
        action="store_true",
        help="refuse files that decode to less audio than their headers promise "
        "(default: tag what decodes, with a warning)",
    )
    _add_speed(r)
    r.set_defaults(func=_cmd_predict)

    e = sub.add_parser(
        "embed", help="one embedding per track (files, folders, @lists, shard sets) -> .npy + index"
    )
    e.add_argument("checkpoint", help="a musictag checkpoint (.ckpt)")
    _add_inputs(e, shards=True)
    e.add_argument("-o", "--output", required=True, help="output folder")
    _add_embedding(e)
    _add_catalogue(e)
    e.set_defaults(func=_cmd_embed)

    x = sub.add_parser("index", help="build a similarity index of track embeddings")
    x.add_argument(
        "inputs",
        nargs="+",
        help="folders written by `musictag embed`, or audio (needs --checkpoint)",
    )
    x.add_argument("-o", "--output", required=True, help="index folder")
    x.add_argument("--checkpoint", default=None, help="model to embed audio inputs with")
    x.add_argument("--backend", choices=("auto", "exact", "faiss"), default="auto")
    x.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_embedding(x)
    x.set_defaults(func=_cmd_index)

    s = sub.add_parser("search", help="nearest tracks of query files by cosine similarity")
    s.add_argument("index", help="index folder (musictag index) or embedding folder")
    s.add_argument("queries", nargs="+", help="audio files, or .npy embeddings")
    s.add_argument("--top-k", type=int, default=10, help="results per query (default: %(default)s)")
    s.add_argument("--checkpoint", default=None, help="default: the one the index records")
    s.add_argument("--crops", type=int, default=None, help="embed queries with K crops")
    s.add_argument("--batch-size", type=int, default=16, help="windows per forward pass")
    s.add_argument("--backend", choices=("auto", "exact", "faiss"), default="auto")
    s.add_argument("--format", choices=("text", "json"), default="text")
    s.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cpu)")
    s.set_defaults(func=_cmd_search)

    v = sub.add_parser(
        "serve", help="a local web page that tags an audio file live (docs/serve.md)"
    )
    v.add_argument("checkpoint", help="a musictag checkpoint (.ckpt)")
    v.add_argument("--index", default=None, help="index folder (musictag index): similar tracks")
    v.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    v.add_argument("--port", type=int, default=8000, help="port (default: %(default)s)")
    v.add_argument(
        "--hop-seconds", type=float, default=None, help="window hop; default: index's or model's"
    )
    v.add_argument(
        "--batch-size",
        type=int,
        default=8,
        help="windows per pass and event (default: %(default)s)",
    )
    v.add_argument(
        "--max-upload-mb", type=float, default=200.0, help="upload limit (default: %(default)s)"
    )
    v.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cpu)")
    v.set_defaults(func=_cmd_serve)

    a = sub.add_parser(
        "se-analysis", help="mean squeeze-and-excitation activations per tag (Kim et al. 2018)"
    )
    a.add_argument("checkpoint", help="a checkpoint of a model with SE blocks (samplecnn_se ...)")
    a.add_argument("shards", help="shard folder (manifest.json); tracks are grouped by their tags")
    a.add_argument("-o", "--output", required=True, help="output image (.png)")
    a.add_argument("--split", default=None, help="split to read (default: all)")
    a.add_argument("--tags", nargs="+", default=None, help="tags to compare")
    a.add_argument("--top-tags", type=int, default=5, help="else: the most frequent tags")
    a.add_argument("--crops", type=int, default=None, help="crops per track (default: model's)")
    a.add_argument("--max-tracks", type=int, default=None)
    a.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cpu)")
    a.set_defaults(func=_cmd_se_analysis)

    v = sub.add_parser(
        "verify",
        help="check shard sets against their checksums: one line per damaged track, exit 1",
    )
    v.add_argument("shards", nargs="+", help="shard folders (manifest.json)")
    v.set_defaults(func=_cmd_verify)

    v = sub.add_parser(
        "evaluate", help="per-track, crop-averaged PR-AUC and ROC-AUC of a checkpoint on shards"
    )
    v.add_argument("checkpoint", help="a musictag checkpoint (.ckpt)")
    v.add_argument("shards", help="shard folder (manifest.json)")
    v.add_argument("--split", default="test", help="split to score (default: %(default)s)")
    v.add_argument("--json", default=None, metavar="OUT", help="write the metrics as JSON here")
    v.add_argument("--crops", type=int, default=None, help="crops per track (default: model's)")
    v.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cpu)")
    v.set_defaults(func=_cmd_evaluate)

    from .training.cli import add_train_parser

    add_train_parser(sub, _user_errors(_cmd_train))

    c = sub.add_parser(
        "convert-sota",
        help="convert a published Won et al. (2020) checkpoint into a musictag checkpoint",
    )
    c.add_argument("path", help="best_model.pth of minzwon/sota-music-tagging-models")
    c.add_argument("--arch", required=True, choices=("fcn", "crnn", "musicnn"))
    c.add_argument("--dataset", required=True, choices=("mtat", "msd", "jamendo"))
    c.add_argument("-o", "--output", required=True, help="output .ckpt")
    c.set_defaults(func=_cmd_convert_sota)

    k = sub.add_parser(
        "doctor", help="check that every native library musictag needs loads and works here"
    )
    k.set_defaults(func=_cmd_doctor)

    ex = sub.add_parser(
        "export", help="one graph from waveform to scores (ONNX, TorchScript, torch.export)"
    )
    ex.add_argument("checkpoint", help="a musictag checkpoint (.ckpt)")
    ex.add_argument(
        "-o", "--output", required=True, help="model.onnx, model.pt or model.pt2; card beside it"
    )
    ex.add_argument(
        "--format",
        choices=("onnx", "torchscript", "torch-export"),
        default=None,
        help="default: from the output's extension",
    )
    ex.add_argument("--opset", type=int, default=None, help="ONNX opset (default: exporter's)")
    ex.add_argument("--license", default=None, help="licence of the weights, for the card")
    ex.add_argument("--no-check", action="store_true", help="skip the parity check against PyTorch")
    ex.set_defaults(func=_cmd_export)

    cb = sub.add_parser(
        "calibrate", help="choose per-tag thresholds on a validation split, store them"
    )
    cb.add_argument("checkpoint", help="a musictag checkpoint (.ckpt); rewritten unless -o")
    cb.add_argument("shards", help="shard folder (manifest.json) holding the split")
    cb.add_argument("--split", default="val", help="held-out split (default: %(default)s)")
    cb.add_argument(
        "--precision", type=float, default=None, help="target precision (default: best F1)"
    )
    cb.add_argument("-o", "--output", default=None, help="write this checkpoint instead")
    cb.add_argument("--crops", type=int, default=None, help="crops per track (default: model's)")
    cb.add_argument("--batch-size", type=int, default=16, help="crops per forward pass")
    cb.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cpu)")
    cb.set_defaults(func=_cmd_calibrate)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``musictag`` console command."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "prepare":
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
        return _cmd_prepare(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "db", True) and (args.devices or args.num_nodes != 1):
        parser.error("--devices and --num-nodes need --db (a catalogue run)")
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
