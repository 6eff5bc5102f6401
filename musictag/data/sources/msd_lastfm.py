"""Million Song Dataset + Last.fm tags: clean the tags of ``lastfm_tags.db``, split, write shards.

The raw Last.fm tags are cleaned following the urop2019 pipeline (pukkapies/urop2019;
:func:`build_tag_map` lists the steps); the top-k, if any, is chosen by the data module. Splits
come from Choi's text lists, Won/Lee's pickles (read by an unpickler that refuses every global:
:func:`read_plain_pickle`) or a seeded stratified split. Format, options and quirks:
``docs/datasets.md#million-song-dataset--lastfm-tags-msd``.
"""

from __future__ import annotations

import csv
import difflib
import logging
import math
import os
import pickle
import re
import sqlite3
from collections import Counter
from collections.abc import Container, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..shards import AudioItem, ShardWriteReport, write_shards
from ..vocab import resolve_merge
from .common import SPLITS, check_audio_files, check_columns, resolve_audio, stratified_split

__all__ = [
    "CHOI_SPLIT_FILES",
    "DEFAULT_MERGE",
    "DEFAULT_PATH_TEMPLATE",
    "VOCAL_GROUPS",
    "WON_N_TRAIN",
    "MsdTags",
    "TagMapReport",
    "audio_paths",
    "build_tag_map",
    "decade",
    "load_msd_tags",
    "msd_splits",
    "normalise_tag",
    "open_lastfm_db",
    "prepare_msd",
    "read_cleaning_list",
    "read_id_list",
    "read_plain_pickle",
    "read_split_ids",
    "spelling_key",
]

log = logging.getLogger(__name__)

LASTFM_SCHEMA: dict[str, tuple[str, ...]] = {
    "tids": ("tid",),
    "tags": ("tag",),
    "tid_tag": ("tid", "tag", "val"),
}
"""Tables and columns of ``lastfm_tags.db`` that are read."""

CHOI_SPLIT_FILES: dict[str, str] = {
    "train": "train_x_msd_id.txt",
    "val": "valid_x_msd_id.txt",
    "test": "test_x_msd_id.txt",
}
"""Split -> file of Choi's ``MSD_split_for_tagging`` (one track id per line)."""

WON_N_TRAIN = 201680
"""Won/Lee split: the first 201,680 ids of ``filtered_list_train.cP`` train, the rest (11,774)
validate; ``filtered_list_test.cP`` (28,435 ids) is the test set."""

VOCAL_GROUPS: tuple[str, ...] = ("rap", "instrumental", "male", "female")
"""The urop2019 vocal tags; each has a hand-checked list ``<group>_list_filtered.txt``."""

GENRE_LIST = "genre_list_filtered.txt"
"""urop2019's reviewed list of the most popular tags; ``-`` lines are non-genre tags to drop.
Older urop2019 commits name it ``non_genre_list_filtered.txt`` (also accepted)."""

DEFAULT_MERGE: dict[str, str] = {"rhythm and blues": "rnb", "funky": "funk"}
"""urop2019's ``combine_list``: merges the spelling rules cannot find."""

DEFAULT_PATH_TEMPLATE = "{tid[2]}/{tid[3]}/{tid[4]}/{tid}.mp3"
"""Audio path of a track under the root: the MSD's own ``A/B/C/TRABC....h5`` layout, for audio
stored under the track id."""

_TRACK_ID = re.compile(r"^TR[A-Z0-9]{16}$")
_WS = re.compile(r"\s+")
_NON_WORD = re.compile(r"[\W_]+")
_DECADE = re.compile(r"^['\u2019]?(?:19|20)?(\d)0['\u2019]?s$")
_WON_FILES = ("filtered_list_train.cP", "filtered_list_test.cP")
_SEVEN_DIGITAL_FILES = ("MSD_id_to_7D_id.pkl", "7D_id_to_path.pkl")
_CLOSE_CANDIDATES = 20000


# --------------------------------------------------------------------------------------------
# Lists and pickles
# --------------------------------------------------------------------------------------------


def read_id_list(path: str | os.PathLike[str]) -> list[str]:
    """Read a list of MSD track ids, one per line (Choi's ``*_x_msd_id.txt``).

    Args:
        path: Text file; blank lines are skipped.

    Returns:
        The ids in file order.

    Raises:
        FileNotFoundError: If the file does not exist.
        ValueError: If a line is not a track id (``TR`` + 16 characters) or an id repeats; the
            message names the file and line.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"MSD split list {path} not found")
    with open(path, encoding="utf-8", newline="") as f:
        lines = [(f"{path}:{n}", t.strip()) for n, t in enumerate(f, start=1) if t.strip()]
    return _checked_ids(lines)


def _checked_ids(ids: Iterable[tuple[str, Any]], seen: Container[str] = ()) -> list[str]:
    """The ids of ``(where, id)`` pairs, refusing a non-id or a repeat (named by ``where``) of
    each other or of ``seen``."""
    out: list[str] = []
    new: set[str] = set()
    for where, tid in ids:
        if not isinstance(tid, str) or not _TRACK_ID.match(tid):
            raise ValueError(f"{where}: {str(tid)[:40]!r} is not an MSD track id (TR...)")
        if tid in new or tid in seen:
            raise ValueError(f"{where}: track {tid} is listed twice")
        new.add(tid)
        out.append(tid)
    return out


class _NoGlobalsUnpickler(pickle.Unpickler):
    """An unpickler that refuses every global, so no class is built and no code runs."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(
            f"global {module}.{name} is not allowed: only lists and dicts of strings and "
            "integers are read"
        )


def _as_str(obj: Any) -> Any:
    # py2 str pickles and protocol-3 bytes hold the ids as bytes
    if isinstance(obj, bytes):
        return obj.decode("utf-8")
    if isinstance(obj, list):
        return [_as_str(v) for v in obj]
    if isinstance(obj, dict):
        return {_as_str(k): _as_str(v) for k, v in obj.items()}
    if isinstance(obj, (str, int)):
        return obj
    raise ValueError(
        f"a {type(obj).__name__} is not allowed: only lists and dicts of strings and integers"
    )


def read_plain_pickle(path: str | os.PathLike[str]) -> list | dict:
    """Read a pickle that holds only a list or dict of strings and integers.

    The unpickler refuses every global (``GLOBAL``, ``STACK_GLOBAL``, extension codes), so no
    class can be built and no code from the file can run (the "Restricting Globals" recipe of the
    :mod:`pickle` docs, with nothing allowed). This reads Won/Lee's ``filtered_list_{train,test}.cP``
    (protocol 0 lists of py2 strings) and the ``MSD_id_to_7D_id.pkl`` / ``7D_id_to_path.pkl``
    dicts; bytes are decoded as UTF-8.

    Args:
        path: The pickle file.

    Returns:
        The list or dict.

    Raises:
        FileNotFoundError: If the file does not exist.
        ValueError: On a global, a malformed pickle, or a top-level object that is not a list or
            dict; the message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pickle file {path} not found")
    try:
        with open(path, "rb") as f:
            obj = _NoGlobalsUnpickler(f, encoding="bytes").load()
        obj = _as_str(obj)
    except (pickle.UnpicklingError, EOFError, ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: cannot read as a plain pickle: {e}") from e
    if not isinstance(obj, (list, dict)):
        raise ValueError(f"{path}: expected one list or dict at the top of the pickle")
    return obj


def _pickled_id_list(path: Path) -> list[str]:
    obj = read_plain_pickle(path)
    if not isinstance(obj, list):
        raise ValueError(f"{path}: expected a list of MSD track ids, got a {type(obj).__name__}")
    return _checked_ids((f"{path}: item {i}", tid) for i, tid in enumerate(obj))


def read_split_ids(split: str, split_dir: str | os.PathLike[str]) -> dict[str, list[str]]:
    """Read a published MSD tagging split.

    Args:
        split: ``"choi"`` (``train_x_msd_id.txt``, ``valid_x_msd_id.txt``,
            ``test_x_msd_id.txt`` of keunwoochoi/MSD_split_for_tagging) or ``"won"``
            (``filtered_list_train.cP``, whose first 201,680 ids train and the rest validate,
            and ``filtered_list_test.cP`` of jongpillee/music_dataset_split).
        split_dir: Folder holding the files.

    Returns:
        ``{"train": ids, "val": ids, "test": ids}``.

    Raises:
        FileNotFoundError: If a file is missing.
        ValueError: On an unknown split, a malformed file, or a track in two splits.
    """
    split_dir = Path(split_dir)
    if split == "choi":
        out = {name: read_id_list(split_dir / f) for name, f in CHOI_SPLIT_FILES.items()}
        files = {name: split_dir / f for name, f in CHOI_SPLIT_FILES.items()}
    elif split == "won":
        train_file, test_file = (split_dir / f for f in _WON_FILES)
        train = _pickled_id_list(train_file)
        if len(train) <= WON_N_TRAIN:
            raise ValueError(
                f"{train_file}: {len(train)} ids; the Won/Lee list holds train ({WON_N_TRAIN}) "
                "followed by validation ids. Is this the right file?"
            )
        out = {"train": train[:WON_N_TRAIN], "val": train[WON_N_TRAIN:]}
        out["test"] = _pickled_id_list(test_file)
        files = {"train": train_file, "val": train_file, "test": test_file}
    else:
        raise ValueError(f"unknown MSD split {split!r}; choose 'choi', 'won' or 'random'")
    where: dict[str, str] = {}
    for name, ids in out.items():
        for tid in ids:
            if tid in where:
                raise ValueError(
                    f"{files[name]}: track {tid} is in both the {where[tid]} and the {name} split"
                )
            where[tid] = name
    return out


def read_cleaning_list(path: str | os.PathLike[str]) -> tuple[list[str], list[str]]:
    """Read a urop2019 hand-checked tag list (``*_list_filtered.txt``).

    Each line is a raw Last.fm tag; a leading ``-`` marks it as rejected (what that means per
    list: ``docs/datasets.md``, "The urop2019 lists, exactly").

    Args:
        path: The list file.

    Returns:
        ``(kept, rejected)`` raw tags, in file order, without the ``-``.

    Raises:
        FileNotFoundError: If the file does not exist.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"urop2019 tag list {path} not found")
    kept: list[str] = []
    rejected: list[str] = []
    for text in path.read_text(encoding="utf-8").splitlines():
        if not text.strip():
            continue
        if text.startswith("-"):
            rejected.append(text[1:])
        else:
            kept.append(text)
    return kept, rejected


# --------------------------------------------------------------------------------------------
# Tag cleaning
# --------------------------------------------------------------------------------------------


def normalise_tag(tag: str) -> str:
    """Lower-case, strip and collapse inner whitespace: ``" Hip  Hop "`` -> ``"hip hop"``."""
    return _WS.sub(" ", str(tag)).strip().lower()


def decade(tag: str) -> str | None:
    """The canonical decade a tag names, or ``None``.

    ``80s``, ``80's``, ``'80s``, ``1980s`` and ``1980's`` all give ``80s``; ``2000s`` gives
    ``00s`` (so ``1900s`` does too). Bare years or numbers (``1980``, ``80``) are not decades.

    Args:
        tag: A normalised tag.

    Returns:
        ``"<d>0s"`` or ``None``.
    """
    m = _DECADE.match(tag.replace(" ", ""))
    return f"{m.group(1)}0s" if m else None


def spelling_key(tag: str) -> str:
    """The key under which spelling variants of a tag are merged (urop2019's ``clean_1..4``).

    ``&`` and `` and `` become ``n``, everything but letters and digits is removed, and a single
    trailing ``s`` is dropped: ``Hip-Hop``, ``hip hop`` and ``hiphop`` share ``hiphop``.
    Decades get ``decade:<d>0s`` (:func:`decade`).

    Args:
        tag: A tag (any case).

    Returns:
        The key; a tag made only of punctuation is its own key.
    """
    t = normalise_tag(tag)
    d = decade(t)
    if d is not None:
        return f"decade:{d}"
    s = _NON_WORD.sub("", t.replace(" and ", "n").replace("&", "n"))
    if len(s) >= 2 and s[-1] == "s" and s[-2] != "s":
        s = s[:-1]
    return s or f"raw:{t}"


@dataclass
class TagMapReport:
    """What :func:`build_tag_map` did, for logs and the manifest's provenance.

    Attributes:
        n_raw: Raw tags in the database.
        n_final: Distinct cleaned tags.
        n_vocal: Raw tags merged into a vocal group.
        n_dropped: Raw tags dropped (non-genre list, ``drop``, decades, empty).
        n_merged: Raw tags renamed to another tag by spelling or explicit merges.
        unmatched_list_tags: Tags of the urop2019 lists that are not in the database.
    """

    n_raw: int = 0
    n_final: int = 0
    n_vocal: int = 0
    n_dropped: int = 0
    n_merged: int = 0
    unmatched_list_tags: int = 0


def _close(name: str, known: Iterable[str], popularity: Mapping[str, int] | None = None) -> str:
    known = sorted(known, key=(lambda t: (-popularity.get(t, 0), t)) if popularity else None)
    # difflib over 500k Last.fm tags would take minutes: look among the most popular only
    close = difflib.get_close_matches(name, known[:_CLOSE_CANDIDATES], n=3, cutoff=0.75)
    return f" (close: {', '.join(repr(c) for c in close)})" if close else ""


def build_tag_map(
    raw_tags: Mapping[int, str],
    popularity: Mapping[int, int],
    *,
    clean: bool = True,
    lists_dir: str | os.PathLike[str] | None = None,
    merge: Mapping[str, str] | None = None,
    drop: Sequence[str] = (),
    drop_decades: bool = False,
) -> tuple[dict[int, str], TagMapReport]:
    """Map every raw Last.fm tag to its cleaned name, or leave it out (dropped).

    With ``clean=False`` tags keep their exact raw spelling and only ``merge`` and ``drop``
    apply, to exact names (the Choi / Won top-50, with ``tag_list``). With ``clean=True``:
    normalise (:func:`normalise_tag`), vocal groups, drops, then spelling merges
    (:func:`spelling_key`) and ``merge``, as ``docs/datasets.md`` ("How the tags are cleaned")
    describes step by step.

    Args:
        raw_tags: Tag number (rowid of ``tags``) -> raw tag.
        popularity: Tag number -> number of tracks; names the merged groups.
        clean: Apply the cleaning (else exact raw names).
        lists_dir: Folder with urop2019's ``*_list_filtered.txt`` files (``million-song-cleaning/
            txt``), or ``None`` to skip steps 2 and the list part of 3.
        merge: Extra merges, source -> target. ``None`` uses :data:`DEFAULT_MERGE` and skips the
            entries whose tags are absent; an explicit map must name existing tags.
        drop: Tags to drop.
        drop_decades: Drop decade tags (``80s``, ``1990s``, ...) instead of keeping them.

    Returns:
        ``({tag number: cleaned name}, report)``; dropped tags are absent from the map.

    Raises:
        FileNotFoundError: If ``lists_dir`` lacks the genre list.
        ValueError: If a tag of an explicit ``merge`` is unknown (or dropped), the merges form a
            cycle, or a tag is in two vocal lists. The message names the tag and the file.
    """
    report = TagMapReport(n_raw=len(raw_tags))
    default_merge = merge is None
    merge = dict(DEFAULT_MERGE if merge is None else merge)
    if not clean:
        if lists_dir is not None:
            raise ValueError(
                "the urop2019 lists (lists_dir) are part of the cleaning; use clean_tags=True"
            )
        return _raw_tag_map(raw_tags, popularity, merge, drop, default_merge, report)

    norm = {i: normalise_tag(t) for i, t in raw_tags.items()}
    names = set(norm.values())
    pop: Counter[str] = Counter()
    for i, n in norm.items():
        pop[n] += int(popularity.get(i, 0))

    # 2. vocal groups
    vocal: dict[str, str] = {}
    drop_set = {normalise_tag(t) for t in drop}
    list_tags = 0
    unmatched = 0
    if lists_dir is not None:
        lists_dir = Path(lists_dir)
        for group in VOCAL_GROUPS:
            path = lists_dir / f"{group}_list_filtered.txt"
            if not path.is_file():
                log.warning("%s not found: no %r vocal group", path, group)
                continue
            kept, _ = read_cleaning_list(path)
            for t in [group, *kept]:
                n = normalise_tag(t)
                if vocal.get(n, group) != group:
                    raise ValueError(f"{path}: tag {t!r} is also in the {vocal[n]!r} vocal list")
                vocal[n] = group
                list_tags += 1
                unmatched += n not in names
        genre_path = lists_dir / GENRE_LIST
        if not genre_path.is_file() and (lists_dir / f"non_{GENRE_LIST}").is_file():
            genre_path = lists_dir / f"non_{GENRE_LIST}"
        _, rejected = read_cleaning_list(genre_path)
        drop_set.update(normalise_tag(t) for t in rejected)
        unmatched += sum(normalise_tag(t) not in names for t in rejected)
    report.unmatched_list_tags = unmatched

    # 3. drops (vocal tags exempt), then the pool of ordinary tags
    dropped = {n for n in names if n not in vocal and (n in drop_set or not n)}
    if drop_decades:
        dropped |= {n for n in names if n not in vocal and decade(n) is not None}
    pool = sorted(n for n in names if n not in vocal and n not in dropped)

    # 4. spelling groups, then explicit merges over groups (union-find on group keys)
    key_of = {n: spelling_key(n) for n in pool}
    for g in set(vocal.values()):
        key_of.setdefault(g, f"vocal:{g}")  # vocal group names only join by explicit merges
    parent: dict[str, str] = {k: k for k in key_of.values()}

    def find(k: str) -> str:
        while parent[k] != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k

    vocal_names = set(vocal.values())
    targets: set[str] = set()
    norm_merge = {normalise_tag(s): normalise_tag(t) for s, t in merge.items()}
    for src, tgt in resolve_merge(norm_merge).items():
        missing = [t for t in (src, tgt) if t not in key_of and t not in vocal]
        if missing:
            if default_merge:
                continue
            what = "dropped" if missing[0] in dropped else "not a tag of the database"
            raise ValueError(
                f"merge {src!r} -> {tgt!r}: {missing[0]!r} is {what}{_close(missing[0], pool, pop)}"
            )
        src_key = key_of.get(src) or key_of[vocal[src]]
        tgt_key = key_of.get(tgt) or key_of[vocal[tgt]]
        parent[find(src_key)] = find(tgt_key)
        targets.add(vocal.get(tgt, tgt))

    members: dict[str, list[str]] = {}
    for n, k in key_of.items():
        members.setdefault(find(k), []).append(n)
    name_of_root: dict[str, str] = {}
    for root, group in members.items():
        in_vocal = sorted(set(group) & vocal_names)
        if len(in_vocal) > 1:
            raise ValueError(f"merge joins the vocal groups {in_vocal}; merge them explicitly")
        canonical = [root[len("decade:") :]] if root.startswith("decade:") else []
        preferred = in_vocal or [n for n in group if n in targets] or canonical or group
        name_of_root[root] = min(preferred, key=lambda n: (-pop[n], n))

    final_of_norm = {n: name_of_root[find(key_of[n])] for n in pool}
    for n, g in vocal.items():
        final_of_norm[n] = name_of_root[find(key_of[g])]

    out: dict[int, str] = {}
    for i, n in norm.items():
        final = final_of_norm.get(n)
        if final is None:
            report.n_dropped += 1
            continue
        out[i] = final
        if n in vocal:
            report.n_vocal += 1
        elif final != n:
            report.n_merged += 1
    report.n_final = len(set(out.values()))
    if lists_dir is not None:
        log.info(
            "urop2019 lists: %d vocal-list tags, %d list tags not in the database",
            list_tags,
            unmatched,
        )
    return out, report


def _raw_tag_map(
    raw_tags: Mapping[int, str],
    popularity_by_id: Mapping[int, int],
    merge: Mapping[str, str],
    drop: Sequence[str],
    default_merge: bool,
    report: TagMapReport,
) -> tuple[dict[int, str], TagMapReport]:
    names = set(raw_tags.values())
    popularity = {t: popularity_by_id.get(i, 0) for i, t in raw_tags.items()}
    drop_set = set(drop)
    resolved = resolve_merge(merge)
    if not default_merge:
        for src, tgt in resolved.items():
            for t in (src, tgt):
                if t not in names or t in drop_set:
                    what = "dropped" if t in drop_set else "not a tag of the database"
                    raise ValueError(
                        f"merge {src!r} -> {tgt!r}: {t!r} is {what}{_close(t, names, popularity)}"
                    )
    else:
        resolved = {}  # the default merges belong to the cleaning
    out: dict[int, str] = {}
    for i, t in raw_tags.items():
        if t in drop_set:
            report.n_dropped += 1
            continue
        out[i] = resolved.get(t, t)
        report.n_merged += out[i] != t
    report.n_final = len(set(out.values()))
    return out, report


# --------------------------------------------------------------------------------------------
# The database
# --------------------------------------------------------------------------------------------


def open_lastfm_db(path: str | os.PathLike[str]) -> sqlite3.Connection:
    """Open ``lastfm_tags.db`` read-only and check its schema.

    Args:
        path: The SQLite file.

    Returns:
        A read-only connection.

    Raises:
        FileNotFoundError: If the file does not exist.
        ValueError: If it is not SQLite or lacks a table or column of :data:`LASTFM_SCHEMA`.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"Last.fm tag database {path} not found (lastfm_tags.db from "
            "http://millionsongdataset.com/lastfm/)"
        )
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        for table, columns in LASTFM_SCHEMA.items():
            found = [row[1] for row in conn.execute(f"PRAGMA table_info({table})")]
            if not found:
                raise ValueError(
                    f"{path}: no table {table!r}; a lastfm_tags.db has tables "
                    f"{', '.join(LASTFM_SCHEMA)}"
                )
            missing = [c for c in columns if c not in found]
            if missing:
                raise ValueError(
                    f"{path}: table {table!r} has no column {missing[0]!r} (columns: "
                    f"{', '.join(found)})"
                )
    except sqlite3.DatabaseError as e:
        conn.close()
        raise ValueError(f"{path} is not a readable SQLite database: {e}") from e
    except ValueError:
        conn.close()
        raise
    return conn


@dataclass
class MsdTags:
    """Cleaned tags of the MSD tracks, as :func:`load_msd_tags` returns them.

    Attributes:
        tracks: Track id -> ``{tag: score}`` of the vocabulary tags (only tracks with at least
            one), tags in decreasing score (ties: vocabulary order).
        vocabulary: Kept tags, most popular first (or in ``tag_list`` order).
        counts: Tag -> number of tracks of the whole database holding it (every cleaned tag).
        n_tracks_db: Tracks in the database.
        n_untagged: Tracks of the database left without a vocabulary tag.
        report: What the cleaning did.
    """

    tracks: dict[str, dict[str, float]]
    vocabulary: list[str]
    counts: dict[str, int]
    n_tracks_db: int
    n_untagged: int
    report: TagMapReport = field(default_factory=TagMapReport)


def load_msd_tags(
    db: str | os.PathLike[str],
    *,
    min_score: float = 0.0,
    clean: bool = True,
    lists_dir: str | os.PathLike[str] | None = None,
    merge: Mapping[str, str] | None = None,
    drop: Sequence[str] = (),
    drop_decades: bool = False,
    min_tracks: int = 2000,
    tag_list: str | os.PathLike[str] | None = None,
) -> MsdTags:
    """Read ``lastfm_tags.db``, clean its tags and choose the vocabulary.

    Popularity is counted over every track of the database (so the vocabulary does not depend on
    which audio you have), after cleaning: a track tagged ``hip hop`` and ``Hip-Hop`` counts once
    for ``hip hop``.

    Args:
        db: The database file.
        min_score: Keep a (track, tag) pair only if its score ``val`` is at least this (0-100).
        clean: Clean the tags (see :func:`build_tag_map`).
        lists_dir: Folder of urop2019's ``*_list_filtered.txt``.
        merge: Extra merges; ``None`` for :data:`DEFAULT_MERGE`.
        drop: Tags to drop.
        drop_decades: Drop decade tags.
        min_tracks: Keep tags held by at least this many tracks (how many of them a model uses,
            the top ``k`` say, is chosen when the data module is built: ``TagVocab``).
        tag_list: File with one tag per line: the vocabulary, exactly (``min_tracks`` is then
            ignored), e.g. ``50tagList.txt`` with ``clean=False``.

    Returns:
        The cleaned tags.

    Raises:
        FileNotFoundError: If a file is missing.
        ValueError: On a malformed database, a bad option, or a ``tag_list`` tag that no track
            holds (the message names the file, line and tag).
    """
    if min_tracks < 1:
        raise ValueError(f"min_tracks must be >= 1, got {min_tracks}")
    if not 0 <= min_score <= 100:
        raise ValueError(f"min_score is a Last.fm score in 0..100, got {min_score}")
    conn = open_lastfm_db(db)
    try:
        tids = dict(conn.execute("SELECT rowid, tid FROM tids"))
        raw_tags = {i: str(t) for i, t in conn.execute("SELECT rowid, tag FROM tags")}
        popularity = dict(
            conn.execute(
                "SELECT tag, COUNT(DISTINCT tid) FROM tid_tag WHERE val >= ? GROUP BY tag",
                (min_score,),
            )
        )
        tag_map, report = build_tag_map(
            raw_tags,
            popularity,
            clean=clean,
            lists_dir=lists_dir,
            merge=merge,
            drop=drop,
            drop_decades=drop_decades,
        )
        names = sorted(set(tag_map.values()))
        index = {n: k for k, n in enumerate(names)}
        code = {i: index[n] for i, n in tag_map.items()}
        # Pass 1: tracks per cleaned tag; a track holding two spellings of a tag counts once.
        # Rows come grouped by track, so only one track's tags are held at a time.
        counts_by_code = [0] * len(names)
        current, seen = None, set()
        rows = conn.execute(
            "SELECT tid, tag FROM tid_tag WHERE val >= ? ORDER BY tid", (min_score,)
        )
        for tid, tag in rows:
            if tid != current:
                current = tid
                seen.clear()
            k = code.get(tag)
            if k is not None and k not in seen:
                seen.add(k)
                counts_by_code[k] += 1
        counts = {names[k]: c for k, c in enumerate(counts_by_code) if c}
        if tag_list is not None:
            vocabulary = _read_tag_list(Path(tag_list), counts, clean)
        else:
            vocabulary = sorted(
                (t for t, c in counts.items() if c >= min_tracks), key=lambda t: (-counts[t], t)
            )
        # Pass 2: the scores of the vocabulary tags only (the best score of merged spellings).
        rank = {index[t]: r for r, t in enumerate(vocabulary)}
        vocab_code = {i: k for i, k in code.items() if k in rank}
        per_track: dict[int, dict[int, float]] = {}
        for tid, tag, val in conn.execute(
            "SELECT tid, tag, val FROM tid_tag WHERE val >= ?", (min_score,)
        ):
            k = vocab_code.get(tag)
            if k is None:
                continue
            scores = per_track.setdefault(tid, {})
            if val > scores.get(k, -math.inf):
                scores[k] = float(val)
    except sqlite3.DatabaseError as e:
        raise ValueError(f"{db}: cannot read the Last.fm tables: {e}") from e
    finally:
        conn.close()

    tracks: dict[str, dict[str, float]] = {}
    for tid, scores in per_track.items():
        if tid not in tids:
            raise ValueError(
                f"{db}: tid_tag refers to track number {tid}, which is not a rowid of tids"
            )
        kept = sorted(scores, key=lambda k: (-scores[k], rank[k]))
        tracks[str(tids[tid])] = {names[k]: scores[k] for k in kept}
    return MsdTags(
        tracks=tracks,
        vocabulary=vocabulary,
        counts=counts,
        n_tracks_db=len(tids),
        n_untagged=len(tids) - len(tracks),
        report=report,
    )


def _read_tag_list(path: Path, counts: Mapping[str, int], clean: bool) -> list[str]:
    if not path.is_file():
        raise FileNotFoundError(f"tag list {path} not found")
    out: list[str] = []
    for line, text in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        tag = normalise_tag(text) if clean else text.strip()
        if not tag:
            continue
        if tag not in counts:
            hint = "; with clean_tags the names are lower-cased and merged" if clean else ""
            raise ValueError(
                f"{path}:{line}: tag {tag!r} is held by no track after cleaning"
                f"{_close(tag, counts, counts)}{hint}"
            )
        if tag in out:
            raise ValueError(f"{path}:{line}: tag {tag!r} is listed twice (after cleaning)")
        out.append(tag)
    return out


# --------------------------------------------------------------------------------------------
# Audio paths and splits
# --------------------------------------------------------------------------------------------


def audio_paths(
    root: str | os.PathLike[str],
    track_ids: Iterable[str],
    *,
    audio_map: str | os.PathLike[str] | None = None,
    seven_digital_dir: str | os.PathLike[str] | None = None,
    path_template: str = DEFAULT_PATH_TEMPLATE,
) -> dict[str, Path]:
    """Where each track's audio is, under ``root``.

    One of three sources, first that is given: a CSV ``audio_map`` with columns ``tid`` and
    ``path`` (relative to ``root``; other columns ignored); Won/Lee's ``MSD_id_to_7D_id.pkl`` and
    ``7D_id_to_path.pkl`` in ``seven_digital_dir`` (the 7digital previews, stored as
    ``<d>/<d>/<7digital id>.clip.mp3``); else ``path_template`` formatted with ``tid``.

    Args:
        root: Audio root.
        track_ids: Tracks wanted.
        audio_map: CSV ``tid,path``.
        seven_digital_dir: Folder with the two 7digital pickles (read without unpickling).
        path_template: ``str.format`` template with ``{tid}``, e.g. the default
            ``{tid[2]}/{tid[3]}/{tid[4]}/{tid}.mp3``.

    Returns:
        Track id -> path (not checked for existence). Tracks the map does not list are absent.

    Raises:
        FileNotFoundError: If a mapping file is missing.
        ValueError: On a malformed mapping (the message names the file and row) or template.
    """
    wanted = list(track_ids)
    if audio_map is not None:
        path = Path(audio_map)
        if not path.is_file():
            raise FileNotFoundError(f"MSD audio map {path} not found")
        rel: dict[str, str] = {}
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            header = [h.strip() for h in next(reader, [])]
            cols = check_columns(path, header, ("tid", "path"))
            for row in reader:
                where = f"{path}:{reader.line_num}"
                if not row or all(not c.strip() for c in row):
                    continue
                if len(row) < len(header):
                    raise ValueError(f"{where}: expected {len(header)} fields, got {len(row)}")
                tid, p = row[cols["tid"]].strip(), row[cols["path"]].strip()
                _checked_ids([(where, tid)], seen=rel)
                if not p:
                    raise ValueError(f"{where}: empty path for track {tid}")
                rel[tid] = p
        return _resolve_all(root, wanted, rel, path)
    if seven_digital_dir is not None:
        to7d_path, path_path = (Path(seven_digital_dir, f) for f in _SEVEN_DIGITAL_FILES)
        to7d = read_plain_pickle(to7d_path)
        paths = read_plain_pickle(path_path)
        for p, obj in ((to7d_path, to7d), (path_path, paths)):
            if not isinstance(obj, dict):
                raise ValueError(f"{p}: expected a dict, got a {type(obj).__name__}")
        rel = {}
        for tid in wanted:
            d7 = to7d.get(tid)
            if d7 is None:
                continue
            p = paths.get(d7, paths.get(str(d7)))
            if isinstance(p, str) and p:
                rel[tid] = p
        return _resolve_all(root, wanted, rel, path_path)
    try:
        path_template.format(tid="TRAAAAW128F429D538")
    except (KeyError, IndexError, ValueError, AttributeError) as e:
        raise ValueError(
            f"path_template {path_template!r} is not a str.format template of {{tid}}: {e}"
        ) from None
    return {tid: resolve_audio(root, path_template.format(tid=tid)) for tid in wanted}


def _resolve_all(root, wanted: list[str], rel: Mapping[str, str], source: Path) -> dict[str, Path]:
    out = {}
    for tid in wanted:
        if tid in rel:
            try:
                out[tid] = resolve_audio(root, rel[tid])
            except ValueError as e:
                raise ValueError(f"{source}: track {tid}: {e}") from None
    return out


def msd_splits(
    tags: MsdTags,
    root: str | os.PathLike[str],
    *,
    split: str = "choi",
    split_dir: str | os.PathLike[str] | None = None,
    audio_map: str | os.PathLike[str] | None = None,
    seven_digital_dir: str | os.PathLike[str] | None = None,
    path_template: str = DEFAULT_PATH_TEMPLATE,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 0,
) -> tuple[dict[str, list[AudioItem]], dict[str, dict[str, int]]]:
    """Build the shard items of each split.

    Tracks of a published split that have no vocabulary tag are dropped and counted, and so are
    tracks that the audio map does not list. A ``random`` split uses the tagged tracks whose
    audio file exists, stratified on each track's highest-scored tag
    (:func:`~musictag.data.sources.common.stratified_split`).

    Args:
        tags: From :func:`load_msd_tags`.
        root: Audio root.
        split: ``choi``, ``won`` or ``random``.
        split_dir: Folder of the split files; default ``root``.
        audio_map: See :func:`audio_paths`.
        seven_digital_dir: See :func:`audio_paths`.
        path_template: See :func:`audio_paths`.
        val_fraction: ``random`` only: share of tracks for ``val``.
        test_fraction: ``random`` only: share of tracks for ``test``.
        seed: ``random`` only: seed of the split.

    Returns:
        ``({split: items}, stats)`` with ``stats = {"listed": ..., "untagged": ...,
        "unmapped": ...}`` per split. Item metadata holds ``tag_scores``.
    """
    maps = {"audio_map": audio_map, "seven_digital_dir": seven_digital_dir}
    maps["path_template"] = path_template
    if split == "random":
        ids = sorted(tags.tracks)
        paths = audio_paths(root, ids, **maps)
        present = [t for t in ids if t in paths and paths[t].is_file()]
        by_label: dict[str, list[str]] = {}
        for tid in present:
            by_label.setdefault(next(iter(tags.tracks[tid])), []).append(tid)
        fractions = (1.0 - val_fraction - test_fraction, val_fraction, test_fraction)
        if any(f < 0 for f in fractions):
            raise ValueError(
                f"val_fraction + test_fraction must be at most 1, got {val_fraction}, "
                f"{test_fraction}"
            )
        split_ids = stratified_split(by_label, fractions, seed, SPLITS)
        stats = {
            "listed": {s: len(v) for s, v in split_ids.items()},
            "untagged": dict.fromkeys(SPLITS, 0),
            "unmapped": dict.fromkeys(SPLITS, 0),
        }
    else:
        split_ids = read_split_ids(split, split_dir if split_dir is not None else root)
        all_ids = [t for ids in split_ids.values() for t in ids if t in tags.tracks]
        paths = audio_paths(root, all_ids, **maps)
        stats = {"listed": {}, "untagged": {}, "unmapped": {}}
        for name, ids in split_ids.items():
            stats["listed"][name] = len(ids)
            stats["untagged"][name] = sum(t not in tags.tracks for t in ids)
            stats["unmapped"][name] = sum(t in tags.tracks and t not in paths for t in ids)
    out: dict[str, list[AudioItem]] = {}
    for name, ids in split_ids.items():
        out[name] = [
            AudioItem(
                path=paths[t],
                tags=tuple(tags.tracks[t]),
                track_id=t,
                metadata={"tag_scores": tags.tracks[t]},
            )
            for t in ids
            if t in tags.tracks and t in paths
        ]
    return out, stats


def prepare_msd(
    *,
    root: str,
    out: str,
    db: str | None = None,
    split: str = "choi",
    split_dir: str | None = None,
    audio_map: str | None = None,
    seven_digital_dir: str | None = None,
    path_template: str = DEFAULT_PATH_TEMPLATE,
    min_score: float = 0.0,
    clean_tags: bool = True,
    lists_dir: str | None = None,
    merge: dict[str, str] | None = None,
    drop: list[str] | None = None,
    drop_decades: bool = False,
    min_tracks: int = 2000,
    tag_list: str | None = None,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 0,
    skip_missing: bool = True,
    sample_rate: int = 16000,
    workers: int = 1,
    strict: bool = False,
    max_samples_per_shard: int = 1000,
    progress: bool = True,
) -> ShardWriteReport:
    """Write the Million Song Dataset with cleaned Last.fm tags into shards.

    Reads and cleans ``lastfm_tags.db`` (:func:`load_msd_tags`), reads the split, maps track ids
    to audio files and writes ``train``, ``val`` and ``test``. Tracks without a kept tag are
    dropped and counted (``provenance.stats`` in the manifest). The MSD audio is usually
    incomplete, so by default missing audio files are skipped and listed in ``failures.tsv``.

    Args:
        root: Audio root (the paths of ``audio_map`` / the template are relative to it).
        out: Output folder for the shards (reuse it only to resume the same job).
        db: ``lastfm_tags.db``; default ``<root>/lastfm_tags.db``.
        split: ``choi`` (``{train,valid,test}_x_msd_id.txt`` of MSD_split_for_tagging),
            ``won`` (``filtered_list_{train,test}.cP``; the first 201,680 train ids train, the
            rest validate) or ``random`` (stratified on each track's top tag, over the tagged
            tracks whose audio exists).
        split_dir: Folder of the split files; default ``root``.
        audio_map: CSV with columns ``tid`` and ``path`` (relative to ``root``).
        seven_digital_dir: Folder with Won/Lee's ``MSD_id_to_7D_id.pkl`` and
            ``7D_id_to_path.pkl`` (7digital previews ``<d>/<d>/<id>.clip.mp3``).
        path_template: Used without ``audio_map``/``seven_digital_dir``: ``str.format``
            template of ``{tid}``, e.g. ``{tid[2]}/{tid[3]}/{tid[4]}/{tid}.mp3``.
        min_score: Minimum Last.fm score (``val``, 0-100) of a (track, tag) pair; urop2019 and
            the Choi/Won splits use every pair (0).
        clean_tags: Clean the tags (lower-case, spelling variants, urop2019 lists); false keeps
            the raw names, as the Choi/Won top-50 does.
        lists_dir: urop2019's ``million-song-cleaning/txt`` folder (``genre_list_filtered.txt``
            and the vocal lists) for the non-genre drop list and the vocal groups.
        merge: Extra merges ``{source: target}``; default ``{"rhythm and blues": "rnb",
            "funky": "funk"}`` (urop2019).
        drop: Tags to drop.
        drop_decades: Drop decade tags (``80s``, ``1990s``, ...).
        min_tracks: Keep tags held by at least this many tracks of the database (urop2019:
            2000). The top ``k`` of them is chosen by the data module (``TagVocab``).
        tag_list: File of tags, one per line, to use as the vocabulary instead (e.g. the
            published ``50tagList.txt`` with ``clean_tags=False``).
        val_fraction: ``random`` split: share of ``val``.
        test_fraction: ``random`` split: share of ``test``.
        seed: ``random`` split: seed.
        skip_missing: Skip missing audio files (listed in ``failures.tsv``) instead of
            stopping with an error before writing.
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
        ValueError: On malformed metadata or options; the message names the file and problem.
    """
    if split not in ("choi", "won", "random"):
        raise ValueError(f"unknown MSD split {split!r}; choose 'choi', 'won' or 'random'")
    db_path = Path(db) if db is not None else Path(root, "lastfm_tags.db")
    tags = load_msd_tags(
        db_path,
        min_score=min_score,
        clean=clean_tags,
        lists_dir=lists_dir,
        merge=merge,
        drop=drop or (),
        drop_decades=drop_decades,
        min_tracks=min_tracks,
        tag_list=tag_list,
    )
    if not tags.vocabulary:
        raise ValueError(
            f"{db_path}: no tag is held by {min_tracks} tracks or more after cleaning; lower "
            "min_tracks"
        )
    splits, stats = msd_splits(
        tags,
        root,
        split=split,
        split_dir=split_dir,
        audio_map=audio_map,
        seven_digital_dir=seven_digital_dir,
        path_template=path_template,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        seed=seed,
    )
    for name in splits:
        log.info(
            "msd %s: %d listed, %d without a kept tag (dropped), %d not in the audio map, %d kept",
            name,
            stats["listed"][name],
            stats["untagged"][name],
            stats["unmapped"][name],
            len(splits[name]),
        )
    if not any(splits.values()):
        raise ValueError(
            f"msd: no track of the {split} split has both a kept tag and an audio path "
            f"(listed: {stats['listed']}, without tags: {stats['untagged']}, not in the audio "
            f"map: {stats['unmapped']}); check the split files, the audio map and the tag options"
        )
    n_missing = check_audio_files(splits, root=root, skip_missing=skip_missing, source="msd")
    options = {
        "root": str(root),
        "db": str(db_path),
        "split": split,
        "split_dir": split_dir,
        "audio_map": audio_map,
        "seven_digital_dir": seven_digital_dir,
        "path_template": path_template,
        "min_score": min_score,
        "clean_tags": clean_tags,
        "lists_dir": lists_dir,
        "merge": merge,
        "drop": list(drop or ()),
        "drop_decades": drop_decades,
        "min_tracks": min_tracks,
        "tag_list": tag_list,
        "val_fraction": val_fraction,
        "test_fraction": test_fraction,
        "seed": seed,
        "skip_missing": skip_missing,
        "sample_rate": sample_rate,
    }
    return write_shards(
        splits,
        out,
        sample_rate=sample_rate,
        max_samples_per_shard=max_samples_per_shard,
        workers=workers,
        strict=strict,
        provenance={
            "source": "msd",
            "options": options,
            "tags": tags.vocabulary,
            "dropped": {
                f"{name}_{reason}": stats[key][name]
                for name in splits
                for key, reason in (("untagged", "no_kept_tag"), ("unmapped", "not_in_audio_map"))
            },
            "stats": {
                "listed": stats["listed"],
                "n_tracks_db": tags.n_tracks_db,
                "n_untagged_db": tags.n_untagged,
                "n_missing_audio": n_missing,
                "n_raw_tags": tags.report.n_raw,
                "n_clean_tags": tags.report.n_final,
            },
        },
        progress=progress,
    )
