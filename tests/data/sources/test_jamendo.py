"""Tests for musictag.data.sources.jamendo on the real MTG-Jamendo TSVs and a miniature collection.

Format reference: MTG/mtg-jamendo-dataset, ``data/README.md`` and the files themselves
(``data/autotagging*.tsv``, ``data/splits/split-N/*.tsv``, ``data/tags/*.txt``): header
``TRACK_ID ARTIST_ID ALBUM_ID PATH DURATION TAGS`` with the tags as trailing tab-separated
fields, CRLF line endings. The real files are read from ``../shared/metadata/mtg-jamendo`` (see
its README); the miniature reuses their header and first rows, written into ``tmp_path``.
"""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from musictag.data.shards import decode_audio, load_manifest, shard_urls
from musictag.data.sources.jamendo import (
    HEADER,
    load_splits,
    prepare_jamendo,
    read_tag_list,
    read_tsv,
    split_file,
    tag_vocabulary,
)

DATA = "metadata/mtg-jamendo/data"


@pytest.fixture(scope="module")
def real(shared_dir: Path) -> Path:
    return shared_dir / DATA


# ------------------------------------------------------------------ the real files


def test_real_top50_split0(real: Path) -> None:
    splits = load_splits(real, "top50", 0)
    assert {k: len(v) for k, v in splits.items()} == {"train": 32136, "val": 10888, "test": 11356}
    top50 = read_tag_list(real / "tags/top50.txt")
    assert len(top50) == 50 and top50 == sorted(top50)  # the official list is alphabetical
    used = {tag for v in splits.values() for t in v for tag in t.tags}
    assert used == set(top50)
    assert tag_vocabulary(splits, real, "top50") == top50
    first = splits["train"][0]
    assert first.path.endswith(".mp3") and isinstance(first.duration, float)
    # every row's PATH is <id % 100 as 2 digits>/<id>.mp3
    for t in splits["test"][:500]:
        n = int(t.track_id.removeprefix("track_"))
        assert t.path == f"{n % 100:02d}/{n}.mp3"


def test_real_quirks_crlf_sorted_tags_float_duration(real: Path) -> None:
    path = split_file(real, "all", 0, "validation")
    raw = path.read_bytes()
    assert raw.startswith(("\t".join(HEADER) + "\r\n").encode())  # CRLF line endings
    tracks = read_tsv(path)
    assert len(tracks) == 11101
    assert not any("\r" in tag for t in tracks for tag in t.tags)
    assert all(list(t.tags) == sorted(t.tags) for t in tracks)  # tags are sorted in each row
    assert max(len(t.tags) for t in tracks) == 33  # rows have 6..38 fields
    assert all(t.duration > 0 for t in tracks)
    cats = {tag.split("---")[0] for t in tracks for tag in t.tags}
    assert cats == {"genre", "instrument", "mood/theme"}
    test = read_tsv(split_file(real, "all", 0, "test"))
    assert len(test) == 11565
    tags = {tag for t in tracks + test for tag in t.tags}
    assert len(tags) == 183
    assert not {t.track_id for t in tracks} & {t.track_id for t in test}


def test_real_moodtheme(real: Path) -> None:
    full = read_tsv(real / "autotagging_moodtheme.tsv", ("mood/theme",))
    assert len(full) == 18486
    listed = read_tag_list(real / "tags/moodtheme.txt")
    assert {tag for t in full for tag in t.tags} == set(listed) and len(listed) == 59
    splits = load_splits(real, "moodtheme", 0)
    assert {k: len(v) for k, v in splits.items()} == {"train": 9949, "val": 3802, "test": 4231}
    used = {tag for v in splits.values() for t in v for tag in t.tags}
    # the official splits drop three of the 59 tags; the vocabulary is still the official list
    assert sorted(set(listed) - used) == [
        "mood/theme---ambiental",
        "mood/theme---horror",
        "mood/theme---mellow",
    ]
    assert tag_vocabulary(splits, real, "moodtheme") == listed
    assert len(tag_vocabulary(splits)) == 56


# ------------------------------------------------------------------ a miniature collection

SR = 16000


def _write_tsv(path: Path, header: str, rows: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(("\r\n".join([header, *rows]) + "\r\n").encode("utf-8"))


def _real_rows(real: Path, name: str, n: int) -> tuple[str, list[str]]:
    lines = split_file(real, "top50", 0, name).read_bytes().decode("utf-8").split("\r\n")
    return lines[0], lines[1 : 1 + n]


def _write_audio(path: Path, seed: int, fmt: str = "MP3") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    x = 0.2 * np.random.default_rng(seed).standard_normal((int(0.25 * 22050), 2))
    sf.write(path, x.astype(np.float32), 22050, format=fmt)


def _miniature(root: Path, real: Path, low: bool = False) -> dict[str, list[str]]:
    """``root/data/...`` (metadata) and ``root/NN/<id>.mp3`` for the first rows of each split."""
    data = root / "data"
    (data / "tags").mkdir(parents=True)
    (data / "tags/top50.txt").write_bytes((real / "tags/top50.txt").read_bytes())
    rows = {}
    for i, (name, n) in enumerate((("train", 4), ("validation", 2), ("test", 2))):
        header, lines = _real_rows(real, name, n)
        _write_tsv(split_file(data, "top50", 0, name), header, lines)
        rows[name] = lines
        for j, line in enumerate(lines):
            rel = line.split("\t")[3]
            if low:
                rel = rel.removesuffix(".mp3") + ".low.mp3"
            _write_audio(root / rel, seed=10 * i + j)
    return rows


def _samples(url: str) -> list[dict]:
    with tarfile.open(url) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
    out = []
    for name in sorted(members):
        if name.endswith(".json") and not name.endswith(".checksums.json"):
            meta = json.loads(members[name])
            meta["audio"] = decode_audio(members[name.removesuffix(".json") + ".flac"])
            out.append(meta)
    return out


def test_prepare_miniature_top50(tmp_path: Path, real: Path) -> None:
    rows = _miniature(tmp_path, real)
    out = tmp_path / "shards"
    report = prepare_jamendo(root=str(tmp_path), out=str(out), subset="top50", progress=False)
    assert report.n_written == 8 and report.n_failed == 0
    manifest = load_manifest(out)
    assert {k: v["n_samples"] for k, v in manifest["splits"].items()} == {
        "train": 4,
        "val": 2,
        "test": 2,
    }
    prov = manifest["provenance"]
    assert prov["source"] == "jamendo" and prov["options"]["subset"] == "top50"
    assert prov["tags"] == read_tag_list(real / "tags/top50.txt")
    for split, name in (("train", "train"), ("val", "validation"), ("test", "test")):
        expected = {}
        for line in rows[name]:
            f = line.split("\t")
            expected[f[0]] = (f[1], f[2], f[3], float(f[4]), f[5:])
        got = [s for url in shard_urls(manifest, split) for s in _samples(url)]
        assert len(got) == len(expected)
        for s in got:
            artist, album, rel, duration, tags = expected[s["track_id"]]
            assert s["tags"] == tags  # category---name, file order
            assert all("---" in t for t in s["tags"])
            assert s["metadata"] == {
                "artist_id": artist,
                "album_id": album,
                "path": rel,
                "duration": duration,
            }
            assert s["source"] == str(tmp_path / rel)
            assert s["sample_rate"] == SR and s["audio"].shape[0] == pytest.approx(
                0.25 * SR, abs=1200
            )


def test_prepare_low_quality_and_metadata_dir(tmp_path: Path, real: Path) -> None:
    _miniature(tmp_path / "jamendo", real, low=True)
    (tmp_path / "jamendo" / "data").rename(tmp_path / "repo_data")
    out = tmp_path / "shards"
    report = prepare_jamendo(
        root=str(tmp_path / "jamendo"),
        out=str(out),
        metadata_dir=str(tmp_path / "repo_data"),
        low_quality=True,
        progress=False,
    )
    assert report.n_written == 8
    sources = [s["source"] for url in shard_urls(out, "train") for s in _samples(url)]
    assert all(s.endswith(".low.mp3") for s in sources)


def test_missing_audio_is_an_error_unless_skipped(tmp_path: Path, real: Path) -> None:
    rows = _miniature(tmp_path, real)
    gone = tmp_path / rows["test"][1].split("\t")[3]
    gone.unlink()
    with pytest.raises(FileNotFoundError, match="1 of 8 audio files are missing") as e:
        prepare_jamendo(root=str(tmp_path), out=str(tmp_path / "a"), progress=False)
    assert str(gone) in str(e.value)
    assert not (tmp_path / "a").exists()  # nothing written before the check
    report = prepare_jamendo(
        root=str(tmp_path), out=str(tmp_path / "b"), skip_missing=True, progress=False
    )
    assert report.n_written == 7 and report.n_failed == 1
    failures = (tmp_path / "b" / "failures.tsv").read_text().splitlines()
    assert len(failures) == 2 and str(gone) in failures[1]


def _broken_file(tmp_path: Path, real: Path, edit) -> Path:
    _miniature(tmp_path, real)
    path = split_file(tmp_path / "data", "top50", 0, "validation")
    lines = path.read_bytes().decode().split("\r\n")
    lines[2] = edit(lines[2])
    path.write_bytes("\r\n".join(lines).encode())
    return path


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda line: line.replace("\t", " ", 1), r":3: expected at least 6 tab-separated"),
        (
            lambda line: "\t".join([*line.split("\t")[:4], "4:05", *line.split("\t")[5:]]),
            r":3: DURATION '4:05'",
        ),
        (
            lambda line: line + "\tgenre---polka",
            r"tag 'genre---polka', which is not in .*top50.txt",
        ),
        (lambda line: line + "\tgenrepolka", r":3: tag 'genrepolka' is not of the form"),
        (
            lambda line: line.replace(line.split("\t")[3], "../../etc/x.mp3"),
            r":3: PATH '../../etc/x.mp3' must be relative",
        ),
    ],
)
def test_malformed_rows_name_file_and_line(tmp_path: Path, real: Path, edit, message) -> None:
    path = _broken_file(tmp_path, real, edit)
    with pytest.raises(ValueError, match=message) as e:
        prepare_jamendo(root=str(tmp_path), out=str(tmp_path / "o"), progress=False)
    assert str(path) in str(e.value)


def test_header_category_and_missing_file_errors(tmp_path: Path, real: Path) -> None:
    bad = tmp_path / "bad.tsv"
    _write_tsv(bad, "TRACK_ID\tARTIST_ID\tALBUM\tPATH\tDURATION\tTAGS", [])
    with pytest.raises(ValueError, match=r"bad.tsv:1: expected the header"):
        read_tsv(bad)
    mood = tmp_path / "mood.tsv"
    _write_tsv(
        mood, "\t".join(HEADER), ["track_1\tartist_1\talbum_1\t01/1.mp3\t10.0\tgenre---rock"]
    )
    with pytest.raises(ValueError, match=r"mood.tsv:2: tag 'genre---rock' has category 'genre'"):
        read_tsv(mood, ("mood/theme",))
    dup = tmp_path / "dup.tsv"
    row = "track_1\tartist_1\talbum_1\t01/1.mp3\t10.0\tgenre---rock"
    _write_tsv(dup, "\t".join(HEADER), [row, row])
    with pytest.raises(ValueError, match=r"dup.tsv:3: track track_1 is listed twice"):
        read_tsv(dup)
    with pytest.raises(FileNotFoundError, match=r"autotagging_genre-train.tsv"):
        load_splits(tmp_path, "genre", 0)
    with pytest.raises(ValueError, match="unknown MTG-Jamendo subset"):
        load_splits(tmp_path, "jazz", 0)
    with pytest.raises(ValueError, match="split must be 0 to 4"):
        load_splits(tmp_path, "top50", 5)


def test_track_in_two_splits_is_an_error(tmp_path: Path, real: Path) -> None:
    rows = _miniature(tmp_path, real)
    path = split_file(tmp_path / "data", "top50", 0, "test")
    header = "\t".join(HEADER)
    _write_tsv(path, header, [rows["test"][0], rows["train"][0]])
    with pytest.raises(ValueError, match=r"autotagging_top50tags-train.tsv") as e:
        prepare_jamendo(root=str(tmp_path), out=str(tmp_path / "o"), progress=False)
    assert str(path) in str(e.value) and "disjoint" in str(e.value)
