"""Tests for musictag.data.sources.fma on a miniature FMA and on the real genres.csv.

Format references: github.com/mdeff/fma (README, ``utils.load``: ``tracks.csv`` is read with
``pd.read_csv(path, index_col=0, header=[0, 1])``, list columns with ``ast.literal_eval``) and the
FMA paper (Defferrard et al., ISMIR 2017). The real ``genres.csv`` is read from
``../shared/metadata/fma/fma_metadata``. The real ``tracks.csv`` (~256 MB) could not be obtained
(see the metadata README), so the miniature below rebuilds its layout: the 52 columns in their
four groups, the two header lines plus the ``track_id,,,...`` index line, quoted multi-line text
fields and Python-literal lists. Audio: ``fma_<subset>/<3 digits>/<6-digit id>.mp3``.
"""

from __future__ import annotations

import csv
import json
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from musictag.data.shards import decode_audio, load_manifest, shard_urls
from musictag.data.sources.fma import (
    audio_path,
    fma_splits,
    parse_id_list,
    prepare_fma,
    read_genres,
    read_tracks,
)

GENRES_CSV = "metadata/fma/fma_metadata/genres.csv"

# tracks.csv columns: (group, names), in the order of the real file (52 columns)
COLUMNS = [
    (
        "album",
        "comments date_created date_released engineer favorites id information listens "
        "producer tags title tracks type",
    ),
    (
        "artist",
        "active_year_begin active_year_end associated_labels bio comments date_created "
        "favorites id latitude location longitude members name related_projects tags "
        "website wikipedia_page",
    ),
    ("set", "split subset"),
    (
        "track",
        "bit_rate comments composer date_created date_recorded duration favorites "
        "genre_top genres genres_all information interest language_code license listens "
        "lyricist number publisher tags title",
    ),
]
KEYS = [f"{g}.{n}" for g, names in COLUMNS for n in names.split()]

# (track_id, subset, split, genre_top, genres, genres_all) -- genres by title
TRACKS = [
    (2, "small", "training", "Hip-Hop", ["Hip-Hop"], ["Hip-Hop"]),
    (3, "small", "training", "Hip-Hop", ["Hip-Hop"], ["Hip-Hop"]),
    (5, "small", "validation", "Hip-Hop", ["Hip-Hop"], ["Hip-Hop"]),
    (10, "small", "test", "Pop", ["Pop"], ["Pop"]),
    (20, "medium", "training", "", ["Rock", "Electronic"], ["Rock", "Electronic"]),
    (26, "medium", "validation", "Experimental", ["Avant-Garde"], ["Avant-Garde", "Experimental"]),
    (30, "medium", "test", "Rock", ["Rock"], ["Rock"]),  # corrupt mp3
    (46, "medium", "training", "Folk", ["Folk"], ["Folk"]),  # mp3 missing
    (48, "large", "training", "Rock", ["Rock"], ["Rock"]),
    (134, "large", "test", "", [], []),
    (155066, "large", "validation", "International", ["International"], ["International"]),
]
CORRUPT, MISSING = 30, 46


def _genre_ids(shared_dir) -> dict[str, int]:
    return {g.title: gid for gid, g in read_genres(shared_dir / GENRES_CSV).items()}


def _row(track, ids: dict[str, int]) -> dict[str, str]:
    tid, subset, split, top, genres, genres_all = track
    row = {k: "" for k in KEYS}
    row.update(
        {
            "album.id": str(tid % 7 + 1),
            "album.title": f"Album {tid}, vol. 1",
            "album.tags": "[]",
            "artist.id": str(tid % 5 + 1),
            "artist.name": "AWOL",
            # quoted, multi-line, with commas and quotes: what the real bio/information fields hold
            "artist.bio": '<p>A "band", from\nNew York, NY</p>\n<p>since 1999</p>',
            "artist.tags": "['awol', 'hip hop']",
            "set.split": split,
            "set.subset": subset,
            "track.bit_rate": "256000",
            "track.duration": "30",
            "track.genre_top": top,
            "track.genres": "[" + ", ".join(str(ids[g]) for g in genres) + "]",
            "track.genres_all": "[" + ", ".join(str(ids[g]) for g in genres_all) + "]",
            "track.license": "Attribution-NonCommercial-ShareAlike 3.0 International",
            "track.tags": "[]",
            "track.title": f"Track {tid}",
        }
    )
    return row


def _write_tracks(path: Path, rows: list[dict[str, str]], keys: list[str] = KEYS) -> Path:
    """tracks.csv as pandas writes a frame with two-level columns and a named index."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["", *(k.split(".")[0] for k in keys)])
        w.writerow(["", *(k.split(".")[1] for k in keys)])
        w.writerow(["track_id", *([""] * len(keys))])
        for tid, row in rows:
            w.writerow([tid, *(row[k] for k in keys)])
    return path


def _write_mp3(path: Path, seed: int, seconds: float = 0.25, sr: int = 44100) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    x = (0.2 * np.random.default_rng(seed).standard_normal(int(seconds * sr))).astype(np.float32)
    try:
        sf.write(path, x, sr, format="MP3")
    except (sf.LibsndfileError, TypeError, ValueError):  # libsndfile without mp3: wav bytes
        sf.write(path, x, sr, format="WAV", subtype="PCM_16")


@pytest.fixture
def fma_root(tmp_path, shared_dir) -> Path:
    """root/fma_metadata/{tracks,genres}.csv and root/fma_medium/<3 digits>/<id>.mp3."""
    root = tmp_path / "fma"
    ids = _genre_ids(shared_dir)
    meta = root / "fma_metadata"
    _write_tracks(meta / "tracks.csv", [(t[0], _row(t, ids)) for t in TRACKS])
    shutil.copy(shared_dir / GENRES_CSV, meta / "genres.csv")
    for t in TRACKS:
        tid, subset = t[0], t[1]
        if subset not in ("small", "medium") or tid == MISSING:
            continue
        path = audio_path(root / "fma_medium", tid)
        if tid == CORRUPT:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"ID3\x03\x00\x00\x00\x00\x00\x00" + bytes(range(256)) * 8)
        else:
            _write_mp3(path, seed=tid)
    return root


def _samples(manifest, split) -> dict[str, tuple[dict, bytes]]:
    out = {}
    for url in shard_urls(manifest, split):
        with tarfile.open(url) as tar:
            members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
        for name in members:
            if name.endswith(".json") and not name.endswith(".checksums.json"):
                meta = json.loads(members[name])
                out[meta["track_id"]] = (meta, members[name[:-5] + ".flac"])
    return out


# ------------------------------------------------------------------ real metadata


def test_real_genres_csv(shared_dir):
    genres = read_genres(shared_dir / GENRES_CSV)
    assert len(genres) == 163
    assert list(genres) == sorted(genres)
    top = sorted(g.title for g in genres.values() if g.parent == 0)
    assert len(top) == 16 and "Hip-Hop" in top and "Old-Time / Historic" in top
    assert genres[1].title == "Avant-Garde" and genres[1].parent == 38 and genres[1].top_level == 38
    assert genres[2].title == "International" and genres[2].parent == 0
    for g in genres.values():
        assert g.parent == 0 or g.parent in genres
        assert genres[g.top_level].parent == 0
    assert len({g.title for g in genres.values()}) == 163  # titles are unique: labels by title
    # two genres of the taxonomy have no track: 161 genres are used (REFERENCES: 161 in large)
    assert sorted(g.title for g in genres.values() if g.n_tracks == 0) == ["Be-Bop", "Bollywood"]


# ------------------------------------------------------------------ parsing the miniature


def test_read_tracks_miniature(fma_root, shared_dir):
    tracks = read_tracks(fma_root / "fma_metadata/tracks.csv")
    assert [t.track_id for t in tracks] == [t[0] for t in TRACKS]
    ids = _genre_ids(shared_dir)
    t26 = tracks[5]
    assert (t26.split, t26.subset, t26.genre_top) == ("val", "medium", "Experimental")
    assert t26.genres == (ids["Avant-Garde"],) and t26.genres_all == (
        ids["Avant-Garde"],
        ids["Experimental"],
    )
    assert t26.artist_id == 26 % 5 + 1 and t26.album_id == 26 % 7 + 1
    assert tracks[9].genres_all == () and tracks[9].genre_top == ""


def test_subsets_are_nested(fma_root):
    tracks = read_tracks(fma_root / "fma_metadata/tracks.csv")
    genres = read_genres(fma_root / "fma_metadata/genres.csv")
    sizes = {}
    for subset in ("small", "medium", "large", "full"):
        r = fma_splits(
            tracks, genres, audio_dir=fma_root / f"fma_{subset}", subset=subset, drop_untagged=False
        )
        sizes[subset] = {s: len(v) for s, v in r.splits.items()}
    assert sizes["small"] == {"train": 2, "val": 1, "test": 1}
    assert sizes["medium"] == {"train": 4, "val": 2, "test": 2}
    assert sizes["large"] == sizes["full"] == {"train": 5, "val": 3, "test": 3}
    large = fma_splits(tracks, genres, audio_dir=fma_root / "fma_large", subset="large")
    assert large.dropped == {"untagged": 1}  # track 134 has no genre at all
    assert large.splits["val"][-1].path == str(fma_root / "fma_large/155/155066.mp3")
    assert large.splits["val"][-1].track_id == "155066"


def test_labels(fma_root):
    tracks = read_tracks(fma_root / "fma_metadata/tracks.csv")
    genres = read_genres(fma_root / "fma_metadata/genres.csv")

    def tags(label):
        r = fma_splits(tracks, genres, audio_dir=fma_root, subset="medium", label=label)
        return {i.track_id: i.tags for v in r.splits.values() for i in v}, r

    all_, r = tags("genres_all")
    assert all_["000026"] == ("Avant-Garde", "Experimental") and all_["000020"] == (
        "Rock",
        "Electronic",
    )
    assert r.tags == [
        g.title for g in genres.values() if g.title in {t for ts in all_.values() for t in ts}
    ]
    own, _ = tags("genres")
    assert own["000026"] == ("Avant-Garde",)
    top, r = tags("genre_top")
    assert "000020" not in top and r.dropped == {"no_genre_top": 1}
    assert top["000026"] == ("Experimental",) and r.tags == sorted(r.tags)
    assert all(len(t) == 1 for t in top.values())


# ------------------------------------------------------------------ end to end


def test_prepare_fma_medium_genres_all(fma_root, tmp_path):
    report = prepare_fma(
        root=str(fma_root),
        out=str(tmp_path / "shards"),
        subset="medium",
        label="genres_all",
        progress=False,
    )
    # the missing mp3 and the corrupt one cost exactly themselves, both listed in failures.tsv
    assert report.n_written == 6
    assert sorted(f.track_id for f in report.failures) == ["000030", "000046"]
    tsv = (tmp_path / "shards/failures.tsv").read_text()
    assert "000030" in tsv and "000046" in tsv
    manifest = load_manifest(tmp_path / "shards")
    assert {s: v["n_samples"] for s, v in manifest["splits"].items()} == {
        "train": 3,
        "val": 2,
        "test": 1,
    }
    assert (
        manifest["splits"]["train"]["n_failed"] == 1 and manifest["splits"]["test"]["n_failed"] == 1
    )
    assert manifest["tag_counts"] == {
        "Hip-Hop": 3,
        "Pop": 1,
        "Rock": 1,
        "Electronic": 1,
        "Avant-Garde": 1,
        "Experimental": 1,
    }
    prov = manifest["provenance"]
    assert prov["source"] == "fma" and prov["dropped"] == {}
    assert prov["options"]["subset"] == "medium" and prov["options"]["label"] == "genres_all"
    assert prov["options"]["single_label"] is False
    assert set(prov["tags"]) == {
        "Hip-Hop",
        "Pop",
        "Rock",
        "Electronic",
        "Avant-Garde",
        "Experimental",
        "Folk",
    }

    val = _samples(manifest, "val")
    meta, flac = val["000026"]
    assert meta["tags"] == ["Avant-Garde", "Experimental"]
    assert meta["metadata"] == {
        "genre_top": "Experimental",
        "artist_id": 26 % 5 + 1,
        "album_id": 26 % 7 + 1,
    }
    assert meta["source"] == str(fma_root / "fma_medium/000/000026.mp3")
    x = decode_audio(flac)
    assert meta["sample_rate"] == 16000 and abs(len(x) - 4000) < 1200 and x.std() > 0.05


def test_prepare_fma_genre_top_is_single_label(fma_root, tmp_path):
    report = prepare_fma(
        root=str(fma_root),
        out=str(tmp_path / "shards"),
        subset="small",
        label="genre_top",
        audio_dir=str(fma_root / "fma_medium"),  # the medium audio holds the small subset too
        progress=False,
    )
    assert report.n_written == 4 and report.n_failed == 0
    manifest = load_manifest(tmp_path / "shards")
    assert manifest["provenance"]["options"]["single_label"] is True
    assert manifest["provenance"]["tags"] == ["Hip-Hop", "Pop"]
    assert manifest["tag_counts"] == {"Hip-Hop": 3, "Pop": 1}
    report = prepare_fma(
        root=str(fma_root),
        out=str(tmp_path / "top_medium"),
        subset="medium",
        audio_dir=str(fma_root / "fma_medium"),
        label="genre_top",
        progress=False,
    )
    manifest = load_manifest(tmp_path / "top_medium")
    assert manifest["provenance"]["dropped"] == {"no_genre_top": 1}
    assert report.n_written == 5  # 8 medium tracks - no genre_top - missing - corrupt


def test_missing_audio(fma_root, tmp_path):
    with pytest.raises(
        FileNotFoundError, match=r"fma: 1 of 8 audio files are missing .*000046\.mp3"
    ):
        prepare_fma(
            root=str(fma_root),
            out=str(tmp_path / "s"),
            subset="medium",
            skip_missing=False,
            progress=False,
        )
    with pytest.raises(FileNotFoundError, match=r"none of the 11 audio files .*fma_large"):
        prepare_fma(
            root=str(fma_root),
            out=str(tmp_path / "s"),
            subset="large",
            drop_untagged=False,
            progress=False,
        )


# ------------------------------------------------------------------ errors


def test_parse_id_list():
    assert parse_id_list("[21, 811]") == (21, 811)
    assert (
        parse_id_list("[]") == () and parse_id_list("") == () and parse_id_list(" [ 7 ] ") == (7,)
    )
    for bad in ("[1, 'a']", "[1.5]", "(1, 2)", "__import__('os').system('true')", "[1,]", "21"):
        with pytest.raises(ValueError, match="tracks.csv:9: column 'track.genres'"):
            parse_id_list(bad, where="tracks.csv:9: column 'track.genres'")


def test_tracks_csv_errors(tmp_path, shared_dir):
    ids = _genre_ids(shared_dir)
    path = tmp_path / "tracks.csv"
    good = [(t[0], _row(t, ids)) for t in TRACKS[:3]]

    path.write_text("track_id,split,subset\n2,training,small\n")  # a flattened, one-line header
    with pytest.raises(ValueError, match=r"tracks\.csv: expected FMA's three header lines"):
        read_tracks(path)

    _write_tracks(path, good, keys=[k for k in KEYS if k != "set.split"])
    with pytest.raises(ValueError, match=r"tracks\.csv: missing column\(s\) 'set\.split'"):
        read_tracks(path)

    bad = [*good[:2], (5, {**good[2][1], "track.genres_all": "[21, 'x']"})]
    _write_tracks(path, bad)
    with pytest.raises(
        ValueError, match=r"tracks\.csv:\d+: column 'track\.genres_all': .*\"\[21, 'x'\]\""
    ):
        read_tracks(path)

    _write_tracks(path, [*good[:2], (5, {**good[2][1], "set.split": "train"})])
    with pytest.raises(ValueError, match=r"tracks\.csv:\d+: column 'set\.split': expected one of"):
        read_tracks(path)

    _write_tracks(path, [*good[:2], (5, {**good[2][1], "set.subset": "tiny"})])
    with pytest.raises(ValueError, match=r"column 'set\.subset'"):
        read_tracks(path)

    _write_tracks(path, [*good, (3, good[1][1])])
    with pytest.raises(ValueError, match=r"track 3 repeated"):
        read_tracks(path)

    _write_tracks(path, good)
    with open(path, "a") as f:
        f.write("7,too,few,fields\n")
    with pytest.raises(ValueError, match=r"tracks\.csv:\d+: expected 53 fields"):
        read_tracks(path)

    with pytest.raises(FileNotFoundError, match="tracks.csv"):
        read_tracks(tmp_path / "nope" / "tracks.csv")


def test_genre_errors(tmp_path, shared_dir):
    genres = read_genres(shared_dir / GENRES_CSV)
    ids = _genre_ids(shared_dir)
    row = _row(TRACKS[0], ids)
    row["track.genres_all"] = "[21, 99999]"
    path = _write_tracks(tmp_path / "tracks.csv", [(2, row)])
    with pytest.raises(
        ValueError,
        match=r"track 2: genre id\(s\) \[99999\] in track\.genres_all are not in .*genres\.csv",
    ):
        fma_splits(
            read_tracks(path), genres, audio_dir=tmp_path, genres_path=str(tmp_path / "genres.csv")
        )
    g = tmp_path / "genres.csv"
    g.write_text("genre_id,#tracks,parent,title,top_level\n1,5,0,Rock,1\n2,5,0,Rock,2\n")
    with pytest.raises(ValueError, match=r"genres\.csv:3: title 'Rock' also used by genre 1"):
        read_genres(g)
    g.write_text("genre_id,parent,title\n1,0,Rock\n")
    with pytest.raises(
        ValueError, match=r"genres\.csv: missing column\(s\) '#tracks', 'top_level'"
    ):
        read_genres(g)
    g.write_text("genre_id,#tracks,parent,title,top_level\nx,5,0,Rock,1\n")
    with pytest.raises(ValueError, match=r"genres\.csv:2: column 'genre_id': expected an integer"):
        read_genres(g)
    with pytest.raises(ValueError, match="unknown FMA subset"):
        prepare_fma(root=str(tmp_path), out=str(tmp_path / "s"), subset="tiny")
    with pytest.raises(ValueError, match="unknown FMA label"):
        fma_splits([], genres, audio_dir=tmp_path, label="mood")
    with pytest.raises(FileNotFoundError, match="genres.csv"):
        prepare_fma(root=str(tmp_path / "nowhere"), out=str(tmp_path / "s"))


def test_audio_path():
    assert audio_path("fma_large", 2) == Path("fma_large/000/000002.mp3")
    assert audio_path("fma_full", 155066) == Path("fma_full/155/155066.mp3")
