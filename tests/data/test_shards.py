"""Tests for musictag.data.shards: writing, resuming, failures, limits and the safe decoders."""

from __future__ import annotations

import io
import json
import logging
import tarfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr

import musictag
from musictag.data import shards
from musictag.data.shards import (
    AudioItem,
    TarMember,
    audio_info,
    decode_audio,
    decode_json,
    load_manifest,
    read_shard,
    shard_urls,
    write_shards,
    writer,
)

SR = 16000
LSB = 1 / 32768


def _can_write_mp3() -> bool:
    try:
        sf.write(io.BytesIO(), np.zeros(1152, np.float32), 22050, format="MP3")
    except Exception:
        return False
    return True


HAS_MP3 = _can_write_mp3()


def _tone(seconds: float, sr: int, channels: int, freq: float = 440.0) -> np.ndarray:
    """Sine at amplitude 0.5, a different frequency per channel: [frames, channels]."""
    t = np.arange(int(round(seconds * sr))) / sr
    x = np.stack([0.5 * np.sin(2 * np.pi * freq * (c + 1) * t) for c in range(channels)], 1)
    return x.astype(np.float32)


# (name, seconds, sample rate, channels, format) -- a mix of rates, channel counts and codecs
SPECS = [
    ("a.wav", 1.0, 16000, 1, "WAV"),
    ("b.flac", 0.5, 44100, 2, "FLAC"),
    ("c.ogg", 1.5, 22050, 1, "OGG"),
    ("d.wav", 2.0, 16000, 2, "WAV"),
    ("e.flac", 0.7, 22050, 2, "FLAC"),
    ("f.wav", 0.6, 44100, 1, "WAV"),
] + ([("g.mp3", 1.0, 22050, 2, "MP3")] if HAS_MP3 else [])


def _make_corpus(root: Path) -> list[AudioItem]:
    root.mkdir(parents=True, exist_ok=True)
    items = []
    for i, (name, sec, sr, ch, fmt) in enumerate(SPECS):
        path = root / name
        sf.write(path, _tone(sec, sr, ch, freq=220.0 + 55 * i), sr, format=fmt)
        tags = [("rock", "pop"), ("jazz",), (), ("rock",), ("rock", "jazz"), ("pop",), ("pop",)]
        track_id = "weird id/v2.0" if name == "d.wav" else None
        items.append(
            AudioItem(path, tags=tags[i], track_id=track_id, metadata={"i": i, "name": name})
        )
    return items


def _expected(path: Path, sr: int = SR) -> np.ndarray:
    """What the writer should store, before 16-bit quantisation: mono, resampled, clipped."""
    x, in_sr = sf.read(path, dtype="float32", always_2d=True)
    x = x.mean(axis=1, dtype=np.float32)
    if in_sr != sr:
        x = soxr.resample(x, in_sr, sr, quality="HQ")
    return np.clip(x, -1, 1)


def _read_shard(path: str | Path) -> dict[str, dict[str, bytes]]:
    samples: dict[str, dict[str, bytes]] = {}
    with tarfile.open(path) as tar:
        for m in tar.getmembers():
            key, ext = m.name.split(".", 1)
            samples.setdefault(key, {})[ext] = tar.extractfile(m).read()
    return samples


def _read_all(out: Path, split: str = "train") -> dict[str, dict[str, bytes]]:
    all_samples: dict[str, dict[str, bytes]] = {}
    for url in shard_urls(out, split):
        for key, sample in _read_shard(url).items():
            assert key not in all_samples, f"{key} appears in more than one shard"
            all_samples[key] = sample
    return all_samples


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> list[AudioItem]:
    return _make_corpus(tmp_path_factory.mktemp("audio"))


@pytest.fixture(scope="module")
def reference(corpus, tmp_path_factory) -> Path:
    """An uninterrupted single-process run, shared by the comparisons below."""
    out = tmp_path_factory.mktemp("ref")
    write_shards(corpus, out, max_samples_per_shard=2, progress=False)
    return out


def test_round_trip(corpus, reference):
    manifest = load_manifest(reference)
    samples = _read_all(reference)
    assert sorted(samples) == sorted(["a", "b", "c", "weird_id_v2_0", "e", "f", "g"][: len(corpus)])
    assert manifest["splits"]["train"]["n_samples"] == len(corpus)
    assert manifest["splits"]["train"]["shard_samples"] == [2, 2, 2, 1][: (len(corpus) + 1) // 2]
    for i, item in enumerate(corpus):
        key = "weird_id_v2_0" if item.track_id == "weird id/v2.0" else Path(item.path).stem
        meta = decode_json(samples[key]["json"])
        audio = decode_audio(samples[key]["flac"])
        expected = _expected(Path(item.path))
        assert meta["key"] == key
        assert meta["track_id"] == item.track_id
        assert meta["tags"] == list(item.tags)
        assert meta["metadata"] == {"i": i, "name": Path(item.path).name}
        assert meta["source"] == str(item.path)
        assert meta["sample_rate"] == SR
        assert meta["num_samples"] == len(audio) == len(expected)
        assert meta["duration"] == pytest.approx(len(expected) / SR)
        assert audio_info(samples[key]["flac"]) == (len(expected), SR)
        assert audio.dtype == np.float32 and audio.ndim == 1
        # 16-bit quantisation is the only loss: half an LSB, for resampled files too
        assert np.abs(audio - expected).max() <= 0.5 * LSB + 1e-7, item.path
    assert manifest["splits"]["train"]["duration_s"] == pytest.approx(
        sum(s[1] for s in SPECS), abs=1e-3
    )
    tag_counts = {"rock": 3, "pop": 2 + HAS_MP3, "jazz": 2}
    assert manifest["tag_counts"] == manifest["splits"]["train"]["tag_counts"] == tag_counts
    assert manifest["n_failed"] == 0
    assert (reference / "failures.tsv").read_text() == "split\ttrack_id\tpath\treason\n"
    assert manifest["provenance"]["musictag_version"] == musictag.__version__
    assert (manifest["audio_format"], manifest["bits"], manifest["channels"]) == ("flac", 16, 1)


def test_webdataset_reads_shards(corpus, reference):
    wds = pytest.importorskip("webdataset")
    ds = wds.WebDataset(shard_urls(reference, "train"), shardshuffle=False, empty_check=False)
    keys = [s["__key__"] for s in ds]
    assert sorted(keys) == sorted(_read_all(reference))
    assert all(set(s) >= {"flac", "json"} for s in ds)


def test_long_and_unicode_ids(corpus, tmp_path):
    wds = pytest.importorskip("webdataset")
    long_id = "ü" + "x" * 150  # longer than a ustar name: needs a pax header
    item = AudioItem(corpus[0].path, tags=("électro",), track_id=long_id, metadata={"ñ": 1})
    write_shards([item], tmp_path, progress=False)
    (sample,) = wds.WebDataset(shard_urls(tmp_path, "train"), shardshuffle=False)
    assert sample["__key__"] == "_" + "x" * 150
    meta = decode_json(sample["json"])
    assert (meta["track_id"], meta["tags"], meta["metadata"]) == (long_id, ["électro"], {"ñ": 1})
    assert load_manifest(tmp_path)["tag_counts"] == {"électro": 1}


def test_splits_mapping_and_provenance(corpus, tmp_path):
    out = tmp_path / "out"
    splits = {"train": corpus[:4], "valid": corpus[4:]}
    report = write_shards(splits, out, provenance={"collection": "synth"}, progress=True)
    manifest = load_manifest(out)
    assert sorted(p.name for p in out.glob("*.tar")) == ["train-000000.tar", "valid-000000.tar"]
    assert manifest["splits"]["train"]["n_samples"] == 4
    assert manifest["splits"]["valid"]["n_samples"] == len(corpus) - 4
    assert manifest["provenance"]["collection"] == "synth"
    assert report.n_written == len(corpus) and report.n_skipped_shards == 0
    assert shard_urls(manifest, "valid") == [str((out / "valid-000000.tar").resolve())]
    with pytest.raises(ValueError, match="'test'.*available: \\['train', 'valid'\\]"):
        shard_urls(manifest, "test")


def test_limits(corpus, tmp_path):
    # White noise does not compress and short clips make tar overhead matter: the planner's
    # estimate must still be an upper bound.
    rng = np.random.default_rng(0)
    noise = []
    for i in range(16):
        sr, ch = [(16000, 1), (44100, 2), (22050, 1), (16000, 2)][i % 4]
        x = rng.uniform(-1, 1, (int(rng.integers(sr // 20, sr)), ch)).astype(np.float32)
        sf.write(tmp_path / f"noise{i}.wav", x, sr)
        noise.append(AudioItem(tmp_path / f"noise{i}.wav"))
    items = corpus[:3] + noise + corpus[3:]
    out = tmp_path / "bytes"
    max_bytes = 64_000  # 1 s of 16 kHz 16-bit audio is 32 KB raw
    report = write_shards(items, out, max_bytes_per_shard=max_bytes, progress=False)
    manifest = load_manifest(out)
    tars = sorted(out.glob("train-*.tar"))
    assert len(tars) == len(manifest["splits"]["train"]["shards"]) >= 4
    assert sum(manifest["splits"]["train"]["shard_samples"]) == report.n_written == len(items)
    for tar in tars:
        assert tar.stat().st_size <= max_bytes, tar

    out = tmp_path / "count"
    write_shards(corpus, out, max_samples_per_shard=3, progress=False)
    counts = load_manifest(out)["splits"]["train"]["shard_samples"]
    assert counts == [3, 3, 1][: len(counts)] and sum(counts) == len(corpus)
    for url, n in zip(shard_urls(out, "train"), counts, strict=True):
        assert len(_read_shard(url)) == n


def test_oversized_item_gets_its_own_shard(corpus, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger=shards.__name__):
        write_shards(corpus[:3], tmp_path, max_bytes_per_shard=20_000, progress=False)
    assert load_manifest(tmp_path)["splits"]["train"]["shard_samples"] == [1, 1, 1]
    assert "gets a shard of its own" in caplog.text


def test_broken_files_are_skipped(corpus, tmp_path, caplog):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "corrupt.wav").write_bytes(np.random.default_rng(0).bytes(4000))
    (bad / "empty.wav").write_bytes(b"")
    sf.write(bad / "zero.wav", np.zeros((0, 1), np.float32), SR)
    nan = np.full(SR // 2, np.nan, np.float32)
    sf.write(bad / "nan.wav", nan, SR, subtype="FLOAT")
    good = list(corpus)
    items = [
        good[0],
        AudioItem(bad / "corrupt.wav", tags=("x",)),
        good[1],
        AudioItem(bad / "empty.wav"),
        AudioItem(bad / "zero.wav"),
        AudioItem(bad / "nan.wav"),
        AudioItem(bad / "missing.flac"),
        *good[2:],
    ]
    out = tmp_path / "out"
    with caplog.at_level(logging.WARNING, logger=shards.__name__):
        report = write_shards(items, out, max_samples_per_shard=2, workers=1, progress=False)
    broken = ["corrupt", "empty", "zero", "nan", "missing"]
    assert report.n_failed == len(report.failures) == 5
    assert [f.track_id for f in report.failures] == broken  # input order
    reasons = {f.track_id: f.reason for f in report.failures}
    assert reasons["zero"] == "empty audio (0 frames)"
    assert "non-finite" in reasons["nan"]
    assert reasons["corrupt"].startswith("unreadable header")
    for name in broken:
        assert str(bad / name) in caplog.text
    assert report.n_written == len(good)
    assert sorted(_read_all(out)) == sorted(writer._make_key(i.track_id) for i in good)

    rows = (out / "failures.tsv").read_text().splitlines()
    assert rows[0] == "split\ttrack_id\tpath\treason"
    assert [r.split("\t")[:2] for r in rows[1:]] == [["train", b] for b in broken]
    assert rows[1].split("\t")[2] == str(bad / "corrupt.wav")
    manifest = load_manifest(out)
    assert manifest["n_failed"] == manifest["splits"]["train"]["n_failed"] == 5
    assert "x" not in manifest["tag_counts"]


def test_resume_after_deleting_shards(corpus, reference, tmp_path):
    out = tmp_path / "out"
    write_shards(corpus, out, max_samples_per_shard=2, progress=False)
    names = load_manifest(out)["splits"]["train"]["shards"]
    assert len(names) >= 3
    (out / names[0]).unlink()  # tar gone, sidecar left
    (out / ".parts" / f"{names[1]}.json").unlink()  # sidecar gone (crash between the two)
    (out / names[2]).write_bytes(b"partial")  # a half-written temp file left behind
    (out / names[2]).rename(out / f".{names[2]}.tmp")
    (out / ".parts" / f"{names[2]}.json").unlink()
    (out / "manifest.json").unlink()
    report = write_shards(corpus, out, max_samples_per_shard=2, progress=False)
    assert report.n_skipped_shards == len(names) - 3
    assert (out / "manifest.json").read_bytes() == (reference / "manifest.json").read_bytes()
    for name in names:
        assert (out / name).read_bytes() == (reference / name).read_bytes()
    assert not list(out.glob(".*.tmp"))


def test_resume_after_crash(corpus, reference, tmp_path, monkeypatch):
    real = writer._write_shard
    calls = []

    def crash_after_two(task, on_item=None):
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append(task["name"])
        return real(task, on_item)

    out = tmp_path / "out"
    monkeypatch.setattr(writer, "_write_shard", crash_after_two)
    with pytest.raises(KeyboardInterrupt):
        write_shards(corpus, out, max_samples_per_shard=2, progress=False)
    assert not (out / "manifest.json").exists()
    monkeypatch.setattr(writer, "_write_shard", real)

    report = write_shards(corpus, out, max_samples_per_shard=2, progress=False)
    assert report.n_skipped_shards == 2
    assert (out / "manifest.json").read_bytes() == (reference / "manifest.json").read_bytes()
    assert report.n_written == len(corpus)

    again = write_shards(corpus, out, max_samples_per_shard=2, progress=False)
    assert again.n_skipped_shards == len(load_manifest(out)["splits"]["train"]["shards"])
    assert (out / "manifest.json").read_bytes() == (reference / "manifest.json").read_bytes()


def test_changed_inputs_raise(corpus, tmp_path):
    out = tmp_path / "out"
    write_shards(corpus[:4], out, max_samples_per_shard=2, progress=False)
    with pytest.raises(ValueError, match="fresh output directory"):  # different keys
        write_shards(corpus[1:5], out, max_samples_per_shard=2, progress=False)
    retagged = [AudioItem(corpus[0].path, tags=("metal",), metadata=corpus[0].metadata)]
    with pytest.raises(ValueError, match="different tags.*fresh output directory"):
        write_shards(retagged + corpus[1:4], out, max_samples_per_shard=2, progress=False)
    with pytest.raises(ValueError, match="sample_rate.*fresh output directory"):
        write_shards(corpus[:4], out, max_samples_per_shard=2, sample_rate=8000, progress=False)
    with pytest.raises(ValueError, match="not part of this job"):  # fewer shards than before
        write_shards(corpus[:2], out, max_samples_per_shard=2, progress=False)
    # the original job still resumes cleanly
    assert (
        write_shards(corpus[:4], out, max_samples_per_shard=2, progress=False).n_skipped_shards == 2
    )


def test_two_workers_match_one(corpus, reference, tmp_path):
    out = tmp_path / "out"
    report = write_shards(corpus, out, max_samples_per_shard=2, workers=2, progress=False)
    assert report.n_written == len(corpus)
    assert (out / "manifest.json").read_bytes() == (reference / "manifest.json").read_bytes()
    for name in load_manifest(out)["splits"]["train"]["shards"]:
        assert (out / name).read_bytes() == (reference / name).read_bytes()


def test_duplicate_keys_raise(tmp_path):
    a, b = tmp_path / "x" / "a.b.wav", tmp_path / "y" / "a_b.wav"
    for p in (a, b):
        p.parent.mkdir()
        sf.write(p, np.zeros(100, np.float32), SR)
    with pytest.raises(ValueError, match=f"{a}.*{b}.*'a_b'"):
        write_shards([AudioItem(a, track_id="a.b"), AudioItem(b)], tmp_path / "out", progress=False)
    with pytest.raises(ValueError, match=f"{a}.*{b}"):
        write_shards([AudioItem(a, track_id="t"), AudioItem(b, track_id="t")], tmp_path / "o")
    assert not (tmp_path / "out" / "manifest.json").exists()
    # the same track id in two splits is allowed
    write_shards(
        {"train": [AudioItem(a, track_id="t")], "test": [AudioItem(b, track_id="t")]},
        tmp_path / "ok",
        progress=False,
    )


def test_bad_arguments(tmp_path):
    with pytest.raises(TypeError, match="tags=\\('rock',\\)"):
        AudioItem("x.wav", tags="rock")
    assert AudioItem("dir/song.one.mp3", tags=["a", "b", "a"]).tags == ("a", "b")
    assert AudioItem("dir/song.one.mp3").track_id == "song.one"
    with pytest.raises(ValueError, match="invalid split name"):
        write_shards({"train/x": []}, tmp_path, progress=False)
    with pytest.raises(ValueError, match="JSON-serialisable"):
        write_shards([AudioItem("x.wav", metadata={"a": object()})], tmp_path, progress=False)


def test_decode_audio_seeks(tmp_path):
    x = np.random.default_rng(1).uniform(-0.9, 0.9, 20_000).astype(np.float32)
    buf = io.BytesIO()
    sf.write(buf, x, SR, format="FLAC", subtype="PCM_16")
    blob = buf.getvalue()
    full = decode_audio(blob)
    assert full.shape == (20_000,) and full.dtype == np.float32
    assert np.abs(full - x).max() <= 0.5 * LSB + 1e-7
    for start, frames in [(0, 100), (1234, 500), (4096, 4096), (19_990, 10), (7777, -1)]:
        part = decode_audio(blob, start, frames)
        stop = None if frames < 0 else start + frames
        np.testing.assert_array_equal(part, full[start:stop])
    assert decode_audio(blob, 19_990, 100).shape == (10,)  # past the end: what is there
    with pytest.raises(ValueError, match="outside the audio"):
        decode_audio(blob, 20_001)
    assert audio_info(blob) == (20_000, SR)


def test_decode_json():
    assert decode_json(b'{"a": [1, "\xc3\xa9"]}') == {"a": [1, "é"]}
    with pytest.raises(ValueError, match="JSON object"):
        decode_json(b"[1, 2]")


def test_load_manifest_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "manifest.json")):
        load_manifest(tmp_path)
    with pytest.raises(FileNotFoundError, match="nope.json"):
        shard_urls(tmp_path / "nope.json", "train")
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"format": "something-else", "version": 1}))
    with pytest.raises(ValueError, match=f"{other} is not a musictag shard manifest"):
        load_manifest(other)
    other.write_text("{not json")
    with pytest.raises(ValueError, match=f"{other} is not a musictag shard manifest"):
        load_manifest(other)
    other.write_text(json.dumps({"format": "musictag-shards", "version": 99, "splits": {}}))
    with pytest.raises(ValueError, match=f"{other} has shard format version 99"):
        load_manifest(other)
    with pytest.raises(ValueError, match="load_manifest"):
        shard_urls({"splits": {}}, "train")


def test_pcm16_format_holds_the_same_samples(corpus, reference, tmp_path):
    out = tmp_path / "pcm"
    write_shards(corpus, out, max_samples_per_shard=2, progress=False, audio_format="pcm16")
    manifest = load_manifest(out)
    assert manifest["audio_format"] == "pcm16"
    flac, pcm = _read_all(reference), _read_all(out)
    assert sorted(flac) == sorted(pcm)
    for key, sample in pcm.items():
        assert set(sample) == {"wav", "json", "checksums.json"}
        wav = sample["wav"]
        assert (
            wav[:4] == b"RIFF" and len(wav) == 44 + 2 * decode_json(sample["json"])["num_samples"]
        )
        ref = decode_audio(flac[key]["flac"])
        np.testing.assert_array_equal(decode_audio(wav), ref)  # bit-identical samples
        np.testing.assert_array_equal(sf.read(io.BytesIO(wav), dtype="float32")[0], ref)
        assert audio_info(wav) == audio_info(flac[key]["flac"])
        np.testing.assert_array_equal(decode_audio(wav, 100, 300), ref[100:400])
        assert sample["json"] == flac[key]["json"]
    # same counts, durations and tags in both manifests (the shards' bytes and hashes differ)
    for field in ("splits", "tag_counts", "n_failed"):
        a, b = manifest[field], load_manifest(reference)[field]
        if field == "splits":
            a, b = ({k: {**v, "shard_sha256": None} for k, v in x.items()} for x in (a, b))
        assert a == b
    with pytest.raises(ValueError, match="audio_format.*fresh output directory"):
        write_shards(corpus, out, max_samples_per_shard=2, progress=False)  # resumed as flac
    with pytest.raises(ValueError, match="audio_format must be one of"):
        write_shards(corpus, tmp_path / "x", audio_format="mp3", progress=False)


def test_read_shard_is_lazy_and_matches_tarfile(reference, tmp_path):
    url = shard_urls(reference, "train")[0]
    samples = list(read_shard(url))
    assert [s["__key__"] for s in samples] == list(_read_shard(url))  # tar order
    for s in samples:
        assert s["__url__"] == url and set(s) == {
            "__key__",
            "__url__",
            "flac",
            "json",
            "checksums.json",
        }
        assert s["flac"] == _read_shard(url)[s["__key__"]]["flac"]
    for s in read_shard(url, select=lambda name: name.endswith(".flac"), lazy=["flac"]):
        member = s["flac"]
        assert isinstance(member, TarMember) and "json" not in s
        whole = _read_shard(url)[s["__key__"]]["flac"]
        assert len(member) == len(whole) and member.read_all() == whole
        np.testing.assert_array_equal(decode_audio(member, 50, 200), decode_audio(whole, 50, 200))
        assert audio_info(member) == audio_info(whole)
    # pcm16 members are sliced without reading the rest of the track
    x = np.random.default_rng(0).uniform(-0.9, 0.9, 5000).astype(np.float32)
    sf.write(tmp_path / "t.wav", x, SR, subtype="PCM_16")
    write_shards([AudioItem(tmp_path / "t.wav")], tmp_path / "p", audio_format="pcm16")
    samples = read_shard(shard_urls(tmp_path / "p", "train")[0], lazy=["wav"])
    member = next(samples)["wav"]  # valid until the next sample is asked for
    member.file = counting = _CountingReader(member.file)
    crop = decode_audio(member, 1000, 100)
    np.testing.assert_array_equal(crop, decode_audio(member.read_all())[1000:1100])
    # the header block (<= 4 KiB) and 100 samples were read for the crop, not all 10 kB
    assert counting.n_read - len(member) <= 4096 + 200
    assert next(samples, None) is None  # the end closes the file
    assert member.file.f.closed


def test_read_shard_long_names_and_damage(corpus, tmp_path):
    long_id = "ü" + "x" * 150  # a pax header
    write_shards([AudioItem(corpus[0].path, track_id=long_id)], tmp_path / "a", progress=False)
    url = shard_urls(tmp_path / "a", "train")[0]
    (sample,) = read_shard(url)
    assert sample["__key__"] == "_" + "x" * 150 and set(sample) >= {"flac", "json"}
    # GNU long names and folders, written by tarfile
    gnu = tmp_path / "gnu.tar"
    with tarfile.open(gnu, "w", format=tarfile.GNU_FORMAT) as tar:
        tar.addfile(_dir_info("dir"))
        for name, data in [
            ("dir/" + "y" * 120 + ".json", b"{}"),
            ("dir/" + "y" * 120 + ".flac", b"ab"),
        ]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    (sample,) = read_shard(gnu)
    assert sample["__key__"] == "dir/" + "y" * 120
    assert (sample["json"], sample["flac"]) == (b"{}", b"ab")
    damaged = bytearray(Path(url).read_bytes())
    damaged[1030] ^= 0xFF  # inside the second member's header
    (tmp_path / "bad.tar").write_bytes(bytes(damaged))
    with pytest.raises(ValueError, match="bad.tar is damaged"):
        list(read_shard(tmp_path / "bad.tar"))


class _CountingReader:
    """A file wrapper that counts the bytes read through it."""

    def __init__(self, f):
        self.f, self.n_read = f, 0

    def seek(self, *args):
        return self.f.seek(*args)

    def read(self, n=-1):
        data = self.f.read(n)
        self.n_read += len(data)
        return data


def _dir_info(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    return info


def test_load_manifest_rejects_unknown_audio_format(reference, tmp_path):
    manifest = json.loads((reference / "manifest.json").read_text())
    manifest["audio_format"] = "opus"
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="stores audio as 'opus'.*Upgrade musictag"):
        load_manifest(tmp_path)
