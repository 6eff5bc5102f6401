"""MTG-Jamendo: read the official auto-tagging TSVs and split lists, write shards.

A TSV row is ``TRACK_ID ARTIST_ID ALBUM_ID PATH DURATION TAGS...`` (tags: the trailing fields).
Tags keep their ``category---name`` form, which the published Jamendo checkpoints predict (in
alphabetical order, :func:`tag_vocabulary`). Format and quirks: ``docs/datasets.md#mtg-jamendo``.
"""

from __future__ import annotations

import csv
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

from ..shards import AudioItem, ShardWriteReport, write_shards
from .common import SPLITS, check_audio_files, resolve_audio

__all__ = [
    "CATEGORIES",
    "HEADER",
    "SUBSETS",
    "JamendoTrack",
    "load_splits",
    "prepare_jamendo",
    "read_tag_list",
    "read_tsv",
    "split_file",
    "tag_vocabulary",
    "to_items",
]

log = logging.getLogger(__name__)

HEADER: tuple[str, ...] = ("TRACK_ID", "ARTIST_ID", "ALBUM_ID", "PATH", "DURATION", "TAGS")
"""The header line of every auto-tagging TSV (``TAGS`` stands for all trailing fields)."""

CATEGORIES: tuple[str, ...] = ("genre", "instrument", "mood/theme")
"""Tag categories; a tag is ``<category>---<name>``."""

SUBSETS: dict[str, str] = {
    "all": "autotagging",
    "top50": "autotagging_top50tags",
    "genre": "autotagging_genre",
    "instrument": "autotagging_instrument",
    "moodtheme": "autotagging_moodtheme",
}
"""Subset name -> file stem of its TSVs (``<stem>.tsv``, ``splits/split-N/<stem>-<split>.tsv``)."""

# Category a subset is restricted to, and its official tag list (when the subset has one).
_SUBSET_CATEGORY = {"genre": "genre", "instrument": "instrument", "moodtheme": "mood/theme"}
_TAG_LISTS = {
    "top50": "tags/top50.txt",
    "genre": "tags/genre.txt",
    "instrument": "tags/instrument.txt",
    "moodtheme": "tags/moodtheme.txt",
}
# Official split names in the file names -> the split names every musictag preparer writes.
_SPLIT_FILES = dict(zip(("train", "validation", "test"), SPLITS, strict=True))
_N_OFFICIAL_SPLITS = 5
_TAG_SEP = "---"


@dataclass(frozen=True)
class JamendoTrack:
    """One row of an auto-tagging TSV.

    Attributes:
        track_id: ``track_0000214``.
        artist_id: ``artist_000014``.
        album_id: ``album_000031``.
        path: Audio path relative to the audio root, e.g. ``14/214.mp3``.
        duration: Track duration in seconds, as listed (one decimal).
        tags: ``category---name`` tags, in file order (alphabetical in the official files).
    """

    track_id: str
    artist_id: str
    album_id: str
    path: str
    duration: float
    tags: tuple[str, ...]


def read_tsv(
    path: str | os.PathLike[str], categories: tuple[str, ...] = CATEGORIES
) -> list[JamendoTrack]:
    """Read an auto-tagging TSV (any subset, whole file or one split).

    Args:
        path: The ``.tsv`` file.
        categories: Tag categories allowed in this file.

    Returns:
        One :class:`JamendoTrack` per data row, in file order.

    Raises:
        FileNotFoundError: If the file does not exist.
        ValueError: On a wrong header, a row with fewer than 6 fields or without tags, an empty
            field, a duration that is not a number, a malformed tag or one outside
            ``categories``, a repeated track id. The message names the file and the line.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"MTG-Jamendo metadata file {path} not found")
    tracks: list[JamendoTrack] = []
    seen: dict[str, int] = {}
    # newline="" lets csv handle the CRLF line endings; no quoting in these files.
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader, None)
        names = [h.strip() for h in header or []]
        while names and not names[-1]:
            names.pop()
        if tuple(names) != HEADER:
            got = "<TAB>".join(header) if header else "an empty file"
            raise ValueError(f"{path}:1: expected the header {'<TAB>'.join(HEADER)}, got {got!r}")
        for row in reader:
            line = reader.line_num
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            # Trailing empty fields (a stray tab) are not tags.
            while row and not row[-1].strip():
                row.pop()
            if len(row) < len(HEADER):
                raise ValueError(
                    f"{path}:{line}: expected at least {len(HEADER)} tab-separated fields "
                    f"({', '.join(HEADER)}; tags are the trailing fields), got {len(row)}"
                )
            fields = [c.strip() for c in row]
            empty = [HEADER[i] for i in range(len(HEADER) - 1) if not fields[i]]
            if empty:
                raise ValueError(f"{path}:{line}: empty field(s) {', '.join(empty)}")
            track_id, artist_id, album_id, rel, duration_s = fields[:5]
            try:
                duration = float(duration_s)
            except ValueError:
                duration = math.nan
            if not math.isfinite(duration) or duration < 0:
                raise ValueError(
                    f"{path}:{line}: DURATION {duration_s!r} is not a non-negative number of seconds"
                )
            parts = rel.replace("\\", "/").split("/")
            if rel.startswith(("/", "\\")) or ".." in parts or ":" in parts[0]:
                raise ValueError(
                    f"{path}:{line}: PATH {rel!r} must be relative to the audio root, without '..'"
                )
            tags = tuple(fields[5:])
            for tag in tags:
                category, sep, name = tag.partition(_TAG_SEP)
                if not sep or not name:
                    raise ValueError(
                        f"{path}:{line}: tag {tag!r} is not of the form <category>---<name>"
                    )
                if category not in categories:
                    raise ValueError(
                        f"{path}:{line}: tag {tag!r} has category {category!r}; this file may "
                        f"only hold {', '.join(categories)}"
                    )
            if track_id in seen:
                raise ValueError(
                    f"{path}:{line}: track {track_id} is listed twice (first on line "
                    f"{seen[track_id]})"
                )
            seen[track_id] = line
            tracks.append(
                JamendoTrack(
                    track_id=track_id,
                    artist_id=artist_id,
                    album_id=album_id,
                    path=rel,
                    duration=duration,
                    tags=tuple(dict.fromkeys(tags)),
                )
            )
    return tracks


def read_tag_list(path: str | os.PathLike[str]) -> list[str]:
    """Read an official tag list (``tags/top50.txt``, ``tags/moodtheme.txt``, ...).

    Args:
        path: One ``category---name`` per line.

    Returns:
        The tags in file order (the official files are alphabetical).

    Raises:
        FileNotFoundError: If the file does not exist.
        ValueError: If a tag repeats or is not of the form ``category---name``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"MTG-Jamendo tag list {path} not found")
    tags: list[str] = []
    for line, text in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        tag = text.strip()
        if not tag:
            continue
        if _TAG_SEP not in tag:
            raise ValueError(f"{path}:{line}: tag {tag!r} is not of the form <category>---<name>")
        if tag in tags:
            raise ValueError(f"{path}:{line}: tag {tag!r} is listed twice")
        tags.append(tag)
    return tags


def _check_subset(subset: str) -> None:
    if subset not in SUBSETS:
        raise ValueError(f"unknown MTG-Jamendo subset {subset!r}; choose one of {sorted(SUBSETS)}")


def split_file(metadata_dir: str | os.PathLike[str], subset: str, split: int, name: str) -> Path:
    """Path of one official split file.

    Args:
        metadata_dir: The repository's ``data/`` folder.
        subset: One of :data:`SUBSETS`.
        split: Official split index, 0 to 4.
        name: ``"train"``, ``"validation"`` or ``"test"`` (the names used in the file names).

    Returns:
        ``<metadata_dir>/splits/split-<split>/<stem>-<name>.tsv``.
    """
    _check_subset(subset)
    return Path(metadata_dir, "splits", f"split-{split}", f"{SUBSETS[subset]}-{name}.tsv")


def load_splits(
    metadata_dir: str | os.PathLike[str], subset: str = "top50", split: int = 0
) -> dict[str, list[JamendoTrack]]:
    """Read the three files of one official split.

    Args:
        metadata_dir: The repository's ``data/`` folder.
        subset: ``all``, ``top50``, ``genre``, ``instrument`` or ``moodtheme``.
        split: Official split index, 0 to 4.

    Returns:
        ``{"train": [...], "val": [...], "test": [...]}`` (``validation`` files become ``val``).

    Raises:
        FileNotFoundError: If a split file is missing.
        ValueError: On an unknown subset or split index, a malformed file (see :func:`read_tsv`),
            a tag outside the subset's official tag list, or a track in two splits.
    """
    _check_subset(subset)
    if not 0 <= split < _N_OFFICIAL_SPLITS:
        raise ValueError(f"MTG-Jamendo split must be 0 to {_N_OFFICIAL_SPLITS - 1}, got {split}")
    categories = (_SUBSET_CATEGORY[subset],) if subset in _SUBSET_CATEGORY else CATEGORIES
    allowed: set[str] | None = None
    tag_list = Path(metadata_dir, _TAG_LISTS[subset]) if subset in _TAG_LISTS else None
    if tag_list is not None and tag_list.is_file():
        allowed = set(read_tag_list(tag_list))
    out: dict[str, list[JamendoTrack]] = {}
    where: dict[str, Path] = {}
    for file_name, split_name in _SPLIT_FILES.items():
        path = split_file(metadata_dir, subset, split, file_name)
        tracks = read_tsv(path, categories)
        for t in tracks:
            if allowed is not None:
                unknown = [tag for tag in t.tags if tag not in allowed]
                if unknown:
                    raise ValueError(
                        f"{path}: track {t.track_id} has tag {unknown[0]!r}, which is not in "
                        f"{tag_list}"
                    )
            if t.track_id in where:
                raise ValueError(
                    f"{path}: track {t.track_id} is also in {where[t.track_id]}; the splits of "
                    "one official split must be disjoint"
                )
            where[t.track_id] = path
        out[split_name] = tracks
    return out


def tag_vocabulary(
    splits: dict[str, list[JamendoTrack]],
    metadata_dir: str | os.PathLike[str] | None = None,
    subset: str | None = None,
) -> list[str]:
    """The subset's tags in alphabetical order, the output order of the published checkpoints.

    Args:
        splits: Tracks from :func:`load_splits`.
        metadata_dir: The repository's ``data/`` folder; with ``subset``, the official tag list
            (``tags/top50.txt`` ...) is used when it exists.
        subset: The subset the splits were read from.

    Returns:
        Sorted tag names. With an official list that is the list (``moodtheme`` has 59 tags,
        though the official splits use 56); otherwise the tags found in the splits.
    """
    if metadata_dir is not None and subset in _TAG_LISTS:
        path = Path(metadata_dir, _TAG_LISTS[subset])
        if path.is_file():
            return sorted(read_tag_list(path))
    return sorted({tag for tracks in splits.values() for t in tracks for tag in t.tags})


def to_items(
    tracks: list[JamendoTrack], audio_root: str | os.PathLike[str], low_quality: bool = False
) -> list[AudioItem]:
    """Turn TSV rows into shard items.

    Args:
        tracks: Rows from :func:`read_tsv` / :func:`load_splits`.
        audio_root: Folder holding the unpacked audio (``14/214.mp3`` ...).
        low_quality: Use the low-quality files (``14/214.low.mp3``).

    Returns:
        One item per track; ``metadata`` holds ``artist_id``, ``album_id``, ``path`` and the
        listed ``duration``.
    """
    items = []
    for t in tracks:
        rel = t.path
        if low_quality:
            if not rel.endswith(".mp3"):
                raise ValueError(f"track {t.track_id}: PATH {rel!r} does not end in .mp3")
            rel = rel[: -len(".mp3")] + ".low.mp3"
        items.append(
            AudioItem(
                path=resolve_audio(audio_root, rel),
                tags=t.tags,
                track_id=t.track_id,
                metadata={
                    "artist_id": t.artist_id,
                    "album_id": t.album_id,
                    "path": t.path,
                    "duration": t.duration,
                },
            )
        )
    return items


def prepare_jamendo(
    *,
    root: str,
    out: str,
    subset: str = "top50",
    split: int = 0,
    metadata_dir: str | None = None,
    low_quality: bool = False,
    skip_missing: bool = False,
    sample_rate: int = 16000,
    workers: int = 1,
    strict: bool = False,
    max_samples_per_shard: int = 1000,
    progress: bool = True,
) -> ShardWriteReport:
    """Write one official MTG-Jamendo split of one subset into shards.

    Reads ``<metadata_dir>/splits/split-<split>/<subset file>-{train,validation,test}.tsv``,
    checks them (header, fields, tags against the subset's category and official tag list,
    disjoint splits) and that the audio exists, then writes the ``train``, ``val`` and ``test``
    splits. Tags are stored as ``category---name``.

    Args:
        root: Folder holding the unpacked audio: ``<root>/14/214.mp3`` for TSV path
            ``14/214.mp3``.
        out: Output folder for the shards (reuse it only to resume the same job).
        subset: ``all`` (183 tags), ``top50``, ``genre``, ``instrument`` or ``moodtheme``.
        split: Official split index, 0 to 4.
        metadata_dir: The ``data/`` folder of a clone of MTG/mtg-jamendo-dataset; default
            ``<root>/data``.
        low_quality: Read the low-quality audio (``<id>.low.mp3``) instead of ``<id>.mp3``.
        skip_missing: Skip audio files that are missing (they are listed in ``failures.tsv``)
            instead of stopping with an error before writing anything.
        sample_rate: Sample rate of the audio in the shards, in Hz.
        workers: Processes decoding and writing in parallel.
        strict: Refuse (list in ``failures.tsv``) files that decode to less audio than their
            headers promise; by default they are written from what decodes, with a warning,
            and listed in ``truncated.tsv``.
        max_samples_per_shard: Most tracks in one shard.
        progress: Show progress bars.

    Returns:
        The shard writer's report.

    Raises:
        FileNotFoundError: If a metadata file is missing, no audio file is found, or some are
            missing and ``skip_missing`` is false.
        ValueError: On malformed metadata; the message names the file, line and problem.
    """
    metadata = Path(metadata_dir) if metadata_dir is not None else Path(root, "data")
    tracks = load_splits(metadata, subset, split)
    splits = {name: to_items(t, root, low_quality) for name, t in tracks.items()}
    n_missing = check_audio_files(splits, root=root, skip_missing=skip_missing, source="jamendo")
    vocab = tag_vocabulary(tracks, metadata, subset)
    log.info(
        "jamendo %s split-%d: %s tracks, %d tags",
        subset,
        split,
        "/".join(str(len(v)) for v in splits.values()),
        len(vocab),
    )
    options = {
        "root": str(root),
        "subset": subset,
        "split": split,
        "metadata_dir": str(metadata),
        "low_quality": low_quality,
        "skip_missing": skip_missing,
        "sample_rate": sample_rate,
        "single_label": False,
    }
    return write_shards(
        splits,
        out,
        sample_rate=sample_rate,
        max_samples_per_shard=max_samples_per_shard,
        workers=workers,
        strict=strict,
        provenance={
            "source": "jamendo",
            "options": options,
            "tags": vocab,
            "n_missing_audio": n_missing,
        },
        progress=progress,
    )
