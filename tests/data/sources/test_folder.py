"""Tests for musictag.data.sources.folder on miniature personal music folders.

There is no published format here: the layouts are the ones users have (one sub-folder per
genre, as in the DeepAudioClassification seed project, or a CSV/JSON file -> tags mapping) and
are documented in ``docs/datasets.md``. Every folder is written into ``tmp_path`` with a mix of
formats (wav, flac, ogg, mp3), sample rates, channel counts and extension cases.
"""

from __future__ import annotations

import csv
import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from musictag.data.shards import decode_audio, load_manifest, shard_urls
from musictag.data.sources.folder import (
    folder_labels,
    folder_splits,
    prepare_folder,
    read_mapping,
    scan_audio,
)

# (extension as written, soundfile format, sample rate, channels)
FORMATS = [
    ("wav", "WAV", 44100, 2),
    ("FLAC", "FLAC", 22050, 1),
    ("ogg", "OGG", 16000, 2),
    ("Mp3", "MP3", 44100, 1),
    ("WAV", "WAV", 8000, 1),
]


def _write(path: Path, seed: int, fmt_index: int = 0, seconds: float = 0.2) -> None:
    _, fmt, sr, ch = FORMATS[fmt_index % len(FORMATS)]
    path.parent.mkdir(parents=True, exist_ok=True)
    x = 0.2 * np.random.default_rng(seed).standard_normal((int(seconds * sr), ch))
    sf.write(path, x.astype(np.float32), sr, format=fmt)


def _library(root: Path, per_label: int = 10) -> list[str]:
    """``root/<genre>/[live/]<n>.<ext>`` for three genres; returns the relative paths."""
    rels = []
    for g, genre in enumerate(("rock", "jazz", "hip hop")):
        for i in range(per_label):
            ext = FORMATS[(g + i) % len(FORMATS)][0]
            sub = "live/" if i % 3 == 0 else ""
            rel = f"{genre}/{sub}{i:02d}.{ext}"
            _write(root / rel, seed=100 * g + i, fmt_index=g + i)
            rels.append(rel)
    return sorted(rels)


def _samples(out: Path, split: str) -> list[dict]:
    found = []
    for url in shard_urls(out, split):
        with tarfile.open(url) as tar:
            members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
        for name, data in sorted(members.items()):
            if name.endswith(".json") and not name.endswith(".checksums.json"):
                s = json.loads(data)
                s["audio"] = decode_audio(members[name.removesuffix(".json") + ".flac"])
                found.append(s)
    return found


def test_scan_and_folder_labels(tmp_path: Path) -> None:
    rels = _library(tmp_path, per_label=4)
    (tmp_path / "notes.txt").write_text("not audio")
    (tmp_path / "rock" / "._00.wav").write_bytes(b"macOS resource fork")
    _write(tmp_path / ".hidden" / "x.wav", 1)
    _write(tmp_path / "loose.wav", 2)
    found = scan_audio(tmp_path)
    assert found == sorted([*rels, "loose.wav"])  # any extension case; hidden files skipped
    labels, unlabelled = folder_labels(found)
    assert unlabelled == ["loose.wav"]
    assert labels["hip hop/live/00.ogg"] == "hip hop" and labels["rock/01.FLAC"] == "rock"
    deep, shallow = folder_labels(found, level=1)
    assert deep == {f: "live" for f in found if "/live/" in f}
    own, _ = folder_labels(found, level=-1)
    assert own["jazz/live/00.FLAC"] == "live" and own["jazz/01.ogg"] == "jazz"
    assert scan_audio(tmp_path, ["flac"]) == [f for f in rels if f.lower().endswith(".flac")]


def test_prepare_from_folders(tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    rels = _library(lib)
    _write(lib / "loose.wav", 9)
    out = tmp_path / "shards"
    report = prepare_folder(root=str(lib), out=str(out), progress=False, sample_rate=16000)
    assert report.n_written == 30 and report.n_failed == 0
    manifest = load_manifest(out)
    # stratified on the label: 10 files per genre -> 8/1/1 each
    assert {k: v["n_samples"] for k, v in manifest["splits"].items()} == {
        "train": 24,
        "val": 3,
        "test": 3,
    }
    for split in ("val", "test"):
        assert manifest["splits"][split]["tag_counts"] == {"rock": 1, "jazz": 1, "hip hop": 1}
    prov = manifest["provenance"]
    assert prov["stats"] == {"n_files": 31, "n_ignored": 1, "n_missing": 0}
    assert prov["dropped"] == {"unlabelled_files": 1}
    assert prov["tags"] == ["hip hop", "jazz", "rock"] and prov["options"]["single_label"]
    got = {s["track_id"]: s for split in ("train", "val", "test") for s in _samples(out, split)}
    assert sorted(got) == rels  # track id = relative path
    for rel, s in got.items():
        assert s["tags"] == [rel.split("/")[0]]
        assert s["sample_rate"] == 16000
        assert abs(s["audio"].shape[0] - 0.2 * 16000) <= 1200  # mp3 adds encoder padding
    again = folder_splits(lib)[0]
    assert {k: [i.track_id for i in v] for k, v in again.items()} == {
        k: [s["track_id"] for s in _samples(out, k)] for k in ("train", "val", "test")
    }


def test_csv_mapping_with_split_column(tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    rels = _library(lib, per_label=3)
    mapping = tmp_path / "labels.csv"
    with mapping.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "split", "labels"])
        for i, rel in enumerate(rels[:6]):
            split = ("train", "Valid", "TEST")[i % 3]
            w.writerow(
                [f"./{rel}", split, f"{rel.split('/')[0]}| live |" if "live" in rel else "x"]
            )
    out = tmp_path / "shards"
    report = prepare_folder(
        root=str(lib),
        out=str(out),
        labels=str(mapping),
        path_column="file",
        tags_column="labels",
        tag_separator="|",
        progress=False,
    )
    assert report.n_written == 6
    manifest = load_manifest(out)
    assert {k: v["n_samples"] for k, v in manifest["splits"].items()} == {
        "train": 2,
        "val": 2,
        "test": 2,
    }
    assert manifest["provenance"]["stats"] == {"n_files": 9, "n_ignored": 3, "n_missing": 0}
    assert not manifest["provenance"]["options"]["single_label"]
    tags = {s["track_id"]: s["tags"] for k in ("train", "val", "test") for s in _samples(out, k)}
    assert tags[rels[0]] == (["hip hop", "live"] if "live" in rels[0] else ["x"])
    assert set(tags) == set(rels[:6])


def test_json_mappings(tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    rels = _library(lib, per_label=2)
    plain = tmp_path / "tags.json"
    plain.write_text(json.dumps({r: ["a", "b"] if i % 2 else ["c"] for i, r in enumerate(rels)}))
    entries = read_mapping(plain)
    assert [e.path for e in entries] == rels and entries[1].tags == ("a", "b")
    assert all(e.split is None for e in entries)
    objects = tmp_path / "objects.json"
    objects.write_text(
        json.dumps(
            {r: {"tags": ["t"], "split": "train" if i < 4 else "test"} for i, r in enumerate(rels)}
        )
    )
    splits, stats = folder_splits(lib, labels=objects)
    assert [len(v) for v in splits.values()] == [4, 0, 2]
    assert stats == {"n_files": 6, "n_ignored": 0, "n_missing": 0}


def test_mapping_errors_name_file_and_row(tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    rels = _library(lib, per_label=2)
    m = tmp_path / "m.csv"
    m.write_text("path,tags\n" + "\n".join(f"{r},x" for r in rels) + "\nrock/gone.mp3,x\n")
    with pytest.raises(
        FileNotFoundError,
        match=r"1 of the 7 files in .*m.csv do not exist.*m.csv:8 'rock/gone.mp3'",
    ):
        prepare_folder(root=str(lib), out=str(tmp_path / "o"), labels=str(m), progress=False)
    assert not (tmp_path / "o").exists()
    report = prepare_folder(
        root=str(lib), out=str(tmp_path / "o"), labels=str(m), skip_missing=True, progress=False
    )
    assert report.n_written == 6 and report.n_failed == 1
    assert "rock/gone.mp3" in (tmp_path / "o" / "failures.tsv").read_text()

    cases = {
        "path,tags\na.wav,x\na.wav,y\n": r"m.csv:3: 'a.wav' is listed twice \(also at .*m.csv:2\)",
        "path,genre\na.wav,x\n": r"m.csv: missing column\(s\) 'tags'",
        "path,tags\na.wav,x,extra\n": r"m.csv:2: expected 2 fields",
        "path,tags,split\na.wav,x,train\nb.wav,y,holdout\n": r"m.csv:3: unknown split 'holdout'",
        "path,tags,split\na.wav,x,train\nb.wav,y,\n": r"m.csv:3: empty 'split'",
        "path,tags\n../outside.wav,x\n": r"m.csv:2: audio path '../outside.wav' must be relative",
        "path,tags\n,x\n": r"m.csv:2: empty 'path'",
    }
    for text, message in cases.items():
        m.write_text(text)
        with pytest.raises(ValueError, match=message):
            read_mapping(m)
    j = tmp_path / "m.json"
    for text, message in {
        '["a.wav"]': r"m.json: expected an object",
        '{"a.wav": "rock"}': r"m.json: 'a.wav': tags must be a list of strings",
        '{"a.wav": {"split": "train"}}': r"m.json: 'a.wav': no 'tags' field",
        '{"a.wav": {"tags": [], "split": "train"}, "b.wav": ["x"]}': r"m.json: 'b.wav': no split",
        "{not json": r"m.json: not valid JSON",
    }.items():
        j.write_text(text)
        with pytest.raises(ValueError, match=message):
            read_mapping(j)


def test_option_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="music folder .*nowhere not found"):
        prepare_folder(root=str(tmp_path / "nowhere"), out=str(tmp_path / "o"), progress=False)
    _write(tmp_path / "lib" / "loose.wav", 0)
    with pytest.raises(ValueError, match="sits in a sub-folder at label_level=0"):
        prepare_folder(root=str(tmp_path / "lib"), out=str(tmp_path / "o"), progress=False)
    empty = tmp_path / "empty.csv"
    empty.write_text("path,tags\n")
    with pytest.raises(ValueError, match="empty.csv: the mapping lists no file"):
        folder_splits(tmp_path / "lib", labels=empty)
    with pytest.raises(ValueError, match="stratify must be"):
        folder_splits(tmp_path / "lib", stratify="rarest")
    with pytest.raises(ValueError, match="val_fraction and test_fraction"):
        folder_splits(tmp_path / "lib", val_fraction=0.7, test_fraction=0.7)


def test_one_corrupt_file_in_100_costs_exactly_that_file(tmp_path: Path) -> None:
    """100 tiny files, one of them garbage, written by 2 worker processes: 99 in, 1 reported."""
    lib = tmp_path / "lib"
    rels = []
    for i in range(100):
        rel = f"{('a', 'b', 'c', 'd')[i % 4]}/{i:03d}.wav"
        path = lib / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if i == 57:
            path.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(range(200)))
        else:
            buf = io.BytesIO()
            x = np.random.default_rng(i).uniform(-0.5, 0.5, 400).astype(np.float32)
            sf.write(buf, x, 8000, format="WAV", subtype="PCM_16")
            path.write_bytes(buf.getvalue())
        rels.append(rel)
    out = tmp_path / "shards"
    report = prepare_folder(
        root=str(lib),
        out=str(out),
        sample_rate=8000,
        workers=2,
        max_samples_per_shard=10,
        progress=False,
    )
    assert report.n_written == 99 and report.n_failed == 1
    failures = list(csv.reader((out / "failures.tsv").open(), delimiter="\t"))
    assert len(failures) == 2 and failures[1][1] == "b/057.wav"
    manifest = load_manifest(out)
    assert sum(s["n_samples"] for s in manifest["splits"].values()) == 99
    written = {s["track_id"] for k in ("train", "val", "test") for s in _samples(out, k)}
    assert written == set(rels) - {"b/057.wav"}
