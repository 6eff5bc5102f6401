"""Tests for musictag.data.sources.mtt on a miniature MagnaTagATune and on real split metadata.

Format references: MagnaTagATune (Law et al. 2009, mirg.city.ac.uk/codeapps/the-magnatagatune-
dataset): ``annotations_final.csv`` is tab-separated, header ``clip_id``, 188 tags, ``mp3_path``;
audio in folders ``0``-``f``. The real annotations file could not be obtained (see
``../shared/metadata/README.md``), so the header below is a **synthetic reconstruction** in that
format (188 tag names, in the order we believe the real file has; the real top-50 tags of
``tags.npy`` are all among them). Real files used: the sota split lists
``split/mtat/{tags,valid,test}.npy`` (Won et al. 2020), musicnn-training's ``index_mtt.tsv``
(clip_id + mp3_path of all 25,863 rows, in annotations order) and ``val_gt_mtt.tsv`` (top-50
labels of the folder-``c`` clips), and jongpillee's ``top50_tags.txt``.
"""

from __future__ import annotations

import ast
import csv
import json
import re
import tarfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from musictag.data.shards import decode_audio, load_manifest, shard_urls
from musictag.data.sources.mtt import (
    MTT_SYNONYMS,
    classic_split,
    merge_tags,
    mtt_splits,
    prepare_mtt,
    read_annotations,
    read_split_npy,
    top_tags,
)

MTT = "metadata/magnatagatune"
SOTA_SPLIT = f"{MTT}/sota-music-tagging-models/split/mtat"
INDEX = f"{MTT}/musicnn-training/data/index/mtt"

# Synthetic reconstruction of the 188 tag columns (see the module docstring).
HEADER_TAGS = (
    "no voice,singer,duet,plucking,hard rock,world,bongos,harpsichord,female singing,clasical,"
    "sitar,chorus,female opera,male vocal,vocals,clarinet,heavy,silence,beats,men,woodwind,funky,"
    "no strings,chimes,foreign,no piano,horns,classical,female,no voices,soft rock,eerie,spacey,"
    "jazz,guitar,quiet,no beat,banjo,electric,solo,violins,folk,female voice,wind,happy,ambient,"
    "new age,synth,funk,no singing,middle eastern,trumpet,percussion,drum,airy,voice,repetitive,"
    "birds,space,strings,bass,harpsicord,medieval,male voice,girl,keyboard,acoustic,loud,classic,"
    "string,drums,electronica,not classical,chanting,no violin,not rock,no guitar,organ,no vocal,"
    "talking,choral,weird,opera,soprano,fast,acoustic guitar,electric guitar,male singer,"
    "man singing,classical guitar,country,violin,electro,reggae,tribal,dark,male opera,no vocals,"
    "irish,electronic,horn,operatic,arabic,lol,low,instrumental,trance,chant,strange,drone,"
    "synthesizer,heavy metal,modern,disco,bells,man,deep,fast beat,industrial,hard,harp,no flute,"
    "jungle,pop,lute,female vocal,oboe,mellow,orchestral,viola,light,echo,piano,celtic,"
    "male vocals,orchestra,eastern,old,flutes,punk,spanish,sad,sax,slow,male,blues,vocal,indian,"
    "no singer,scary,india,woman,woman singing,rock,dance,piano solo,guitars,no drums,jazzy,"
    "singing,cello,calm,female vocals,voices,different,techno,clapping,house,monks,flute,"
    "not opera,not english,oriental,beat,upbeat,soft,noise,choir,female singer,rap,metal,"
    "hip hop,quick,water,baroque,women,fiddle,english"
).split(",")
EMPTY_MP3 = "6/norine_braun-now_and_zen-08-gently-117-146.mp3"  # a 0-byte file in the real set


def _write_annotations(
    path: Path, rows: list[tuple[str, str, set[str]]], tags=HEADER_TAGS, quoted: bool = True
) -> Path:
    """``clip_id \\t <tags...> \\t mp3_path`` lines; every field in double quotes if ``quoted``."""

    q = '"' if quoted else ""
    sep = f"{q}\t{q}"
    col = {t: i for i, t in enumerate(tags)}
    lines = [q + sep.join(["clip_id", *tags, "mp3_path"]) + q + "\n"]
    for clip_id, rel, on in rows:
        values = ["0"] * len(tags)
        for t in on:
            values[col[t]] = "1"
        lines.append(q + sep.join([clip_id, *values, rel]) + q + "\n")
    path.write_text("".join(lines), encoding="utf-8")
    return path


def _index(shared_dir) -> list[tuple[str, str]]:
    with open(shared_dir / INDEX / "index_mtt.tsv", newline="") as f:
        return [(r[0], r[1]) for r in csv.reader(f, delimiter="\t")]


def _write_mp3(path: Path, seed: int, seconds: float = 0.3, sr: int = 16000) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    x = (0.2 * np.random.default_rng(seed).standard_normal(int(seconds * sr))).astype(np.float32)
    try:
        sf.write(path, x, sr, format="MP3")
    except (sf.LibsndfileError, TypeError, ValueError):  # libsndfile without mp3: wav bytes
        sf.write(path, x, sr, format="WAV", subtype="PCM_16")


def _save_npy(path: Path, entries: list[tuple[int, str]]) -> Path:
    np.save(path, np.array([f"{r}\t{p}" for r, p in entries]))
    return path


def _read_shard(path: str) -> list[tuple[dict, bytes]]:
    with tarfile.open(path) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
    keys = sorted({n.split(".", 1)[0] for n in members})  # key: up to the first dot
    return [(json.loads(members[f"{k}.json"]), members[f"{k}.flac"]) for k in keys]


# ------------------------------------------------------------------ real metadata


def test_reconstructed_header_covers_real_tags_and_synonyms(shared_dir):
    assert len(HEADER_TAGS) == 188 and len(set(HEADER_TAGS)) == 188
    real_top50 = np.load(shared_dir / SOTA_SPLIT / "tags.npy", allow_pickle=False).tolist()
    assert set(real_top50) <= set(HEADER_TAGS)
    assert set(MTT_SYNONYMS) | set(MTT_SYNONYMS.values()) <= set(HEADER_TAGS)


def test_classic_split_on_the_real_index(shared_dir):
    rows = _index(shared_dir)
    assert len(rows) == 25863
    sizes = Counter(classic_split(p) for _, p in rows)
    assert sizes == {"train": 18709, "val": 1825, "test": 5329}
    with pytest.raises(ValueError, match="folder 0-f"):
        classic_split("g/x.mp3")


def test_real_split_files_parse(shared_dir):
    valid = read_split_npy(shared_dir / SOTA_SPLIT / "valid.npy")
    test = read_split_npy(shared_dir / SOTA_SPLIT / "test.npy")
    assert len(valid) == 1529 and len(test) == 4332
    assert test[0] == (
        0,
        "f/american_bach_soloists-j_s__bach_solo_cantatas-01-bwv54__i_aria-30-59.mp3",
    )
    assert {p[0] for _, p in valid} == {"c"} and {p[0] for _, p in test} == {"d", "e", "f"}


@pytest.fixture(scope="module")
def full_annotations(tmp_path_factory, shared_dir):
    """All 25,863 real (clip_id, mp3_path) rows in real order; tags partly real, partly synthetic.

    Folder ``c`` carries its real top-50 labels (val_gt_mtt.tsv). The other folders carry
    synthetic tags: every even row of folders 0-b gets ``rock``, the won2020 test clips ``guitar``.
    """
    tags50 = np.load(shared_dir / SOTA_SPLIT / "tags.npy", allow_pickle=False).tolist()
    with open(shared_dir / INDEX / "val_gt_mtt.tsv", newline="") as f:
        val_gt = {r[0]: ast.literal_eval(r[1]) for r in csv.reader(f, delimiter="\t")}
    test_rows = {r for r, _ in read_split_npy(shared_dir / SOTA_SPLIT / "test.npy")}
    rows = []
    for i, (clip_id, rel) in enumerate(_index(shared_dir)):
        if rel[0] == "c":
            on = {t for t, v in zip(tags50, val_gt[clip_id], strict=True) if v}
        elif i in test_rows:
            on = {"guitar"}
        elif rel[0] in "0123456789ab" and i % 2 == 0:
            on = {"rock"}
        else:
            on = set()
        rows.append((clip_id, rel, on))
    path = _write_annotations(tmp_path_factory.mktemp("mtt") / "annotations_final.csv", rows)
    return read_annotations(path)


def test_won2020_on_the_real_split_files(full_annotations, shared_dir, tmp_path):
    ann = full_annotations
    assert len(ann.clips) == 25863 and len(ann.tags) == 188
    # every entry of the real lists names the row that holds its path: rows are 0-based data rows
    read_split_npy(shared_dir / SOTA_SPLIT / "valid.npy", ann)
    read_split_npy(shared_dir / SOTA_SPLIT / "test.npy", ann)
    valid_paths = {p for _, p in read_split_npy(shared_dir / SOTA_SPLIT / "valid.npy")}

    # the classic folder-c clips that have a top-50 tag are exactly the won2020 validation set
    classic = mtt_splits(ann, audio_dir=tmp_path, split="classic", drop_untagged=True)
    assert {i.metadata["mp3_path"] for i in classic.splits["val"]} == valid_paths
    assert classic.dropped["val_untagged"] == 1825 - 1529

    won = mtt_splits(ann, audio_dir=tmp_path, split="won2020", split_dir=shared_dir / SOTA_SPLIT)
    sizes = {s: len(v) for s, v in won.splits.items()}
    train_tagged = sum(1 for c in ann.clips if c.folder in "0123456789ab" and c.row % 2 == 0)
    assert sizes == {"train": train_tagged, "val": 1529, "test": 4332}
    assert {i.metadata["mp3_path"] for i in won.splits["val"]} == valid_paths
    assert {i.metadata["mp3_path"][0] for i in won.splits["train"]} <= set("0123456789ab")
    assert won.splits["test"][0].track_id == "2"  # clip_id of row 0
    assert won.splits["test"][0].path == str(tmp_path / "f" / ann.clips[0].mp3_path[2:])
    # validation labels are the real ones, restricted to the selected tags
    assert all(i.tags for i in won.splits["val"])

    # a mismatched annotations file is refused, naming the file, the entry and the row
    rows = [(c.clip_id, c.mp3_path, set(c.tags)) for c in ann.clips[1:10]]
    bad = read_annotations(_write_annotations(tmp_path / "shifted.csv", rows))
    with pytest.raises(
        ValueError, match=r"valid\.npy: entry 0 .* names row 5, which is .* do not match"
    ):
        read_split_npy(shared_dir / SOTA_SPLIT / "valid.npy", bad)


def test_top50_selection_reproduces_the_real_order(shared_dir, tmp_path):
    """Counts that fall in tags.npy order give back tags.npy exactly (ties: header order)."""
    real = np.load(shared_dir / SOTA_SPLIT / "tags.npy", allow_pickle=False).tolist()
    rank = {t: i for i, t in enumerate(real)}
    rows = []
    for j in range(60):
        on = {t for t in real if j < 60 - rank[t]}  # tag i is on 60 - i clips
        on |= {t for t in HEADER_TAGS if t not in rank and j < 5}  # the rest: 5 clips each
        rows.append((str(j), f"{j % 16:x}/clip-{j}.mp3", on))
    ann = read_annotations(_write_annotations(tmp_path / "a.csv", rows))
    tags, clip_tags = merge_tags(ann, None)
    selected, counts = top_tags(tags, clip_tags, 50)
    assert selected == real
    assert counts["guitar"] == 60 and counts["choral"] == 11 and counts["lol"] == 5
    every, _ = top_tags(tags, clip_tags, 0)
    assert every[:50] == real and len(every) == 188
    # jongpillee's top50_tags.txt has the same tags, but camelCase and with two swapped at the end
    txt = (shared_dir / MTT / "music_dataset_split/MTAT_split/top50_tags.txt").read_text().split()
    spaced = [re.sub(r"(?<=[a-z])([A-Z])", lambda m: " " + m[1].lower(), t) for t in txt]
    assert set(spaced) == set(selected) and spaced != selected
    assert spaced[-3:] == ["female voice", "metal", "choral"]
    assert selected[-3:] == ["metal", "female voice", "choral"]


# ------------------------------------------------------------------ miniature, end to end


def _miniature(root: Path, shared_dir, quoted: bool = True) -> list[tuple[str, str, set[str]]]:
    """Two real clips per folder (+ the real empty mp3 of folder 6), tiny mp3s, synthetic tags."""
    by_folder: dict[str, list[tuple[str, str]]] = {}
    for clip_id, rel in _index(shared_dir):
        if len(by_folder.setdefault(rel[0], [])) < 2:
            by_folder[rel[0]].append((clip_id, rel))
    chosen = [x for d in "0123456789abcdef" for x in by_folder[d]]
    chosen.insert(14, ("35644", EMPTY_MP3))  # keep folder order: after the two clips of folder 6
    rows = []
    for i, (clip_id, rel) in enumerate(chosen):
        on = {"guitar"} if i % 2 == 0 else {"classical", "no vocals"}
        if i % 3 == 0:
            on |= {"slow", "no voice"}
        if i % 5 == 0:
            on |= {"techno"}
        if rel.startswith("c/") and i % 2 == 1:
            on = {"lol"}  # a folder-c clip without any top tag
        rows.append((clip_id, rel, on))
        if rel == EMPTY_MP3:
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_bytes(b"")
        else:
            _write_mp3(root / rel, seed=i)
    _write_annotations(root / "annotations_final.csv", rows, quoted=quoted)
    return rows


def test_prepare_classic_miniature(tmp_path, shared_dir):
    root = tmp_path / "mtt"
    rows = _miniature(root, shared_dir)
    assert len(rows) == 33
    counts = Counter(t for _, _, on in rows for t in on)
    # classical and no vocals tie: the header order decides
    assert (counts["guitar"], counts["classical"], counts["no vocals"], counts["slow"]) == (
        17,
        15,
        15,
        11,
    )
    assert max(n for t, n in counts.items() if t not in ("guitar", "classical", "no vocals")) == 11

    report = prepare_mtt(root=str(root), out=str(tmp_path / "shards"), top_k=3, progress=False)

    assert report.n_failed == 1 and report.failures[0].track_id == "35644"
    assert report.failures[0].path.endswith(EMPTY_MP3)
    assert report.n_written == 32
    manifest = load_manifest(tmp_path / "shards")
    sizes = {s: v["n_samples"] for s, v in manifest["splits"].items()}
    assert sizes == {"train": 24, "val": 2, "test": 6}  # folders 0-b (minus the empty mp3), c, d-f
    prov = manifest["provenance"]
    assert prov["source"] == "mtt" and prov["tags"] == ["guitar", "classical", "no vocals"]
    assert prov["options"]["split"] == "classic" and prov["options"]["drop_untagged"] is False
    assert prov["options"]["single_label"] is False and prov["dropped"] == {}
    assert set(manifest["tag_counts"]) == {"guitar", "classical", "no vocals"}
    # the untagged folder-c clip is kept by the classic split, with no tags
    val = [s for url in shard_urls(manifest, "val") for s in _read_shard(url)]
    assert sorted(len(m["tags"]) for m, _ in val) == [0, 1]
    by_id = {
        m["track_id"]: (m, flac)
        for url in shard_urls(manifest, "train")
        for m, flac in _read_shard(url)
    }
    first_id, first_rel, _ = rows[0]
    meta, flac = by_id[first_id]
    assert meta["tags"] == ["guitar"] and meta["metadata"] == {"mp3_path": first_rel}
    assert meta["source"] == str(root / first_rel)
    x = decode_audio(flac)
    assert meta["sample_rate"] == 16000 and abs(len(x) - 4800) < 1200 and x.std() > 0.05


def test_won2020_miniature_and_merge(tmp_path, shared_dir):
    root = tmp_path / "mtt"
    rows = _miniature(root, shared_dir, quoted=False)
    ann = read_annotations(root / "annotations_final.csv")
    assert [c.tags for c in ann.clips] == [
        tuple(t for t in HEADER_TAGS if t in on) for _, _, on in rows
    ]
    split_dir = tmp_path / "split"
    split_dir.mkdir()
    valid = [(c.row, c.mp3_path) for c in ann.clips if c.folder == "c"]
    test = [(c.row, c.mp3_path) for c in ann.clips if c.folder in "def"][:-1]
    _save_npy(split_dir / "valid.npy", valid)
    _save_npy(split_dir / "test.npy", test)

    won = mtt_splits(ann, audio_dir=root, split="won2020", split_dir=split_dir, top_k=3)
    # valid lists an untagged clip: dropped (won2020 drops untagged clips by default) and counted
    assert len(won.splits["val"]) == 1 and won.dropped["val_untagged"] == 1
    assert len(won.splits["test"]) == 5
    # train: the tagged clips of folders 0-b; the unlisted folder-f clip does not leak into train
    assert len(won.splits["train"]) == 25 and won.dropped["train_excluded_heldout_folders"] == 1
    assert {i.metadata["mp3_path"][0] for i in won.splits["train"]} <= set("0123456789ab")

    # a train.npy, when present, is used as is
    _save_npy(split_dir / "train.npy", [(c.row, c.mp3_path) for c in ann.clips[:3]])
    assert (
        len(mtt_splits(ann, audio_dir=root, split="won2020", split_dir=split_dir).splits["train"])
        == 3
    )
    (split_dir / "train.npy").unlink()

    # synonyms merge before the top-k: "no vocals" and "no voice" become "no singer"
    merged = mtt_splits(ann, audio_dir=root, top_k=3, merge=MTT_SYNONYMS)
    assert merged.tags == ["no singer", "guitar", "classical"]
    assert merged.counts["no singer"] == 21 and "no vocals" not in merged.counts
    assert merged.splits["train"][1].tags == ("no singer", "classical")

    report = prepare_mtt(
        root=str(root),
        out=str(tmp_path / "shards"),
        split="won2020",
        split_dir=str(split_dir),
        top_k=3,
        merge={"no vocals": "no voice"},
        merge_synonyms=False,
        progress=False,
    )
    manifest = load_manifest(tmp_path / "shards")
    # train 25 (one of them the empty mp3) + val 1 + test 5
    assert report.n_written == 30 and [f.track_id for f in report.failures] == ["35644"]
    prov = manifest["provenance"]
    assert prov["tags"] == ["no voice", "guitar", "classical"]
    assert (
        prov["options"]["merge"] == {"no vocals": "no voice"}
        and prov["options"]["drop_untagged"] is True
    )
    assert prov["dropped"]["val_untagged"] == 1


def test_quoted_and_plain_annotations_read_the_same(tmp_path):
    rows = [("2", "f/a-30-59.mp3", {"guitar", "no voice"}), ("6", "0/b-1-30.mp3", set())]
    a = read_annotations(_write_annotations(tmp_path / "q.csv", rows, quoted=True))
    b = read_annotations(_write_annotations(tmp_path / "p.csv", rows, quoted=False))
    assert a.tags == b.tags == tuple(HEADER_TAGS) and a.clips == b.clips
    assert a.clips[0].tags == ("no voice", "guitar") and a.clips[1].tags == ()


# ------------------------------------------------------------------ errors


def test_annotation_errors(tmp_path):
    p = tmp_path / "annotations_final.csv"
    p.write_text("clip_id,guitar,mp3_path\n2,1,f/a.mp3\n")  # comma-separated: one column
    with pytest.raises(
        ValueError, match=r"annotations_final\.csv: missing column\(s\) 'clip_id', 'mp3_path'"
    ):
        read_annotations(p)
    p.write_text("clip_id\tguitar\tmp3_path\n2\t1\tf/a.mp3\n6\t1\n")
    with pytest.raises(
        ValueError, match=r"annotations_final\.csv:3: expected 3 tab-separated fields, got 2"
    ):
        read_annotations(p)
    p.write_text('"clip_id"\t"guitar"\t"mp3_path"\n"2"\t"2"\t"f/a.mp3"\n')
    with pytest.raises(ValueError, match=r":2: column 'guitar': expected 0 or 1, got '2'"):
        read_annotations(p)
    p.write_text("clip_id\tguitar\tmp3_path\n2\t1\tmp3/a.wav\n")
    with pytest.raises(ValueError, match=r":2: column 'mp3_path'"):
        read_annotations(p)
    p.write_text("clip_id\tguitar\tmp3_path\n2\t1\tf/a.mp3\n2\t0\tf/b.mp3\n")
    with pytest.raises(ValueError, match=r":3: clip_id 2 repeated"):
        read_annotations(p)
    with pytest.raises(FileNotFoundError, match="annotations_final"):
        read_annotations(tmp_path / "nope.csv")


def test_merge_and_split_errors(tmp_path):
    rows = [("2", "f/a-30-59.mp3", {"guitar"}), ("6", "0/b-1-30.mp3", {"no vocals"})]
    ann = read_annotations(_write_annotations(tmp_path / "a.csv", rows))
    with pytest.raises(
        ValueError, match=r"unknown MagnaTagATune tag\(s\) 'no vocalz' \(close: .*'no vocals'"
    ):
        merge_tags(ann, {"no vocalz": "no vocal"})
    with pytest.raises(ValueError, match="'instrumentals'"):
        merge_tags(ann, {"no vocals": "instrumentals"})
    with pytest.raises(ValueError, match="cycle"):
        merge_tags(ann, {"no vocals": "no vocal", "no vocal": "no vocals"})
    tags, clip_tags = merge_tags(ann, {"no vocals": "no vocal", "no vocal": "no voice"})
    assert clip_tags[1] == ("no voice",) and "no vocals" not in tags and "no vocal" not in tags
    with pytest.raises(ValueError, match="needs split_dir"):
        mtt_splits(ann, audio_dir=tmp_path, split="won2020")
    with pytest.raises(ValueError, match="unknown MagnaTagATune split"):
        mtt_splits(ann, audio_dir=tmp_path, split="random")
    with pytest.raises(ValueError, match="top_k"):
        mtt_splits(ann, audio_dir=tmp_path, top_k=-1)
    bad = tmp_path / "valid.npy"
    np.save(bad, np.array(["0 f/a-30-59.mp3"]))
    with pytest.raises(ValueError, match=r"valid\.npy: entry 0 is '0 f/a-30-59\.mp3'"):
        read_split_npy(bad)
    np.save(bad, np.array([5, 6]))
    with pytest.raises(ValueError, match="1-D unicode array"):
        read_split_npy(bad)
    _save_npy(bad, [(7, "f/a-30-59.mp3")])
    with pytest.raises(ValueError, match="names row 7, but .* has 2 rows"):
        read_split_npy(bad, ann)
    with pytest.raises(FileNotFoundError):
        read_split_npy(tmp_path / "test.npy")


def test_missing_mp3_is_an_error_unless_skipped(tmp_path):
    rows = [("2", "f/a-30-59.mp3", {"guitar"}), ("6", "0/b-1-30.mp3", {"rock"})]
    _write_annotations(tmp_path / "annotations_final.csv", rows)
    _write_mp3(tmp_path / "0/b-1-30.mp3", 0, seconds=0.1)
    with pytest.raises(
        FileNotFoundError, match=r"mtt: 1 of 2 audio files are missing .*f/a-30-59\.mp3"
    ):
        prepare_mtt(root=str(tmp_path), out=str(tmp_path / "s"), progress=False)
    report = prepare_mtt(
        root=str(tmp_path), out=str(tmp_path / "s"), skip_missing=True, progress=False
    )
    assert report.n_written == 1 and [f.track_id for f in report.failures] == ["2"]


def test_cli_help_lists_the_options(capsys):
    from musictag.cli import main

    with pytest.raises(SystemExit) as e:
        main(["prepare", "mtt", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for opt in ("--split_dir", "--top_k", "--merge", "--merge_synonyms", "--drop_untagged"):
        assert opt in out
