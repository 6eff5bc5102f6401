"""A user's own music folder: labels from sub-folder names or a CSV/JSON mapping, then shards.

Labels come from the directory level ``label_level`` below the root, or from a mapping file
(CSV ``path,tags[,split]`` or JSON) from relative path to tags. Splits come from the mapping
when it has them, else from a seeded stratified split. Any format soundfile reads, mixed
freely. Options: ``docs/datasets.md#your-own-music-folder``.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ...audio import AUDIO_EXTENSIONS
from ..shards import AudioItem, ShardWriteReport, write_shards
from .common import SPLITS, check_audio_files, check_columns, resolve_audio, stratified_split

__all__ = [
    "SPLIT_ALIASES",
    "MappedFile",
    "folder_labels",
    "folder_splits",
    "prepare_folder",
    "read_mapping",
    "scan_audio",
]

log = logging.getLogger(__name__)


SPLIT_ALIASES: dict[str, str] = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "dev": "val",
    "test": "test",
}
"""Split names accepted in a mapping (case-insensitive) -> the split written."""


@dataclass(frozen=True)
class MappedFile:
    """One entry of a mapping file.

    Attributes:
        path: Path relative to the root, ``/``-separated.
        tags: Tags, in file order (may be empty: a track with none of the tags).
        split: ``train``/``val``/``test`` when the mapping gives one, else ``None``.
        where: ``file:line`` (CSV) or ``file: key`` (JSON), for messages.
    """

    path: str
    tags: tuple[str, ...]
    split: str | None
    where: str


def scan_audio(
    root: str | os.PathLike[str], extensions: Sequence[str] = AUDIO_EXTENSIONS
) -> list[str]:
    """Find the audio files under a folder.

    Hidden files and folders (name starting with ``.``, e.g. macOS ``._song.mp3``) are skipped.

    Args:
        root: Folder to walk (symbolic links to folders are not followed).
        extensions: Extensions without the dot, matched case-insensitively.

    Returns:
        Relative ``/``-separated paths, sorted.

    Raises:
        FileNotFoundError: If ``root`` is not a folder.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"music folder {root} not found")
    exts = {"." + e.lower().lstrip(".") for e in extensions}
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        rel_dir = Path(dirpath).relative_to(root)
        for name in filenames:
            if name.startswith(".") or Path(name).suffix.lower() not in exts:
                continue
            found.append((rel_dir / name).as_posix())
    return sorted(found)


def folder_labels(files: Sequence[str], level: int = 0) -> tuple[dict[str, str], list[str]]:
    """Label each file by the name of one of its folders.

    Args:
        files: Relative ``/``-separated paths.
        level: Index into the file's folders below the root: 0 is the first
            (``rock`` in ``rock/live/a.mp3``), 1 the second, -1 the file's own folder.

    Returns:
        ``({path: label}, unlabelled)``, where ``unlabelled`` are the files with no folder at
        that level (e.g. files directly in the root).
    """
    labels: dict[str, str] = {}
    unlabelled: list[str] = []
    for f in files:
        dirs = PurePosixPath(f).parts[:-1]
        if -len(dirs) <= level < len(dirs):
            labels[f] = dirs[level]
        else:
            unlabelled.append(f)
    return labels, unlabelled


def _clean_rel(path: str) -> str:
    rel = path.strip().replace("\\", "/")
    while rel.startswith("./"):
        rel = rel[2:]
    return rel


def _split_name(value: str, where: str) -> str:
    split = SPLIT_ALIASES.get(value.strip().lower())
    if split is None:
        raise ValueError(
            f"{where}: unknown split {value!r}; use one of {', '.join(sorted(SPLIT_ALIASES))}"
        )
    return split


def read_mapping(
    path: str | os.PathLike[str],
    *,
    path_column: str = "path",
    tags_column: str = "tags",
    split_column: str = "split",
    tag_separator: str = ";",
) -> list[MappedFile]:
    """Read a file -> tags mapping (CSV, or JSON for a ``.json`` file).

    CSV: a header row naming ``path_column`` and ``tags_column`` (and optionally
    ``split_column``); tags are joined by ``tag_separator``. JSON: an object whose keys are paths
    and whose values are lists of tags or objects with ``tags_column`` (list) and optionally
    ``split_column`` (string). When splits are given, every entry must have one.

    Args:
        path: The mapping file.
        path_column: Column (CSV) holding the relative audio path.
        tags_column: Column (CSV) / field (JSON objects) holding the tags.
        split_column: Column / field holding the split, used when present.
        tag_separator: Separator of the tags inside the CSV column.

    Returns:
        The entries in file order.

    Raises:
        FileNotFoundError: If the file does not exist.
        ValueError: On a missing column, a malformed row or value, an empty or repeated path,
            an unknown split or a split given for some entries only; the message names the file
            and the row (CSV line or JSON key).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"label mapping {path} not found")
    if not tag_separator:
        raise ValueError("tag_separator must not be empty")
    entries = (
        _read_json(path, tags_column, split_column)
        if path.suffix.lower() == ".json"
        else (_read_csv(path, path_column, tags_column, split_column, tag_separator))
    )
    seen: dict[str, str] = {}
    with_split = [e for e in entries if e.split is not None]
    if with_split and len(with_split) != len(entries):
        first = next(e for e in entries if e.split is None)
        raise ValueError(
            f"{first.where}: no split, but other entries have one; give every entry a split or none"
        )
    for e in entries:
        if e.path in seen:
            raise ValueError(f"{e.where}: {e.path!r} is listed twice (also at {seen[e.path]})")
        seen[e.path] = e.where
        try:
            resolve_audio(".", e.path)
        except ValueError as err:
            raise ValueError(f"{e.where}: {err}") from None
    return entries


def _read_csv(
    path: Path, path_column: str, tags_column: str, split_column: str, sep: str
) -> list[MappedFile]:
    out = []
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        header = [h.strip() for h in next(reader, [])]
        cols = check_columns(path, header, (path_column, tags_column))
        split_col = cols.get(split_column)
        for row in reader:
            line = reader.line_num
            where = f"{path}:{line}"
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) != len(header):
                raise ValueError(
                    f"{where}: expected {len(header)} fields ({', '.join(header)}), got "
                    f"{len(row)}; quote fields that contain a comma"
                )
            rel = _clean_rel(row[cols[path_column]])
            if not rel:
                raise ValueError(f"{where}: empty {path_column!r}")
            tags = tuple(dict.fromkeys(t.strip() for t in row[cols[tags_column]].split(sep)))
            split = None
            if split_col is not None:
                value = row[split_col]
                if not value.strip():
                    raise ValueError(f"{where}: empty {split_column!r}")
                split = _split_name(value, where)
            out.append(MappedFile(rel, tuple(t for t in tags if t), split, where))
    return out


def _read_json(path: Path, tags_field: str, split_field: str) -> list[MappedFile]:
    try:
        obj = json.loads(path.read_text(encoding="utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not valid JSON: {e}") from e
    if not isinstance(obj, dict):
        raise ValueError(
            f"{path}: expected an object mapping audio paths to tag lists, got a "
            f"{type(obj).__name__}"
        )
    out = []
    for key, value in obj.items():
        where = f"{path}: {key!r}"
        split = None
        if isinstance(value, dict):
            if tags_field not in value:
                raise ValueError(f"{where}: no {tags_field!r} field")
            if split_field in value:
                if not isinstance(value[split_field], str):
                    raise ValueError(f"{where}: {split_field!r} must be a string")
                split = _split_name(value[split_field], where)
            value = value[tags_field]
        if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
            raise ValueError(f"{where}: tags must be a list of strings, got {value!r:.80}")
        rel = _clean_rel(key)
        if not rel:
            raise ValueError(f"{where}: empty path")
        tags = tuple(dict.fromkeys(t.strip() for t in value if t.strip()))
        out.append(MappedFile(rel, tags, split, where))
    return out


def folder_splits(
    root: str | os.PathLike[str],
    *,
    labels: str | os.PathLike[str] | None = None,
    label_level: int = 0,
    path_column: str = "path",
    tags_column: str = "tags",
    split_column: str = "split",
    tag_separator: str = ";",
    extensions: Sequence[str] = AUDIO_EXTENSIONS,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    stratify: str = "first",
    seed: int = 0,
    skip_missing: bool = False,
) -> tuple[dict[str, list[AudioItem]], dict[str, int]]:
    """Build the shard items of a labelled folder (see :func:`prepare_folder` for the options).

    Returns:
        ``({"train": items, "val": items, "test": items}, stats)``; ``stats`` counts
        ``n_files`` (audio files found), ``n_ignored`` (files found but not labelled: not in
        the mapping, or no folder at ``label_level``) and ``n_missing`` (mapped files that
        do not exist). Track ids are the relative paths.

    Raises:
        FileNotFoundError: If the root or mapping is missing, or mapped files are missing and
            ``skip_missing`` is false (the message names the mapping rows).
        ValueError: On a malformed mapping or bad options.
    """
    if stratify not in ("first", "set"):
        raise ValueError(f"stratify must be 'first' or 'set', got {stratify!r}")
    fractions = (1.0 - val_fraction - test_fraction, val_fraction, test_fraction)
    if min(fractions) < 0:
        raise ValueError(
            f"val_fraction and test_fraction must be >= 0 with a sum <= 1, got {val_fraction}, "
            f"{test_fraction}"
        )
    root = Path(root)
    files = scan_audio(root, extensions)
    if labels is None:
        by_folder, ignored = folder_labels(files, label_level)
        entries = [MappedFile(f, (label,), None, f"{root / f}") for f, label in by_folder.items()]
        if not entries:
            raise ValueError(
                f"{root}: no audio file ({', '.join(extensions)}) sits in a sub-folder at "
                f"label_level={label_level}; put files in <root>/<label>/ or pass a mapping"
            )
        n_missing = 0
    else:
        entries = read_mapping(
            labels,
            path_column=path_column,
            tags_column=tags_column,
            split_column=split_column,
            tag_separator=tag_separator,
        )
        if not entries:
            raise ValueError(f"{labels}: the mapping lists no file")
        mapped = {e.path for e in entries}
        ignored = [f for f in files if f not in mapped]
        missing = [e for e in entries if not resolve_audio(root, e.path).is_file()]
        n_missing = len(missing)
        if missing and not skip_missing:
            shown = "; ".join(f"{e.where} {e.path!r}" for e in missing[:5])
            raise FileNotFoundError(
                f"{len(missing)} of the {len(entries)} files in {labels} do not exist under "
                f"{root}: {shown}{' ...' if len(missing) > 5 else ''}. Fix the paths (relative "
                "to the root) or pass skip_missing=True"
            )
    if ignored:
        log.info(
            "%d audio file(s) under %s are not labelled and are ignored (e.g. %s)",
            len(ignored),
            root,
            ignored[0],
        )

    def item(e: MappedFile) -> AudioItem:
        return AudioItem(
            path=resolve_audio(root, e.path), tags=e.tags, track_id=e.path, metadata={}
        )

    if entries and entries[0].split is not None:
        splits: dict[str, list[AudioItem]] = {s: [] for s in SPLITS}
        for e in entries:
            splits[e.split].append(item(e))
    else:
        by_label: dict[str, list[MappedFile]] = {}
        for e in entries:
            key = (e.tags[0] if e.tags else "") if stratify == "first" else "|".join(sorted(e.tags))
            by_label.setdefault(key, []).append(e)
        parts = stratified_split(by_label, fractions, seed, SPLITS)
        order = {e.path: i for i, e in enumerate(entries)}
        splits = {
            s: [item(e) for e in sorted(v, key=lambda e: order[e.path])] for s, v in parts.items()
        }
    stats = {"n_files": len(files), "n_ignored": len(ignored), "n_missing": n_missing}
    return splits, stats


def prepare_folder(
    *,
    root: str,
    out: str,
    labels: str | None = None,
    label_level: int = 0,
    path_column: str = "path",
    tags_column: str = "tags",
    split_column: str = "split",
    tag_separator: str = ";",
    extensions: list[str] | None = None,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    stratify: str = "first",
    seed: int = 0,
    skip_missing: bool = False,
    sample_rate: int = 16000,
    workers: int = 1,
    strict: bool = False,
    max_samples_per_shard: int = 1000,
    progress: bool = True,
) -> ShardWriteReport:
    """Write a labelled music folder into shards.

    Labels come from sub-folder names, or from a mapping file when ``labels`` is given (then
    audio files it does not list are ignored and counted, and files it lists that do not exist
    are an error unless ``skip_missing``). Splits come from the mapping's split column/field if
    it has one, else from a seeded split stratified on the first tag (or the tag set).

    Args:
        root: The music folder.
        out: Output folder for the shards (reuse it only to resume the same job).
        labels: Mapping file: ``.json`` (``{"a/b.mp3": ["tag", ...]}`` or
            ``{"a/b.mp3": {"tags": [...], "split": "test"}}``) or CSV with a header. Paths are
            relative to ``root``. Without it, labels are folder names.
        label_level: Folder level naming the label when there is no mapping: 0 is the first
            folder below ``root``, 1 the next, -1 the file's own folder.
        path_column: CSV column of the relative path.
        tags_column: CSV column (JSON field) of the tags.
        split_column: CSV column (JSON field) of the split (``train``, ``val``/``valid``/
            ``validation``, ``test``); used when present.
        tag_separator: Separator between tags in the CSV tags column.
        extensions: Audio extensions to collect, without dot, case-insensitive; default
            ``wav flac ogg oga opus mp3 aif aiff``.
        val_fraction: Share of ``val`` when the split is drawn.
        test_fraction: Share of ``test`` when the split is drawn.
        stratify: ``first`` (stratify on each file's first tag) or ``set`` (on its tag set).
        seed: Seed of the drawn split.
        skip_missing: Skip mapped files that do not exist instead of raising.
        sample_rate: Sample rate of the audio in the shards, in Hz.
        workers: Processes decoding and writing in parallel.
        strict: Refuse (list in ``failures.tsv``) files that decode to less audio than their
            headers promise; by default they are written from what decodes, with a warning,
            and listed in ``truncated.tsv``.
        max_samples_per_shard: Most tracks in one shard.
        progress: Show progress bars.

    Returns:
        The shard writer's report. Unreadable audio files are skipped and listed in
        ``failures.tsv``.

    Raises:
        FileNotFoundError: If ``root`` or the mapping is missing, or mapped files are missing
            and ``skip_missing`` is false.
        ValueError: On a malformed mapping or bad options; the message names the file and row.
    """
    exts = tuple(extensions) if extensions else AUDIO_EXTENSIONS
    splits, stats = folder_splits(
        root,
        labels=labels,
        label_level=label_level,
        path_column=path_column,
        tags_column=tags_column,
        split_column=split_column,
        tag_separator=tag_separator,
        extensions=exts,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        stratify=stratify,
        seed=seed,
        skip_missing=skip_missing,
    )
    if stats["n_missing"]:
        check_audio_files(splits, root=root, skip_missing=True, source="folder")
    counts = Counter(t for items in splits.values() for i in items for t in i.tags)
    single = all(len(i.tags) == 1 for items in splits.values() for i in items)
    options = {
        "root": str(root),
        "labels": labels,
        "label_level": label_level,
        "path_column": path_column,
        "tags_column": tags_column,
        "split_column": split_column,
        "tag_separator": tag_separator,
        "extensions": list(exts),
        "val_fraction": val_fraction,
        "test_fraction": test_fraction,
        "stratify": stratify,
        "seed": seed,
        "skip_missing": skip_missing,
        "sample_rate": sample_rate,
        "single_label": single,
    }
    return write_shards(
        splits,
        out,
        sample_rate=sample_rate,
        max_samples_per_shard=max_samples_per_shard,
        workers=workers,
        strict=strict,
        provenance={
            "source": "folder",
            "options": options,
            "tags": sorted(counts, key=lambda t: (-counts[t], t)),
            "dropped": {"unlabelled_files": stats["n_ignored"]},
            "stats": stats,
        },
        progress=progress,
    )
