"""Checksums, `musictag verify`, and reading damaged shards: random byte flips over a shard set
are all named by `verify`, and training and evaluation finish, skipping (and naming) them."""

from __future__ import annotations

import json
import logging
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import soundfile as sf
import torch
import xxhash

from musictag import CRNNTagger, TagDataModule
from musictag.cli import main as musictag
from musictag.data.datamodule import _read_samples
from musictag.data.integrity import verify_shards
from musictag.data.shards import (
    COMPLETE,
    AudioItem,
    DamagedSampleError,
    audio_member,
    check_sample,
    checksum_record,
    decode_audio,
    load_manifest,
    member_checksum,
    read_shard,
    shard_urls,
    write_shards,
)
from musictag.inference import iter_shard_tracks

SR = 8000
TAGS = ("rock", "pop", "jazz", "rap")
N = {"train": 24, "test": 12}


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> Path:
    """36 tracks of 0.6 s (train 24, test 12) in FLAC shards of 4."""
    tmp = tmp_path_factory.mktemp("integrity")
    rng = np.random.default_rng(0)
    splits = {}
    for split, n in N.items():
        items = []
        for i in range(n):
            path = tmp / "wav" / f"{split}{i:02d}.wav"
            path.parent.mkdir(exist_ok=True)
            sf.write(path, rng.uniform(-0.5, 0.5, int(0.6 * SR)), SR, subtype="PCM_16")
            items.append(AudioItem(path, tags=(TAGS[i % 4], TAGS[(i + 1) % 4])))
        splits[split] = items
    out = tmp / "shards"
    write_shards(splits, out, sample_rate=SR, max_samples_per_shard=4, progress=False)
    return out


def member_spans(tar_path: Path) -> list[tuple[int, int, str]]:
    """``(first byte, end, key)`` of every member: header and data (not the padding)."""
    with tarfile.open(tar_path) as tar:
        return [
            (m.offset, m.offset_data + m.size, m.name.split(".", 1)[0]) for m in tar.getmembers()
        ]


def flip_bytes(root: Path, rng: np.random.Generator) -> set[tuple[str, str]]:
    """Flip ~300 bytes in clusters over the shard set; return the ``(shard, key)`` hit."""
    shards = sorted(root.glob("*.tar"))
    damaged = set()
    for _ in range(8):
        shard = shards[int(rng.integers(len(shards)))]
        data = bytearray(shard.read_bytes())
        centre = int(rng.integers(len(data)))
        positions = np.clip(centre + rng.integers(-1500, 1500, 40), 0, len(data) - 1)
        for p in positions:
            data[p] ^= int(rng.integers(1, 256))
        shard.write_bytes(bytes(data))
        for first, end, key in member_spans_cache[shard.name]:
            if any(first <= p < end for p in positions):
                damaged.add((shard.name, key))
    return damaged


member_spans_cache: dict[str, list[tuple[int, int, str]]] = {}


@pytest.fixture(scope="module")
def damaged(clean, tmp_path_factory) -> tuple[Path, set[tuple[str, str]]]:
    root = tmp_path_factory.mktemp("damaged") / "shards"
    shutil.copytree(clean, root)
    for tar in root.glob("*.tar"):
        member_spans_cache[tar.name] = member_spans(tar)
    hit = flip_bytes(root, np.random.default_rng(12))
    assert 3 <= len(hit) < 20  # some tracks damaged, most intact
    return root, hit


def test_every_member_has_a_checksum_and_every_shard_a_hash(clean):
    manifest = load_manifest(clean)
    assert manifest["checksums"] == {
        "shard": "sha256",
        "member": "xxh3_64",
        "member_block": 65536,
        "member_ext": "checksums.json",
    }
    import hashlib

    for split in manifest["splits"].values():
        for name, digest in zip(split["shards"], split["shard_sha256"], strict=True):
            assert hashlib.sha256((clean / name).read_bytes()).hexdigest() == digest
    sample = next(read_shard(shard_urls(clean, "train")[0]))
    record = json.loads(sample["checksums.json"])
    assert record["version"] == 2 and record["hash"] == "xxh3_64"
    assert record["blocks"] == {
        "flac": xxhash.xxh3_64_hexdigest(sample["flac"]),  # one block: 0.6 s of FLAC
        "json": xxhash.xxh3_64_hexdigest(sample["json"]),
    }
    assert sample["checksums.json"] == checksum_record(
        {"flac": sample["flac"], "json": sample["json"]}
    )
    assert check_sample(sample, required=True)
    changed = dict(sample, flac=sample["flac"][:-1] + bytes([sample["flac"][-1] ^ 1]))
    with pytest.raises(DamagedSampleError, match="checksum mismatch in its .flac member"):
        check_sample(changed)
    no_record = {k: v for k, v in sample.items() if k != "checksums.json"}
    assert check_sample(no_record) is False  # a shard written before checksums: unverified
    with pytest.raises(DamagedSampleError, match="checksum record is missing"):
        check_sample(no_record, required=True)


def test_version_1_records_still_verify(clean):
    """Shards written before blocks carry one CRC-32 per whole member: still checked."""
    sample = next(read_shard(shard_urls(clean, "train")[0]))
    sums = {"flac": member_checksum(sample["flac"]), "json": member_checksum(sample["json"])}
    old = dict(sample, **{"checksums.json": json.dumps({"crc32": sums}).encode()})
    done: set[int] = set()
    assert check_sample(old, required=True, done=done) and done == {COMPLETE}
    changed = dict(old, flac=sample["flac"][:-1] + bytes([sample["flac"][-1] ^ 1]))
    with pytest.raises(DamagedSampleError, match="checksum mismatch in its .flac member"):
        check_sample(changed)
    assert check_sample(changed, done=done)  # already checked whole by this reader


def test_a_crop_checks_only_the_blocks_it_reads(tmp_path):
    """pcm16, 4 s at 16 kHz: 2 blocks of 64 KiB; damage in the second is met when read."""
    wav = tmp_path / "long.wav"
    sf.write(wav, np.random.default_rng(0).uniform(-0.5, 0.5, 4 * 16000), 16000, "PCM_16")
    out = tmp_path / "shards"
    write_shards([AudioItem(wav, tags=("rock",))], out, audio_format="pcm16", progress=False)
    (url,) = shard_urls(out, "train")
    member = next(read_shard(url))["wav"]
    data = bytearray(Path(url).read_bytes())
    data[data.index(member) + 100_000] ^= 0xFF  # in the second block
    Path(url).write_bytes(bytes(data))
    samples = read_shard(url, lazy=["wav"])  # the members are valid while it is open
    sample = next(samples)
    done: set[int] = set()
    assert check_sample(sample, required=True, done=done) and done == set()
    crop = decode_audio(sample["wav"], 0, 16000)  # bytes 44 .. 32044: block 0 only
    assert crop.shape == (16000,) and done == {0}  # (COMPLETE once block 1 is checked too)
    with pytest.raises(DamagedSampleError, match=r"\.wav member \(bytes 65536-"):
        decode_audio(sample["wav"], 3 * 16000, 16000)
    report = verify_shards(out)
    assert report.damaged_keys == {(Path(url).name, "long")}  # and the shard's sha256


@pytest.mark.parametrize("ledger", ["shared", "per process"])
def test_a_partly_checked_track_is_not_taken_for_checked(tmp_path, ledger):
    """The data module's stream checks each block once and skips tracks all of whose blocks it
    has checked. A track read only in part is not such a track: damage that reaches one of its
    blocks no crop has read yet is caught when a crop reads that block.

    pcm16, 6 s at 16 kHz: 3 blocks of 64 KiB. The shared ledger is the one for a manifest's
    shards (in shared memory); the per-process one is for shards named by a pattern.
    """
    wav = tmp_path / "six.wav"
    sf.write(wav, np.random.default_rng(0).uniform(-0.5, 0.5, 6 * 16000), 16000, "PCM_16")
    out = tmp_path / "shards"
    write_shards([AudioItem(wav, tags=("rock",))], out, audio_format="pcm16", progress=False)
    (url,) = shard_urls(out, "train")
    if ledger == "shared":
        dm = TagDataModule(root=str(out), crop_samples=16000)
    else:
        dm = TagDataModule(train=url, tags=["rock"], sample_rate=16000, crop_samples=16000)
    stream = dm._stream("train")

    def crops(*starts: int) -> None:
        """One pass of the stream over the shard, decoding crops of 16000 samples at starts."""
        samples = _read_samples(iter([{"url": url}]))  # its members are valid while it is open
        sample = next(samples)
        stream.ledger.check(sample, required=url in stream.checksummed)
        for start in starts:
            decode_audio(audio_member(sample), start, 16000)

    def checked_blocks() -> int:
        """Blocks the stream holds as checked, COMPLETE counted as one more."""
        if ledger == "shared":
            return sum(bin(w).count("1") for w in stream.ledger.blocks)
        return len(stream.ledger.verified[(url, "six")])

    crops(0, 70000)  # bytes 44-32044 and 140044-172044: blocks 0 and 2, not block 1
    assert checked_blocks() == 2  # and not COMPLETE: it would count as a third bit
    with open(url, "r+b") as f:  # now damage block 1, which no crop has read
        data = f.read()
        at = data.index(b"data", data.index(b"WAVE")) + 8 + 100_000  # member byte ~100044
        f.seek(at)
        f.write(bytes([data[at] ^ 0xFF]))
    crops(0, 70000)  # the checked blocks are read unchecked: no error
    with pytest.raises(DamagedSampleError, match=r"\.wav member \(bytes 65536-131072\)"):
        crops(40000)  # bytes 80044-112044: block 1
    assert checked_blocks() == 2


def test_verify_passes_a_clean_copy_and_names_every_damaged_track(clean, damaged, capsys):
    root, hit = damaged
    assert musictag(["verify", str(clean)]) == 0
    assert capsys.readouterr().out == ""

    report = verify_shards(root)
    assert not report.ok
    assert report.damaged_keys == hit  # every damaged track, and no other
    assert musictag(["verify", str(root)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(report.problems)
    for shard, key in hit:
        assert any(f"{shard}: {key}: " in line for line in lines), (shard, key)
    assert all(line.startswith(f"{root}/") for line in lines)


def test_verify_reports_missing_shards_and_count_mismatches(clean, tmp_path, capsys):
    root = tmp_path / "shards"
    shutil.copytree(clean, root)
    (root / "test-000001.tar").unlink()
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["splits"]["train"]["shard_samples"][0] = 5
    (root / "manifest.json").write_text(json.dumps(manifest))
    problems = [str(p) for p in verify_shards(root).problems]
    assert "test-000001.tar: missing shard (listed in the manifest, not on disk)" in problems
    assert "train-000000.tar: count mismatch: 4 samples read, the manifest lists 5" in problems
    assert musictag(["verify", str(root)]) == 1


def test_shards_without_checksums_are_read_unverified(clean, tmp_path, caplog):
    """A shard set written before checksums: readable, and said to be unverified."""
    root = tmp_path / "old"
    root.mkdir()
    manifest = json.loads((clean / "manifest.json").read_text())
    for split in manifest["splits"].values():
        for name in split["shards"]:
            with tarfile.open(clean / name) as src, tarfile.open(root / name, "w") as dst:
                for m in src.getmembers():
                    if not m.name.endswith(".checksums.json"):
                        dst.addfile(m, src.extractfile(m))
        del split["shard_sha256"]
    del manifest["checksums"]
    (root / "manifest.json").write_text(json.dumps(manifest))
    report = verify_shards(root)
    assert report.ok and len(report.unverified_shards) == report.n_shards == 9
    with caplog.at_level(logging.WARNING):
        dm = TagDataModule(root=str(root), crop_samples=4000, batch_size=4, eval_crops=2)
        keys = [k for batch in dm.test_dataloader() for k in batch["key"]]
    assert len(keys) == N["test"]
    assert "9 of 9 shards carry no checksums" not in caplog.text  # test reads 3 of them
    assert "3 of 3 shards carry no checksums" in caplog.text


def small_crnn(n_tags: int) -> CRNNTagger:
    return CRNNTagger(
        n_tags=n_tags,
        sample_rate=SR,
        crop_samples=4000,
        n_mels=16,
        frontend_kwargs={"f_max": None},
        channels=[4, 4, 4, 4],
        pools=[[2, 2], [2, 2], [2, 2], [2, 2]],
        gru_hidden=8,
        eval_crops=2,
    )


@pytest.mark.parametrize("workers", [0, 2])
def test_training_and_evaluation_finish_on_damaged_shards(damaged, workers, tmp_path, caplog):
    root, hit = damaged
    hit_keys = {key for _, key in hit}
    dm = TagDataModule(
        root=str(root), crop_samples=4000, eval_crops=2, batch_size=4, num_workers=workers
    )
    model = small_crnn(dm.n_tags)
    trainer = pl.Trainer(
        max_epochs=2,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
    )
    with caplog.at_level(logging.WARNING, logger="musictag"):
        trainer.fit(model, datamodule=dm)
        trainer.test(model, datamodule=dm, verbose=False)
    assert trainer.current_epoch == 2
    train, test = dm.read_report("train"), dm.read_report("test")
    train_hit = {k for k in hit_keys if k.startswith("train")}
    test_hit = {k for k in hit_keys if k.startswith("test")}
    # a track all of whose tar headers were hit is only missing (shard_damage says where)
    assert {s.key for s in train.skipped} <= train_hit
    assert train.n_tracks == N["train"] - len(train_hit)
    # evaluation: every intact track scored exactly once, the damaged ones reported as not scored
    assert {s.key for s in test.skipped} <= test_hit
    assert test.n_tracks == N["test"] - len(test_hit) and test.n_expected == N["test"]
    assert test.n_not_scored == len(test_hit)
    assert model.test_results["test/tracks_scored"] == test.n_tracks
    assert np.isfinite(model.test_results["test/pr_auc_macro"])
    # each damaged track named once in the log, with its shard, although read in two epochs
    for skipped in train.skipped + test.skipped:
        lines = [r.getMessage() for r in caplog.records if f"track {skipped.key} of" in r.message]
        assert len(lines) == 1 and skipped.shard in lines[0], skipped


def test_shard_tracks_for_embed_and_analysis_skip_damage(damaged, caplog):
    root, hit = damaged
    skipped: list = []
    with caplog.at_level(logging.WARNING):
        keys = [info["key"] for info, _, _ in iter_shard_tracks(root, skipped=skipped)]
    assert len(keys) == sum(N.values()) - len(hit)
    assert not {k for _, k in hit} & set(keys)
    named = {(Path(str(e).split(": track ")[0]).name, str(e).split(": track ")[1].split(":")[0])
             for e in skipped if ": track " in str(e)}  # fmt: skip
    assert named and named <= hit  # (a track whose every header was hit is only missing)
    for shard, key in named:
        assert f"{shard}: track {key}:" in caplog.text
    errors = [
        w for _, w, _ in iter_shard_tracks(root, with_errors=True) if isinstance(w, Exception)
    ]
    assert len(errors) == len(skipped)
    assert all(torch.is_tensor(torch.from_numpy(w)) for _, w, _ in iter_shard_tracks(root))
