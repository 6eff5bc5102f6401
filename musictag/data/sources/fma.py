"""FMA, the Free Music Archive dataset (Defferrard et al. 2017): genre labels, official split.

Reads ``tracks.csv`` (two-level pandas header; list columns parsed as integer lists, never
evaluated) and ``genres.csv``, and writes one subset with the ``label`` set-up chosen
(``genres_all``, ``genres`` or ``genre_top``). Layout, options and quirks:
``docs/datasets.md#fma-free-music-archive``.
"""

from __future__ import annotations

import csv
import logging
import os
import re
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from ..shards import AudioItem, ShardWriteReport, write_shards
from .common import SPLITS, check_audio_files, check_columns

__all__ = [
    "LABELS",
    "SUBSETS",
    "FmaGenre",
    "FmaSplits",
    "FmaTrack",
    "audio_path",
    "fma_splits",
    "parse_id_list",
    "prepare_fma",
    "read_genres",
    "read_tracks",
]

log = logging.getLogger(__name__)

SUBSETS: tuple[str, ...] = ("small", "medium", "large", "full")
"""The nested subsets, smallest first."""
LABELS: tuple[str, ...] = ("genres_all", "genres", "genre_top")
"""The label columns a preparer can use."""

_SPLIT_NAMES = {"training": "train", "validation": "val", "test": "test"}
_GENRES_COLUMNS = ("genre_id", "#tracks", "parent", "title", "top_level")
_TRACK_COLUMNS = ("set.split", "set.subset", "track.genre_top", "track.genres", "track.genres_all")
_ID_LIST = re.compile(r"^\[\s*(?:\d+\s*(?:,\s*\d+\s*)*)?\]$")
_CSV_FIELD_LIMIT = 1 << 27  # artist bios and album descriptions can exceed csv's 128 KiB default


@dataclass(frozen=True)
class FmaGenre:
    """One row of ``genres.csv``.

    Attributes:
        genre_id: The genre's id (used in ``track.genres`` / ``track.genres_all``).
        title: Its name, e.g. ``"Hip-Hop"``; titles are unique.
        parent: Parent genre id, 0 for a top-level genre.
        top_level: Id of its top-level ancestor.
        n_tracks: The ``#tracks`` column.
    """

    genre_id: int
    title: str
    parent: int
    top_level: int
    n_tracks: int


@dataclass(frozen=True)
class FmaTrack:
    """The fields of a ``tracks.csv`` row that the preparer uses.

    Attributes:
        track_id: Integer track id.
        split: ``"train"``, ``"val"`` or ``"test"`` (from ``set.split``).
        subset: ``set.subset``: the smallest subset holding the track.
        genre_top: ``track.genre_top`` title, ``""`` when the track has none.
        genres: ``track.genres`` ids.
        genres_all: ``track.genres_all`` ids.
        artist_id: ``artist.id`` (``None`` if the column is absent or empty).
        album_id: ``album.id`` (``None`` if the column is absent or empty).
    """

    track_id: int
    split: str
    subset: str
    genre_top: str
    genres: tuple[int, ...]
    genres_all: tuple[int, ...]
    artist_id: int | None = None
    album_id: int | None = None


@dataclass
class FmaSplits:
    """What :func:`fma_splits` returns.

    Attributes:
        splits: ``{"train": items, "val": items, "test": items}``.
        tags: Label names that occur, in ``genres.csv`` order (sorted for ``genre_top``).
        dropped: Tracks of the subset left out, by reason (e.g. ``{"no_genre_top": 3}``).
    """

    splits: dict[str, list[AudioItem]]
    tags: list[str]
    dropped: dict[str, int] = field(default_factory=dict)


@contextmanager
def _large_csv_fields() -> Iterator[None]:
    old = csv.field_size_limit()
    csv.field_size_limit(max(old, _CSV_FIELD_LIMIT))
    try:
        yield
    finally:
        csv.field_size_limit(old)


def parse_id_list(text: str, *, where: str = "") -> tuple[int, ...]:
    """Parse a list column such as ``"[21, 811]"`` (``""`` and ``"[]"`` give ``()``).

    Only a bracketed, comma-separated list of non-negative integers is accepted; nothing is
    evaluated.

    Args:
        text: The cell.
        where: Context for the error message (file, line, column).

    Returns:
        The integers, in order.

    Raises:
        ValueError: If the cell is anything else.
    """
    s = text.strip()
    if not s:
        return ()
    if not _ID_LIST.match(s):
        raise ValueError(f"{where}: expected a list of genre ids like '[21, 811]', got {text!r}")
    inner = s[1:-1].strip()
    return tuple(int(x) for x in inner.split(",")) if inner else ()


def _int(text: str, where: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise ValueError(f"{where}: expected an integer, got {text!r}") from None


def _opt_int(text: str | None) -> int | None:
    if text is None or not text.strip():
        return None
    try:
        return int(float(text))  # pandas may have written an id column as 123.0
    except ValueError:
        return None


def read_genres(path: str | os.PathLike[str]) -> dict[int, FmaGenre]:
    """Read ``genres.csv`` (``genre_id,#tracks,parent,title,top_level``).

    Args:
        path: The file.

    Returns:
        ``{genre_id: FmaGenre}`` in file order.

    Raises:
        FileNotFoundError: If the file is missing.
        ValueError: For a missing column, a malformed or repeated row (file and line named),
            or a repeated title.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"FMA genres file {path} not found (it is in fma_metadata.zip)")
    out: dict[int, FmaGenre] = {}
    titles: dict[str, int] = {}
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = [h.strip() for h in next(reader, [])]
        col = check_columns(path, header, _GENRES_COLUMNS)
        for row in reader:
            line = reader.line_num
            if not row:
                continue
            if len(row) != len(header):
                raise ValueError(f"{path}:{line}: expected {len(header)} fields, got {len(row)}")
            g = FmaGenre(
                genre_id=_int(row[col["genre_id"]], f"{path}:{line}: column 'genre_id'"),
                title=row[col["title"]].strip(),
                parent=_int(row[col["parent"]], f"{path}:{line}: column 'parent'"),
                top_level=_int(row[col["top_level"]], f"{path}:{line}: column 'top_level'"),
                n_tracks=_int(row[col["#tracks"]], f"{path}:{line}: column '#tracks'"),
            )
            if not g.title:
                raise ValueError(f"{path}:{line}: empty title for genre {g.genre_id}")
            if g.genre_id in out:
                raise ValueError(f"{path}:{line}: genre_id {g.genre_id} repeated")
            if g.title in titles:
                raise ValueError(
                    f"{path}:{line}: title {g.title!r} also used by genre {titles[g.title]}; "
                    "labels are genre titles, so they must be unique"
                )
            out[g.genre_id] = g
            titles[g.title] = g.genre_id
    return out


def read_tracks(path: str | os.PathLike[str]) -> list[FmaTrack]:
    """Read the split, subset and genre columns of ``tracks.csv``.

    Args:
        path: ``fma_metadata/tracks.csv``.

    Returns:
        One :class:`FmaTrack` per row, in file order.

    Raises:
        FileNotFoundError: If the file is missing.
        ValueError: If the three header lines are not FMA's (groups, names, ``track_id``), a
            needed column is missing, or a row is malformed (wrong field count, unknown split
            or subset, bad id or genre list, repeated track id); the message names the file,
            the line and the column.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"FMA tracks file {path} not found (it is in fma_metadata.zip)")
    tracks: list[FmaTrack] = []
    seen: dict[int, int] = {}
    with _large_csv_fields(), open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        groups = next(reader, [])
        names = next(reader, [])
        index_row = next(reader, [])
        if (
            len(groups) < 2
            or len(groups) != len(names)
            or groups[0].strip()
            or names[0].strip()
            or not index_row
            or index_row[0].strip() != "track_id"
        ):
            raise ValueError(
                f"{path}: expected FMA's three header lines (column groups such as 'album,album,"
                "...', column names such as 'comments,date_created,...', then 'track_id,,,...'), "
                f"got {groups[:3]}, {names[:3]}, {index_row[:2]}. Is this fma_metadata/tracks.csv?"
            )
        keys = ["track_id"] + [
            f"{g.strip()}.{n.strip()}" for g, n in zip(groups[1:], names[1:], strict=True)
        ]
        col = check_columns(path, keys, _TRACK_COLUMNS)
        artist_col = col.get("artist.id")
        album_col = col.get("album.id")
        for row in reader:
            line = reader.line_num
            if not row:
                continue
            if len(row) != len(keys):
                raise ValueError(
                    f"{path}:{line}: expected {len(keys)} fields (track_id + {len(keys) - 1} "
                    f"columns), got {len(row)}"
                )

            def where(c: str, line: int = line) -> str:
                return f"{path}:{line}: column {c!r}"

            tid = _int(row[0], where("track_id"))
            if tid < 0:
                raise ValueError(f"{where('track_id')}: negative track id {tid}")
            split = row[col["set.split"]].strip()
            if split not in _SPLIT_NAMES:
                raise ValueError(
                    f"{where('set.split')}: expected one of {sorted(_SPLIT_NAMES)}, got {split!r}"
                )
            subset = row[col["set.subset"]].strip()
            if subset not in SUBSETS:
                raise ValueError(
                    f"{where('set.subset')}: expected one of {SUBSETS}, got {subset!r}"
                )
            if tid in seen:
                raise ValueError(
                    f"{where('track_id')}: track {tid} repeated (also line {seen[tid]})"
                )
            seen[tid] = line
            tracks.append(
                FmaTrack(
                    track_id=tid,
                    split=_SPLIT_NAMES[split],
                    subset=subset,
                    genre_top=row[col["track.genre_top"]].strip(),
                    genres=parse_id_list(row[col["track.genres"]], where=where("track.genres")),
                    genres_all=parse_id_list(
                        row[col["track.genres_all"]], where=where("track.genres_all")
                    ),
                    artist_id=None if artist_col is None else _opt_int(row[artist_col]),
                    album_id=None if album_col is None else _opt_int(row[album_col]),
                )
            )
    return tracks


def audio_path(audio_dir: str | os.PathLike[str], track_id: int) -> Path:
    """Where FMA stores a track: ``<audio_dir>/<first 3 digits>/<6-digit id>.mp3``.

    Args:
        audio_dir: The ``fma_<subset>`` folder.
        track_id: Integer track id.

    Returns:
        e.g. ``fma_large/000/000002.mp3`` for track 2.
    """
    tid = f"{track_id:06d}"
    return Path(audio_dir, tid[:3], f"{tid}.mp3")


def fma_splits(
    tracks: Sequence[FmaTrack],
    genres: Mapping[int, FmaGenre],
    *,
    audio_dir: str | os.PathLike[str],
    subset: str = "large",
    label: str = "genres_all",
    drop_untagged: bool = True,
    genres_path: str = "genres.csv",
) -> FmaSplits:
    """Select a subset and build labelled items per official split (no audio is decoded).

    Args:
        tracks: From :func:`read_tracks`.
        genres: From :func:`read_genres`.
        audio_dir: The ``fma_<subset>`` folder.
        subset: ``"small"``, ``"medium"``, ``"large"`` or ``"full"`` (nested).
        label: ``"genres_all"``, ``"genres"`` or ``"genre_top"``.
        drop_untagged: For the multi-label columns, leave out tracks with an empty genre list.
            (``genre_top`` always drops tracks without a top genre.)
        genres_path: Name of the genres file, for error messages.

    Returns:
        An :class:`FmaSplits`; items have track id = the 6-digit id, tags = genre titles,
        metadata ``{"genre_top", "artist_id", "album_id"}``.

    Raises:
        ValueError: For an unknown subset or label, or a genre id missing from ``genres``
            (the track and the id are named).
    """
    if subset not in SUBSETS:
        raise ValueError(f"unknown FMA subset {subset!r}; choose one of {SUBSETS}")
    if label not in LABELS:
        raise ValueError(f"unknown FMA label {label!r}; choose one of {LABELS}")
    limit = SUBSETS.index(subset)
    splits: dict[str, list[AudioItem]] = {s: [] for s in SPLITS}
    dropped: Counter[str] = Counter()
    counts: Counter[str] = Counter()
    for t in tracks:
        if SUBSETS.index(t.subset) > limit:
            continue
        if label == "genre_top":
            tags: tuple[str, ...] = (t.genre_top,) if t.genre_top else ()
            if not tags:
                dropped["no_genre_top"] += 1
                continue
        else:
            ids = t.genres_all if label == "genres_all" else t.genres
            unknown = [g for g in ids if g not in genres]
            if unknown:
                raise ValueError(
                    f"track {t.track_id}: genre id(s) {unknown} in track.{label} are not in "
                    f"{genres_path}"
                )
            tags = tuple(genres[g].title for g in ids)
            if not tags and drop_untagged:
                dropped["untagged"] += 1
                continue
        counts.update(set(tags))
        splits[t.split].append(
            AudioItem(
                path=str(audio_path(audio_dir, t.track_id)),
                tags=tags,
                track_id=f"{t.track_id:06d}",
                metadata={
                    "genre_top": t.genre_top or None,
                    "artist_id": t.artist_id,
                    "album_id": t.album_id,
                },
            )
        )
    if label == "genre_top":
        tag_list = sorted(counts)
    else:
        tag_list = [g.title for g in genres.values() if g.title in counts]
    if dropped:
        log.info("FMA %s / %s: left out %s", subset, label, dict(dropped))
    return FmaSplits(splits=splits, tags=tag_list, dropped=dict(sorted(dropped.items())))


def prepare_fma(
    *,
    root: str,
    out: str,
    subset: str = "large",
    label: str = "genres_all",
    metadata_dir: str | None = None,
    audio_dir: str | None = None,
    drop_untagged: bool = True,
    skip_missing: bool = True,
    sample_rate: int = 16000,
    workers: int = 1,
    strict: bool = False,
    max_samples_per_shard: int = 1000,
    progress: bool = True,
) -> ShardWriteReport:
    """Write an FMA subset into shards with its genre labels and official split.

    ``tracks.csv`` and ``genres.csv`` are checked before anything is written. Missing mp3s are
    skipped by default (with a warning and a count) and, like the few unreadable mp3s of the
    real collection, listed in ``failures.tsv``.

    Args:
        root: Folder holding ``fma_metadata/`` and ``fma_<subset>/``.
        out: Output folder for the shards.
        subset: ``small`` (8,000 tracks), ``medium`` (25,000), ``large`` (106,574 clips of 30 s)
            or ``full`` (the same tracks untrimmed).
        label: ``genres_all`` (all genres + ancestors, multi-label over 163 titles), ``genres``
            (without ancestors) or ``genre_top`` (single-label, 16 top-level genres; tracks
            without one are dropped and counted).
        metadata_dir: Folder holding ``tracks.csv`` and ``genres.csv``; default
            ``root/fma_metadata``.
        audio_dir: Folder holding the mp3 folders ``000/`` ...; default ``root/fma_<subset>``.
        drop_untagged: Leave out tracks whose genre list is empty (``genres_all``/``genres``).
        skip_missing: Skip tracks whose mp3 is missing (listed in ``failures.tsv``) instead of
            stopping with an error.
        sample_rate: Sample rate of the stored audio (FMA mp3s are mostly 44.1 kHz).
        workers: Processes decoding and writing in parallel.
        strict: Refuse (list in ``failures.tsv``) files that decode to less audio than their
            headers promise; by default they are written from what decodes, with a warning,
            and listed in ``truncated.tsv``.
        max_samples_per_shard: Most tracks per shard.
        progress: Show progress bars.

    Returns:
        The :class:`~musictag.data.shards.ShardWriteReport` of the written folder.

    Raises:
        FileNotFoundError: If a metadata file is missing, no mp3 at all is found, or some are
            missing and ``skip_missing`` is false.
        ValueError: For an unknown subset or label, or malformed metadata.
    """
    if subset not in SUBSETS:
        raise ValueError(f"unknown FMA subset {subset!r}; choose one of {SUBSETS}")
    meta = Path(metadata_dir) if metadata_dir else Path(root) / "fma_metadata"
    audio = Path(audio_dir) if audio_dir else Path(root) / f"fma_{subset}"
    genres = read_genres(meta / "genres.csv")
    tracks = read_tracks(meta / "tracks.csv")
    result = fma_splits(
        tracks,
        genres,
        audio_dir=audio,
        subset=subset,
        label=label,
        drop_untagged=drop_untagged,
        genres_path=str(meta / "genres.csv"),
    )
    check_audio_files(result.splits, root=audio, skip_missing=skip_missing, source="fma")
    options = {
        "root": str(root),
        "subset": subset,
        "label": label,
        "metadata_dir": str(meta),
        "audio_dir": str(audio),
        "drop_untagged": drop_untagged,
        "skip_missing": skip_missing,
        "single_label": label == "genre_top",
        "sample_rate": sample_rate,
        "max_samples_per_shard": max_samples_per_shard,
    }
    return write_shards(
        result.splits,
        out,
        sample_rate=sample_rate,
        max_samples_per_shard=max_samples_per_shard,
        workers=workers,
        strict=strict,
        provenance={
            "source": "fma",
            "options": options,
            "tags": result.tags,
            "dropped": result.dropped,
        },
        progress=progress,
    )
