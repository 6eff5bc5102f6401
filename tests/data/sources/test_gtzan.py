"""Tests for musictag.data.sources.gtzan on a miniature GTZAN and on the real split lists.

Format references: the GTZAN archive layout ``genres/<genre>/<genre>.000NN.wav`` (Tzanetakis &
Cook 2002; marsyas.info, the Kaggle "GTZAN Dataset" mirror calls the folder ``genres_original``)
and the fault-filtered split lists ``gtzan/{train,valid,test}_filtered.txt`` of coreyker/dnn-mgr
(Kereliuk, Sturm & Larsen 2015), read here from ``../shared/metadata/gtzan`` (see its README).
"""

from __future__ import annotations

import json
import tarfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from musictag.data.shards import decode_audio, load_manifest, shard_urls
from musictag.data.sources.gtzan import (
    GENRES,
    find_genres_dir,
    gtzan_splits,
    prepare_gtzan,
    read_filtered_split,
    read_split_list,
)

SR = 22050  # the real clips are 22,050 Hz mono
LISTS = "metadata/gtzan/dnn-mgr/gtzan"

# per-genre (train, valid, test) counts of the real filtered lists (metadata README)
FILTERED_COUNTS = {
    "blues": (46, 23, 31),
    "classical": (48, 20, 31),
    "country": (45, 23, 30),
    "disco": (42, 22, 29),
    "hiphop": (47, 18, 27),
    "jazz": (43, 17, 27),
    "metal": (44, 20, 27),
    "pop": (41, 13, 30),
    "reggae": (43, 17, 26),
    "rock": (44, 24, 32),
}


def _write_clip(path: Path, seed: int, seconds: float = 0.2, fmt: str = "WAV") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    x = (0.3 * rng.standard_normal(int(seconds * SR))).astype(np.float32)
    sf.write(path, x, SR, subtype="PCM_16", format=fmt)


def _miniature(root: Path, per_genre: int, corrupt: dict[str, int] | None = None) -> Path:
    """``root/genres/<genre>/<genre>.000NN.wav``, ``per_genre`` clips each.

    ``corrupt={"jazz": 54}`` makes the last jazz clip ``jazz.00054.wav``, full of garbage bytes.
    """
    genres = root / "genres"
    corrupt = corrupt or {}
    for g, genre in enumerate(GENRES):
        for i in range(per_genre):
            if genre in corrupt and i == per_genre - 1:
                path = genres / genre / f"{genre}.{corrupt[genre]:05d}.wav"
                path.write_bytes(b"RIFF\x00\x00not a wave file" + bytes(range(256)) * 4)
            else:
                _write_clip(genres / genre / f"{genre}.{i:05d}.wav", seed=g * 1000 + i)
    (genres / "blues" / "README").write_text("not a clip")  # ignored by the scan
    return genres


def _read_shard(path: str) -> list[tuple[dict, bytes]]:
    with tarfile.open(path) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
    keys = sorted({n.split(".", 1)[0] for n in members})  # key: up to the first dot
    return [(json.loads(members[f"{k}.json"]), members[f"{k}.flac"]) for k in keys]


# ------------------------------------------------------------------ the real split lists


def test_real_filtered_lists(shared_dir):
    lists = read_filtered_split(shared_dir / LISTS)
    assert {s: len(v) for s, v in lists.items()} == {"train": 443, "val": 197, "test": 290}
    per = {s: Counter(line.split("/")[0] for line in v) for s, v in lists.items()}
    for genre, (tr, va, te) in FILTERED_COUNTS.items():
        assert (per["train"][genre], per["val"][genre], per["test"][genre]) == (tr, va, te)
    assert lists["train"][0] == "blues/blues.00029.wav"
    assert lists["val"][0] == "blues/blues.00000.wav"
    assert lists["test"][0] == "blues/blues.00012.wav"
    # the known-corrupt clip of the real collection is part of the filtered training list
    assert "jazz/jazz.00054.wav" in lists["train"]


def test_real_stratified_lists_parse(shared_dir):
    sizes = {
        n: len(read_split_list(shared_dir / LISTS / f"{n}_stratified.txt"))
        for n in ("train", "valid", "test")
    }
    assert sizes == {"train": 500, "valid": 250, "test": 250}


# ------------------------------------------------------------------ miniature, end to end


def test_prepare_stratified_one_corrupt_file_in_100(tmp_path):
    """1 corrupt clip in 100 costs exactly that clip, with two worker processes."""
    # jazz: 00000-00008 plus the corrupt 00054 (the real collection's known-bad clip)
    _miniature(tmp_path / "gtzan", per_genre=10, corrupt={"jazz": 54})

    report = prepare_gtzan(
        root=str(tmp_path / "gtzan"), out=str(tmp_path / "shards"), workers=2, progress=False
    )

    assert report.n_written == 99 and report.n_failed == 1
    (failure,) = report.failures
    assert failure.track_id == "jazz.00054" and failure.path.endswith("jazz/jazz.00054.wav")
    failures_tsv = (tmp_path / "shards/failures.tsv").read_text().splitlines()
    assert len(failures_tsv) == 2 and "jazz.00054" in failures_tsv[1]

    manifest = load_manifest(tmp_path / "shards")
    sizes = {s: v["n_samples"] for s, v in manifest["splits"].items()}
    assert sizes == {"train": 79, "val": 10, "test": 10}  # 8/1/1 per genre, minus the corrupt clip
    for split in ("val", "test"):
        assert manifest["splits"][split]["tag_counts"] == {g: 1 for g in GENRES}
    assert manifest["tag_counts"] == {g: 9 if g == "jazz" else 10 for g in GENRES}
    prov = manifest["provenance"]
    assert prov["source"] == "gtzan" and prov["tags"] == list(GENRES)
    assert prov["options"]["single_label"] is True
    assert prov["options"]["split"] == "stratified"
    assert prov["options"]["fractions"] == [0.8, 0.1, 0.1] and prov["options"]["seed"] == 0
    assert "workers" not in prov["options"]  # a run with 1 worker gives the same manifest

    samples = [s for url in shard_urls(manifest, "val") for s in _read_shard(url)]
    assert sorted(meta["tags"][0] for meta, _ in samples) == sorted(GENRES)
    for meta, flac in samples:
        assert meta["tags"] == [meta["track_id"].split(".")[0]]
        assert meta["sample_rate"] == 16000
        x = decode_audio(flac)
        assert x.shape == (meta["num_samples"],) and abs(len(x) - 0.2 * 16000) <= 2
        assert np.isfinite(x).all() and x.std() > 0.05


def test_stratified_split_is_seeded(tmp_path):
    _miniature(tmp_path, per_genre=10)
    a = gtzan_splits(tmp_path, seed=0)
    assert gtzan_splits(tmp_path / "genres", seed=0) == a  # root may be the genres folder itself
    b = gtzan_splits(tmp_path, seed=1)
    assert a != b
    c = gtzan_splits(tmp_path, fractions=(0.5, 0.2, 0.3), seed=0)
    assert {s: len(v) for s, v in c.items()} == {"train": 50, "val": 20, "test": 30}
    item = a["train"][0]
    assert item.tags == ("blues",) and item.track_id.startswith("blues.000")


def test_prepare_filtered_miniature(tmp_path, shared_dir):
    """The filtered split on a miniature: the first lines of each real list, as files on disk."""
    real = read_filtered_split(shared_dir / LISTS)
    split_dir = tmp_path / "dnn-mgr/gtzan"
    split_dir.mkdir(parents=True)
    chosen = {}
    for split, name in (("train", "train"), ("val", "valid"), ("test", "test")):
        per_genre: dict[str, list[str]] = {}
        for line in real[split]:
            per_genre.setdefault(line.split("/")[0], []).append(line)
        chosen[split] = [line for g in GENRES for line in per_genre[g][:2]]
        (split_dir / f"{name}_filtered.txt").write_text("".join(f"{x}\n" for x in chosen[split]))
    genres = tmp_path / "gtzan/genres_original"  # the Kaggle archive's folder name
    for i, line in enumerate(line for v in chosen.values() for line in v):
        _write_clip(genres / line, seed=i, seconds=0.1)

    report = prepare_gtzan(
        root=str(tmp_path / "gtzan"),
        out=str(tmp_path / "shards"),
        split="filtered",
        split_dir=str(split_dir),
        progress=False,
    )
    assert report.n_written == 60 and report.n_failed == 0
    manifest = load_manifest(tmp_path / "shards")
    for split in ("train", "val", "test"):
        assert manifest["splits"][split]["n_samples"] == 20
        assert manifest["splits"][split]["tag_counts"] == {g: 2 for g in GENRES}
    opts = manifest["provenance"]["options"]
    assert opts["split"] == "filtered" and opts["split_dir"] == str(split_dir)
    assert opts["single_label"] is True
    written = {m["track_id"] for url in shard_urls(manifest, "test") for m, _ in _read_shard(url)}
    assert written == {Path(x).stem for x in chosen["test"]}


def test_filtered_reads_au_files_of_the_original_tarball(tmp_path):
    lists = tmp_path / "lists"
    lists.mkdir()
    for name, line in (
        ("train", "rock/rock.00001.wav"),
        ("valid", "pop/pop.00002.wav"),
        ("test", "jazz/jazz.00003.wav"),
    ):
        (lists / f"{name}_filtered.txt").write_text(line + "\n")
    for genre in GENRES:
        (tmp_path / "genres" / genre).mkdir(parents=True)
    for line in ("rock/rock.00001.au", "pop/pop.00002.au", "jazz/jazz.00003.au"):
        _write_clip(tmp_path / "genres" / line, 1, fmt="AU")
    out = gtzan_splits(tmp_path, split="filtered", split_dir=lists)
    assert [str(i.path).endswith(".au") for v in out.values() for i in v] == [True] * 3
    assert out["val"][0].tags == ("pop",)


# ------------------------------------------------------------------ errors


def test_listed_clip_missing_on_disk(tmp_path, shared_dir):
    _miniature(tmp_path, per_genre=2)
    with pytest.raises(FileNotFoundError) as e:
        gtzan_splits(tmp_path, split="filtered", split_dir=shared_dir / LISTS)
    msg = str(e.value)
    assert "train_filtered.txt:1: blues/blues.00029.wav" in msg and "skip_missing" in msg
    # skipping is possible (the clips are then reported by write_shards)
    out = gtzan_splits(tmp_path, split="filtered", split_dir=shared_dir / LISTS, skip_missing=True)
    assert sum(len(v) for v in out.values()) == 930


def test_malformed_and_overlapping_lists(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("blues/blues.00001.wav\n\nblues/rock.00002.wav\n")
    with pytest.raises(ValueError, match=r"bad\.txt:3: .*'blues/rock\.00002\.wav'"):
        read_split_list(bad)
    bad.write_text("polka/polka.00001.wav\n")
    with pytest.raises(ValueError, match=r"bad\.txt:1"):
        read_split_list(bad)
    bad.write_text("rock/rock.00001.wav\nrock/rock.00001.wav\n")
    with pytest.raises(ValueError, match=r"bad\.txt:2: .* listed twice"):
        read_split_list(bad)
    for name in ("train", "valid", "test"):
        (tmp_path / f"{name}_filtered.txt").write_text(
            "rock/rock.00001.wav\n" if name != "valid" else "pop/pop.00001.wav\n"
        )
    with pytest.raises(
        ValueError,
        match=r"test_filtered\.txt: rock/rock\.00001\.wav is also listed in .*train_filtered\.txt",
    ):
        read_filtered_split(tmp_path)
    (tmp_path / "valid_filtered.txt").unlink()
    with pytest.raises(FileNotFoundError, match="valid_filtered.txt"):
        read_filtered_split(tmp_path)


def test_layout_and_option_errors(tmp_path):
    (tmp_path / "genres" / "blues").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=r"lacks classical/, country/"):
        find_genres_dir(tmp_path)
    _miniature(tmp_path, per_genre=1)
    with pytest.raises(ValueError, match="unknown GTZAN split 'random'"):
        gtzan_splits(tmp_path, split="random")
    with pytest.raises(FileNotFoundError, match="needs split_dir"):
        gtzan_splits(tmp_path, split="filtered")
    with pytest.raises(ValueError, match="3 numbers"):
        gtzan_splits(tmp_path, fractions=(0.9, 0.1))


def test_cli_prepare_gtzan(tmp_path, capsys):
    from musictag.cli import main

    _miniature(tmp_path / "gtzan", per_genre=1)
    rc = main(
        [
            "prepare",
            "gtzan",
            "--root",
            str(tmp_path / "gtzan"),
            "--out",
            str(tmp_path / "s"),
            "--fractions",
            "[1, 0, 0]",
            "--progress",
            "false",
        ]
    )
    assert rc == 0
    assert "gtzan: 10 tracks written" in capsys.readouterr().out
    assert load_manifest(tmp_path / "s")["splits"]["train"]["n_samples"] == 10
