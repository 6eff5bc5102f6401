"""Tests for musictag.data.sources.msd_lastfm on the real MSD split lists and a miniature database.

Format references: the Last.fm dataset page (millionsongdataset.com/lastfm, ``lastfm_tags.db``:
tables ``tids(tid)``, ``tags(tag)``, ``tid_tag(tid, tag, val)``, the ints are rowids); Choi's
keunwoochoi/MSD_split_for_tagging (``{train,valid,test}_x_msd_id.txt``); Won/Lee's
jongpillee/music_dataset_split (``filtered_list_{train,test}.cP``, ``50tagList.txt``); the urop2019
cleaning lists (pukkapies/urop2019 ``million-song-cleaning/txt``). The real files are read from
``../shared/metadata/msd`` (see its README). No sample of ``lastfm_tags.db`` exists publicly, so the
miniature database is built here with sqlite3 in the real schema.
"""

from __future__ import annotations

import csv
import json
import pickle
import sqlite3
import tarfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from musictag.data.shards import load_manifest, shard_urls
from musictag.data.sources import msd_lastfm
from musictag.data.sources.msd_lastfm import (
    WON_N_TRAIN,
    audio_paths,
    build_tag_map,
    decade,
    load_msd_tags,
    normalise_tag,
    prepare_msd,
    read_cleaning_list,
    read_id_list,
    read_plain_pickle,
    read_split_ids,
    spelling_key,
)

MSD = "metadata/msd"
LISTS = f"{MSD}/urop2019/million-song-cleaning/txt"
RANDOM_SIZES = {"train": 9, "val": 4, "test": 3}


@pytest.fixture(scope="module")
def msd(shared_dir: Path) -> Path:
    return shared_dir / MSD


@pytest.fixture(scope="module")
def lists(shared_dir: Path) -> Path:
    return shared_dir / LISTS


# ------------------------------------------------------------------ real split lists


def test_real_choi_lists(msd: Path) -> None:
    valid = read_id_list(msd / "MSD_split_for_tagging/valid_x_msd_id.txt")
    test = read_id_list(msd / "MSD_split_for_tagging/test_x_msd_id.txt")
    assert (len(valid), len(test)) == (12634, 28540)
    assert valid[0] == "TRYLROL128F931C1A7" and test[0] == "TRAADIN128F931D672"
    assert not set(valid) & set(test)


def test_real_won_test_pickle_read_without_unpickling(msd: Path) -> None:
    path = msd / "music_dataset_split/MSD_split/filtered_list_test.cP"
    assert path.read_bytes().startswith(b"(lp1\nS'TR")  # protocol 0, py2 str opcodes
    ids = read_plain_pickle(path)
    assert isinstance(ids, list) and len(ids) == 28435 and len(set(ids)) == 28435
    # an order-preserving subset of Choi's test list (the tracks with >= 29.1 s of audio)
    choi = iter(read_id_list(msd / "MSD_split_for_tagging/test_x_msd_id.txt"))
    assert all(tid in choi for tid in ids)


def test_plain_pickle_refuses_code(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.cP"
    evil.write_bytes(f"cos\nsystem\n(S'touch {marker}'\ntR.".encode())
    with pytest.raises(ValueError, match=r"evil.cP: .*global os\.system is not allowed"):
        read_plain_pickle(evil)
    assert not marker.exists()
    obj = tmp_path / "obj.pkl"
    obj.write_bytes(pickle.dumps({"a": Path("x")}, protocol=2))
    with pytest.raises(ValueError, match="is not allowed"):
        read_plain_pickle(obj)
    junk = tmp_path / "junk.cP"
    junk.write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match="junk.cP: cannot read"):
        read_plain_pickle(junk)
    value = {"TRA": "1/2/123.clip.mp3", "TRB": 123, "n": [1, "x", "x"], "big": 2**70}
    for proto in (0, 1, 2, 4, 5):
        p = tmp_path / f"ok{proto}.pkl"
        p.write_bytes(pickle.dumps(value, protocol=proto))
        assert read_plain_pickle(p) == value
    p.write_bytes(pickle.dumps([b"TRA", "TRB"], protocol=4))  # bytes are read as UTF-8
    assert read_plain_pickle(p) == ["TRA", "TRB"]
    p.write_bytes(pickle.dumps([("TRA", 1.5)], protocol=4))  # no globals, but not a plain list
    with pytest.raises(ValueError, match="a tuple is not allowed"):
        read_plain_pickle(p)


# ------------------------------------------------------------------ urop2019 lists


def test_real_urop2019_lists_semantics(lists: Path) -> None:
    counts = {}
    for group in ("genre", "female", "male", "rap", "instrumental"):
        kept, rejected = read_cleaning_list(lists / f"{group}_list_filtered.txt")
        counts[group] = (len(kept), len(rejected))
        # the reviewed list is the raw list with some lines prefixed by "-"
        raw = [t for t in (lists / f"{group}_list.txt").read_text().splitlines() if t.strip()]
        marked = [
            t.removeprefix("-")
            for t in (lists / f"{group}_list_filtered.txt").read_text().splitlines()
            if t.strip()
        ]
        assert marked == raw
    assert counts == {
        "genre": (168, 236),
        "female": (52, 9),
        "male": (16, 2),
        "rap": (95, 11),
        "instrumental": (53, 11),
    }


def test_tag_normalisation_rules() -> None:
    assert normalise_tag("  Hip   Hop ") == "hip hop"
    same = [("Hip-Hop", "hip hop", "hiphop"), ("r&b", "R & B", "rnb", "r and b")]
    same += [("rock and roll", "rock 'n' roll", "Rock n Roll"), ("ballads", "ballad")]
    same += [("80s", "80's", "1980s", "'80s"), ("2000s", "00s")]
    for group in same:
        assert len({spelling_key(t) for t in group}) == 1, group
    assert spelling_key("bass") == "bass" and spelling_key("blues") == "blue"
    assert decade("1980s") == "80s" and decade("1980") is None and decade("80") is None
    assert spelling_key("80") != spelling_key("80s")


def test_tag_map_with_real_lists(lists: Path) -> None:
    raw = [
        "rock", "Rock", "Hip-Hop", "hip hop", "hiphop", "female vocalists", "Female",
        "female vocalist", "females", "favorites", "Seen Live", "80s", "1980s", "80's",
        "rhythm and blues", "rnb", "r&b", "instrumental", "mostly instrumental", "Gangsta Rap",
        "rap", "jazz", "chillout", "chill out", "Drum and bass", "drum and bass",
    ]  # fmt: skip
    ids = {i + 1: t for i, t in enumerate(raw)}
    pop = {i: 10 for i in ids}
    pop[raw.index("Hip-Hop") + 1] = 50  # the most popular spelling names the group
    mapping, report = build_tag_map(ids, pop, lists_dir=lists)
    got = {t: mapping.get(i) for i, t in ids.items()}
    assert got == {
        "rock": "rock",
        "Rock": "rock",
        "Hip-Hop": "hip-hop",
        "hip hop": "hip-hop",
        "hiphop": "hip-hop",
        "female vocalists": "female",  # kept line of female_list_filtered.txt
        "Female": "female",  # the group name itself ("-female" on the genre list is overruled)
        "female vocalist": "female",
        "females": "females",  # "-females" in the female list: an ordinary tag
        "favorites": None,  # "-favorites" on the genre list: dropped
        "Seen Live": None,  # "-seen live": matched case-insensitively
        "80s": "80s",
        "1980s": None,  # "-1980s" and "-80's" are on the genre list: dropped before merging,
        "80's": None,  # so not merged into "80s", as in urop2019
        "rhythm and blues": "rnb",  # urop2019 combine_list
        "rnb": "rnb",
        "r&b": "rnb",
        "instrumental": "instrumental",
        "mostly instrumental": "mostly instrumental",  # "-mostly instrumental"
        "Gangsta Rap": "rap",
        "rap": "rap",
        "jazz": "jazz",
        "chillout": "chill out",  # same popularity: alphabetical
        "chill out": "chill out",
        "Drum and bass": None,  # "-Drum and bass" and no kept spelling on the list
        "drum and bass": None,
    }
    assert (report.n_raw, report.n_dropped, report.n_vocal) == (len(raw), 6, 6)


def test_tag_map_options() -> None:
    ids = {1: "Hip-Hop", 2: "hiphop", 3: "rap", 4: "1990s", 5: "90s", 6: "Mellow"}
    pop = dict.fromkeys(ids, 5)
    mapping, _ = build_tag_map(ids, pop, merge={"hiphop": "rap"}, drop_decades=True)
    assert mapping == {1: "rap", 2: "rap", 3: "rap", 6: "mellow"}
    mapping, _ = build_tag_map(ids, pop, drop=["MELLOW"])
    assert mapping == {1: "hip-hop", 2: "hip-hop", 3: "rap", 4: "90s", 5: "90s"}
    with pytest.raises(ValueError, match=r"merge 'hiphop' -> 'rnb': 'rnb' is not a tag"):
        build_tag_map(ids, pop, merge={"hiphop": "rnb"})
    with pytest.raises(ValueError, match="merge cycle"):
        build_tag_map(ids, pop, merge={"hiphop": "rap", "rap": "hiphop"})
    raw, _ = build_tag_map(ids, pop, clean=False, merge={"hiphop": "Hip-Hop"}, drop=["90s"])
    assert raw == {1: "Hip-Hop", 2: "Hip-Hop", 3: "rap", 4: "1990s", 6: "Mellow"}
    with pytest.raises(ValueError, match="clean_tags=True"):
        build_tag_map(ids, pop, clean=False, lists_dir="x")


def test_tag_in_two_vocal_lists_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "genre_list_filtered.txt").write_text("rock\n-cool\n")
    (tmp_path / "male_list_filtered.txt").write_text("male vocals\nrap vocals\n")
    (tmp_path / "rap_list_filtered.txt").write_text("rap vocals\n")
    with pytest.raises(ValueError, match=r"male_list_filtered.txt: tag 'rap vocals' is also in"):
        build_tag_map({1: "rock"}, {1: 1}, lists_dir=tmp_path)
    (tmp_path / "genre_list_filtered.txt").unlink()
    (tmp_path / "rap_list_filtered.txt").unlink()
    with pytest.raises(FileNotFoundError, match="genre_list_filtered.txt"):
        build_tag_map({1: "rock"}, {1: 1}, lists_dir=tmp_path)


# ------------------------------------------------------------------ a miniature database


def _make_db(path: Path, tracks: dict[str, list[tuple[str, float]]], extra_tags=()) -> None:
    """``lastfm_tags.db`` in the real schema (rowid-referencing ints, FLOAT scores)."""
    con = sqlite3.connect(path)
    con.executescript(
        "CREATE TABLE tids (tid TEXT);"
        "CREATE TABLE tags (tag TEXT);"
        "CREATE TABLE tid_tag (tid INTEGER, tag INTEGER, val FLOAT);"
        "CREATE INDEX idx_tid_tag_tid ON tid_tag (tid);"
        "CREATE INDEX idx_tid_tag_tag ON tid_tag (tag);"
    )
    tag_ids: dict[str, int] = {}
    for tags in [*tracks.values(), [(t, 0) for t in extra_tags]]:
        for tag, _ in tags:
            if tag not in tag_ids:
                tag_ids[tag] = con.execute("INSERT INTO tags (tag) VALUES (?)", (tag,)).lastrowid
    for tid, tags in tracks.items():
        n = con.execute("INSERT INTO tids (tid) VALUES (?)", (tid,)).lastrowid
        con.executemany(
            "INSERT INTO tid_tag VALUES (?, ?, ?)", [(n, tag_ids[t], float(v)) for t, v in tags]
        )
    con.commit()
    con.close()


def _train_id(i: int) -> str:
    return f"TRAAA{i:02d}128F000000{i:02d}"[:18]


@pytest.fixture()
def collection(tmp_path: Path, msd: Path) -> dict:
    """A db of 16 tracks (6 train, 5 valid, 5 test ids from the real lists), split files, audio."""
    valid = read_id_list(msd / "MSD_split_for_tagging/valid_x_msd_id.txt")[:5]
    test = read_plain_pickle(msd / "music_dataset_split/MSD_split/filtered_list_test.cP")[:5]
    train = [_train_id(i) for i in range(6)]
    t = [
        [("rock", 100), ("Hip-Hop", 20), ("80s", 5)],
        [("Rock", 90), ("female vocalists", 100), ("favorites", 100)],
        [("hip hop", 100), ("rock", 40)],
        [("jazz", 100), ("'80s", 50), ("female vocalist", 30)],
        [("seen live", 100)],  # only a dropped tag: the track is dropped
        [("jazz", 60), ("rhythm and blues", 80)],
    ]
    v = [
        [("rock", 100)],
        [("Hip-Hop", 100), ("r&b", 10)],
        [("jazz", 100), ("Female", 70)],
        [("favorites", 100)],  # dropped
        [("rnb", 100), ("rock", 100)],
    ]
    s = [
        [("rock", 100), ("jazz", 100)],
        [("hiphop", 100)],
        [("80's", 100), ("rock", 10)],
        [("jazz", 100)],
        [("female vocalists", 100), ("rnb", 50)],
    ]
    tracks = dict(zip(train + valid + test, t + v + s, strict=True))
    root = tmp_path / "msd"
    root.mkdir()
    _make_db(root / "lastfm_tags.db", tracks)
    split_dir = tmp_path / "splits"
    split_dir.mkdir()
    for name in ("valid", "test"):
        f = f"MSD_split_for_tagging/{name}_x_msd_id.txt"
        (split_dir / f"{name}_x_msd_id.txt").write_bytes((msd / f).read_bytes())
    extra = ["TRZZZ00128F0000000", "TRZZZ01128F0000000"]  # listed, not in the db
    (split_dir / "train_x_msd_id.txt").write_text("\n".join(train + extra) + "\n")
    for i, tid in enumerate(train + valid + test):
        path = root / tid[2] / tid[3] / tid[4] / f"{tid}.mp3"
        path.parent.mkdir(parents=True, exist_ok=True)
        x = 0.2 * np.random.default_rng(i).standard_normal(int(0.25 * 22050))
        sf.write(path, x.astype(np.float32), 22050, format="MP3")
    return {"root": root, "split_dir": split_dir, "train": train, "valid": valid, "test": test}


def test_load_msd_tags_miniature(collection: dict, lists: Path) -> None:
    tags = load_msd_tags(collection["root"] / "lastfm_tags.db", lists_dir=lists, min_tracks=2)
    assert tags.n_tracks_db == 16
    assert tags.counts == {"rock": 7, "hip-hop": 4, "80s": 2, "female": 4, "jazz": 5, "rnb": 4}
    assert tags.vocabulary == ["rock", "jazz", "female", "hip-hop", "rnb", "80s"]
    tr, va, te = collection["train"], collection["valid"], collection["test"]
    assert tags.tracks[tr[0]] == {"rock": 100.0, "hip-hop": 20.0, "80s": 5.0}
    assert list(tags.tracks[tr[1]]) == ["female", "rock"]  # by score: 100 > 90
    assert tags.tracks[tr[3]] == {"jazz": 100.0, "80s": 50.0, "female": 30.0}
    assert tags.tracks[va[1]] == {"hip-hop": 100.0, "rnb": 10.0}
    assert list(tags.tracks[va[4]]) == ["rock", "rnb"]  # tie at 100: vocabulary order
    assert tags.tracks[te[2]] == {"rock": 10.0}  # 80's is dropped before merging
    assert tr[4] not in tags.tracks and va[3] not in tags.tracks
    assert tags.n_untagged == 2
    top = load_msd_tags(
        collection["root"] / "lastfm_tags.db", lists_dir=lists, min_tracks=5
    )
    assert top.vocabulary == ["rock", "jazz"]
    assert te[1] not in top.tracks  # only hip-hop
    scored = load_msd_tags(collection["root"] / "lastfm_tags.db", min_score=50, min_tracks=1)
    assert "80s" not in scored.tracks[tr[0]] and scored.tracks[tr[3]]["80s"] == 50.0


def _samples(url: str) -> list[dict]:
    with tarfile.open(url) as tar:
        return [
            json.loads(tar.extractfile(m).read())
            for m in tar
            if m.name.endswith(".json") and not m.name.endswith(".checksums.json")
        ]


def test_prepare_choi_split(collection: dict, lists: Path) -> None:
    root, out = collection["root"], collection["root"].parent / "shards"
    gone = collection["test"][3]
    (root / gone[2] / gone[3] / gone[4] / f"{gone}.mp3").unlink()
    report = prepare_msd(
        root=str(root),
        out=str(out),
        split_dir=str(collection["split_dir"]),
        lists_dir=str(lists),
        min_tracks=2,
        progress=False,
    )
    assert report.n_written == 13 and report.n_failed == 1
    failures = list(csv.reader((out / "failures.tsv").open(), delimiter="\t"))
    assert failures[1][:2] == ["test", gone]
    manifest = load_manifest(out)
    assert {k: v["n_samples"] for k, v in manifest["splits"].items()} == {
        "train": 5,
        "val": 4,
        "test": 4,
    }
    stats = manifest["provenance"]["stats"]
    assert stats["listed"] == {"train": 8, "val": 12634, "test": 28540}
    assert stats["n_missing_audio"] == 1 and stats["n_tracks_db"] == 16
    # tracks of the lists without a kept tag (most of the real lists are not in this db)
    assert manifest["provenance"]["dropped"] == {
        "train_no_kept_tag": 3,
        "train_not_in_audio_map": 0,
        "val_no_kept_tag": 12630,
        "val_not_in_audio_map": 0,
        "test_no_kept_tag": 28535,
        "test_not_in_audio_map": 0,
    }
    assert manifest["provenance"]["tags"] == ["rock", "jazz", "female", "hip-hop", "rnb", "80s"]
    samples = {s["track_id"]: s for url in shard_urls(manifest, "train") for s in _samples(url)}
    first = samples[collection["train"][0]]
    assert first["tags"] == ["rock", "hip-hop", "80s"]
    assert first["metadata"]["tag_scores"] == {"rock": 100.0, "hip-hop": 20.0, "80s": 5.0}
    assert first["source"].endswith(f"/A/A/A/{collection['train'][0]}.mp3")
    test_ids = [s["track_id"] for url in shard_urls(manifest, "test") for s in _samples(url)]
    assert test_ids == [t for t in collection["test"] if t != gone]  # list order


def test_prepare_won_split_and_missing_audio_error(
    collection: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert WON_N_TRAIN == 201680  # train ids, then 11,774 validation ids, in one list
    # a shorter list keeps the test fast: 10 train ids (6 of them in the db), then validation
    monkeypatch.setattr(msd_lastfm, "WON_N_TRAIN", 10)
    tr, va = collection["train"], collection["valid"]
    filler = [f"TRZZ{i:014d}" for i in range(10 - len(tr))]
    won = tmp_path / "won"
    won.mkdir()
    (won / "filtered_list_train.cP").write_bytes(pickle.dumps(tr + filler + va, protocol=0))
    (won / "filtered_list_test.cP").write_bytes(pickle.dumps(collection["test"], protocol=2))
    ids = read_split_ids("won", won)
    assert ids["train"][: len(tr)] == tr and ids["val"] == va and ids["test"] == collection["test"]
    root = collection["root"]
    tid = collection["valid"][0]
    (root / tid[2] / tid[3] / tid[4] / f"{tid}.mp3").unlink()
    with pytest.raises(FileNotFoundError, match=f"1 of 16 audio files are missing.*{tid}"):
        prepare_msd(
            root=str(root),
            out=str(tmp_path / "o"),
            split="won",
            split_dir=str(won),
            min_tracks=1,
            skip_missing=False,
            progress=False,
        )


def test_audio_maps_and_random_split(collection: dict, tmp_path: Path) -> None:
    root = collection["root"]
    ids = collection["train"] + collection["valid"]
    amap = tmp_path / "audio.csv"
    rows = [f"{t},{t[2]}/{t[3]}/{t[4]}/{t}.mp3,x" for t in ids[1:]]
    amap.write_text("tid,path,other\n" + "\n".join(rows) + "\n")
    paths = audio_paths(root, ids, audio_map=amap)
    assert ids[0] not in paths and paths[ids[1]] == root / "A/A/A" / f"{ids[1]}.mp3"
    seven = tmp_path / "7d"
    seven.mkdir()
    to7d = {t: 1000 + i for i, t in enumerate(ids)}
    (seven / "MSD_id_to_7D_id.pkl").write_bytes(pickle.dumps(to7d, protocol=2))
    p7 = {str(v): f"{str(v)[0]}/{str(v)[1]}/{v}.clip.mp3" for v in to7d.values()}
    (seven / "7D_id_to_path.pkl").write_bytes(pickle.dumps(p7, protocol=0))
    paths = audio_paths(root, ids, seven_digital_dir=seven)
    assert paths[ids[2]] == root / "1/0/1002.clip.mp3"
    tpl = audio_paths(root, ids[:1], path_template="{tid}.wav")
    assert tpl == {ids[0]: root / f"{ids[0]}.wav"}
    with pytest.raises(ValueError, match="path_template"):
        audio_paths(root, ids, path_template="{track}.mp3")
    bad = tmp_path / "bad.csv"
    bad.write_text("tid,path\nTRnotanid,a.mp3\n")
    with pytest.raises(ValueError, match=r"bad.csv:2: 'TRnotanid' is not an MSD track id"):
        audio_paths(root, ids, audio_map=bad)
    bad.write_text("track,path\n")
    with pytest.raises(ValueError, match=r"bad.csv: missing column\(s\) 'tid'"):
        audio_paths(root, ids, audio_map=bad)

    report = prepare_msd(
        root=str(root),
        out=str(tmp_path / "random"),
        split="random",
        min_tracks=1,
        val_fraction=0.25,
        test_fraction=0.25,
        progress=False,
    )
    manifest = load_manifest(tmp_path / "random")
    sizes = {k: v["n_samples"] for k, v in manifest["splits"].items()}
    # without the urop2019 lists nothing is dropped: all 16 tracks keep a tag
    assert report.n_written == sum(sizes.values()) == 16 and report.n_failed == 0
    assert sizes == RANDOM_SIZES


def test_choi_top50_with_raw_tags(tmp_path: Path, msd: Path) -> None:
    top50 = (msd / "music_dataset_split/MSD_split/50tagList.txt").read_text().splitlines()
    assert len(top50) == 50 and "Hip-Hop" in top50 and "female vocalist" in top50
    tracks = {_train_id(i): [(tag, 100), ("female vocalists", 50)] for i, tag in enumerate(top50)}
    tracks[_train_id(60)] = [("some rare tag", 100)]
    db = tmp_path / "lastfm_tags.db"
    _make_db(db, tracks)
    raw = load_msd_tags(
        db, clean=False, tag_list=msd / "music_dataset_split/MSD_split/50tagList.txt"
    )
    assert raw.vocabulary == top50  # exact raw names, file order
    assert raw.tracks[_train_id(33)] == {"Hip-Hop": 100.0, "female vocalists": 50.0}
    assert raw.n_untagged == 1
    # cleaning merges "female vocalist" into "female vocalists": the raw list no longer fits
    with pytest.raises(ValueError, match=r"50tagList.txt:32: tag 'female vocalist' is held by no"):
        load_msd_tags(db, tag_list=msd / "music_dataset_split/MSD_split/50tagList.txt")


def test_database_and_list_errors(tmp_path: Path, collection: dict) -> None:
    db = tmp_path / "broken.db"
    con = sqlite3.connect(db)
    con.executescript("CREATE TABLE tids (tid TEXT); CREATE TABLE tags (name TEXT);")
    con.close()
    with pytest.raises(ValueError, match=r"broken.db: table 'tags' has no column 'tag'"):
        load_msd_tags(db)
    con = sqlite3.connect(db)
    con.executescript("DROP TABLE tags; CREATE TABLE tags (tag TEXT);")
    con.close()
    with pytest.raises(ValueError, match=r"broken.db: no table 'tid_tag'"):
        load_msd_tags(db)
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(ValueError, match="junk.db is not a readable SQLite database"):
        load_msd_tags(junk)
    with pytest.raises(FileNotFoundError, match="nothere.db"):
        load_msd_tags(tmp_path / "nothere.db")
    lst = tmp_path / "valid_x_msd_id.txt"
    lst.write_text("TRYLROL128F931C1A7\nTRYLROL128F931C1A\n")
    with pytest.raises(ValueError, match=r"valid_x_msd_id.txt:2: 'TRYLROL128F931C1A' is not"):
        read_id_list(lst)
    with pytest.raises(ValueError, match=r"test_x_msd_id.txt: track .* is in both the val and"):
        sd = collection["split_dir"]
        (sd / "test_x_msd_id.txt").write_text((sd / "valid_x_msd_id.txt").read_text())
        read_split_ids("choi", sd)
    with pytest.raises(ValueError, match=r"merge 'jazz' -> 'bebop': 'bebop' is not a tag"):
        prepare_msd(
            root=str(collection["root"]),
            out=str(tmp_path / "o"),
            merge={"jazz": "bebop"},
            progress=False,
        )
    with pytest.raises(ValueError, match="no tag is held by 2000 tracks"):
        prepare_msd(
            root=str(collection["root"]),
            out=str(tmp_path / "o"),
            split_dir=str(collection["split_dir"]),
            progress=False,
        )
