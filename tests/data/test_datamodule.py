"""Tests for musictag.data.datamodule: crops, splitting across workers/ranks, vocab wiring."""

from __future__ import annotations

import tarfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import soundfile as sf
import torch

from musictag.data.datamodule import TagDataModule
from musictag.data.shards import (
    AudioItem,
    decode_audio,
    decode_json,
    load_manifest,
    shard_urls,
    write_shards,
)
from musictag.tta import eval_crop_starts

SR = 8000
CROP = 4000
K = 4

# (length in samples, tags); some tracks are shorter than a crop, one is untagged
TRACKS = {
    "train": [
        (2400, ["rock", "pop"]),
        (12000, ["rock"]),
        (5000, ["rap", "hip-hop"]),
        (4000, ["rap"]),
        (9000, ["jazz"]),
        (3999, ["rock", "jazz"]),
        (7000, ["hip-hop"]),
        (11000, []),
        (6000, ["pop"]),
        (8000, ["rock"]),
        (4001, ["electronic"]),
        (10000, ["pop", "electronic"]),
        (3000, ["rock"]),
        (4500, ["ambient"]),
    ],
    "val": [
        (12000, ["rock"]),
        (3000, ["rap"]),
        (8000, ["pop", "jazz"]),
        (4000, []),
        (6500, ["electronic", "rock"]),
    ],
    "test": [(2400, ["hip-hop"]), (10000, ["pop"]), (7000, ["rock", "rap"])],
}
MERGE = {"rap": "hip-hop"}
# train counts after merging rap -> hip-hop (track 2 carries both and is counted twice)
MERGED_ORDER = ["rock", "hip-hop", "pop", "electronic", "jazz", "ambient"]


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    """4 train shards (4+4+4+2 tracks), 2 val shards (4+1), 1 test shard (3), at 8 kHz."""
    tmp = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    splits = {}
    for split, tracks in TRACKS.items():
        items = []
        for i, (n, tags) in enumerate(tracks):
            path = tmp / "wav" / f"{split}{i:02d}.wav"
            path.parent.mkdir(exist_ok=True)
            sf.write(path, rng.uniform(-0.5, 0.5, n), SR, subtype="PCM_16")
            items.append(AudioItem(path, tags=tuple(tags)))
        splits[split] = items
    out = tmp / "shards"
    write_shards(splits, out, sample_rate=SR, max_samples_per_shard=4, progress=False)
    return out


def reference(root: Path, split: str) -> dict[str, tuple[np.ndarray, list[str]]]:
    """key -> (whole decoded track, tags), read straight from the tars."""
    out = {}
    for url in shard_urls(root, split):
        with tarfile.open(url) as tar:
            members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
        for name, data in members.items():
            if name.endswith(".json") and not name.endswith(".checksums.json"):
                meta = decode_json(data)
                flac = members[name[: -len(".json")] + ".flac"]
                out[meta["key"]] = (decode_audio(flac), meta["tags"])
    return out


def make_dm(root: Path, **kw) -> TagDataModule:
    kw = {"crop_samples": CROP, "eval_crops": K, "merge": MERGE, **kw}
    return TagDataModule(root=str(root), **kw)


def collect(loader) -> list[dict]:
    """Flatten batches into per-track dicts."""
    out = []
    for batch in loader:
        for i, key in enumerate(batch["key"]):
            out.append({"key": key, "audio": batch["audio"][i], "target": batch["target"][i]})
    return out


def test_eval_crop_starts():
    assert eval_crop_starts(100, 10, 4) == [0, 22, 44, 66]
    assert eval_crop_starts(12000, 4000, 4) == [0, 2000, 4000, 6000]
    assert eval_crop_starts(5, 10, 3) == [0, 0, 0]
    assert eval_crop_starts(13, 10, 4) == [0, 0, 0, 0]
    assert eval_crop_starts(10, 10, 1) == [0]
    with pytest.raises(ValueError):
        eval_crop_starts(100, 10, 0)


def test_vocab_and_metadata_from_manifest(shards):
    dm = make_dm(shards)
    assert dm.sample_rate == SR
    assert dm.tags == MERGED_ORDER and dm.n_tags == 6
    assert make_dm(shards, top_k=2, merge=None).tags == ["rock", "pop"]
    assert make_dm(shards, tags=["pop", "rap"], merge=None).tags == ["pop", "rap"]
    assert dm.eval_batch_size == 4  # batch_size 16 // eval_crops 4
    assert make_dm(shards, batch_size=2).eval_batch_size == 1


def test_pos_weight(shards):
    w = make_dm(shards).pos_weight()
    n = 14  # rock 5, hip-hop 2+2 (double count), pop 3, electronic 2, jazz 2, ambient 1
    expected = torch.tensor([(n - c) / c for c in (5, 4, 3, 2, 2, 1)], dtype=torch.float32)
    torch.testing.assert_close(w, expected)


@pytest.mark.parametrize("num_workers", [0, 2])
@pytest.mark.parametrize("split", ["val", "test"])
def test_eval_stream_is_exact(shards, split, num_workers):
    # test has 1 shard for 2 workers: one worker gets nothing, nothing may be duplicated
    dm = make_dm(shards, num_workers=num_workers, eval_batch_size=2)
    loader = dm.val_dataloader() if split == "val" else dm.test_dataloader()
    ref = reference(shards, split)
    for epoch in range(2):
        items = collect(loader)
        keys = [it["key"] for it in items]
        assert sorted(keys) == sorted(ref) and len(keys) == len(TRACKS[split]), epoch
    for it in items:
        full, tags = ref[it["key"]]
        assert it["audio"].shape == (K, CROP) and it["audio"].dtype == torch.float32
        np.testing.assert_array_equal(it["target"].numpy(), dm.vocab.encode(tags))
        starts = eval_crop_starts(len(full), CROP, K)
        for crop, start in zip(it["audio"].numpy(), starts, strict=True):
            seg = full[start : start + CROP]
            np.testing.assert_array_equal(crop[: len(seg)], seg)
            np.testing.assert_array_equal(crop[len(seg) :], 0.0)  # short tracks: zero padding
        if len(full) < CROP:
            assert np.all(it["audio"].numpy()[:, len(full) :] == 0)


def test_eval_batch_shapes(shards):
    dm = make_dm(shards, eval_batch_size=3)
    batch = next(iter(dm.val_dataloader()))
    assert batch["audio"].shape == (3, K, CROP)
    assert batch["target"].shape == (3, 6) and batch["target"].dtype == torch.float32
    assert isinstance(batch["key"], list) and all(isinstance(k, str) for k in batch["key"])


def crop_start(full: np.ndarray, crop: np.ndarray) -> int:
    """Where ``crop`` sits in ``full`` (zero-padded past the end); fails if nowhere."""
    for s in np.flatnonzero(full[: max(1, len(full) - CROP + 1)] == crop[0]):
        seg = full[s : s + CROP]
        if np.array_equal(crop[: len(seg)], seg) and not crop[len(seg) :].any():
            return s
    raise AssertionError("crop is not a slice of its track")


@pytest.mark.parametrize("num_workers", [0, 2])
def test_train_stream(shards, num_workers):
    dm = make_dm(shards, batch_size=4, num_workers=num_workers, shuffle_buffer=5)
    ref = reference(shards, "train")
    loader = dm.train_dataloader()
    epochs = [collect(loader) for _ in range(2)]
    for items in epochs:  # every track exactly once per epoch
        assert sorted(it["key"] for it in items) == sorted(ref)
    batch = next(iter(dm.train_dataloader()))
    assert batch["audio"].shape == (4, CROP) and batch["audio"].dtype == torch.float32
    assert batch["target"].shape == (4, 6) and batch["target"].dtype == torch.float32
    starts = {}
    for e, items in enumerate(epochs):
        for it in items:
            full, tags = ref[it["key"]]
            starts[e, it["key"]] = crop_start(full, it["audio"].numpy())
            np.testing.assert_array_equal(it["target"].numpy(), dm.vocab.encode(tags))
    # order and crop positions change across epochs ...
    assert [it["key"] for it in epochs[0]] != [it["key"] for it in epochs[1]]
    long = [k for k, (full, _) in ref.items() if len(full) > CROP + 100]
    assert any(starts[0, k] != starts[1, k] for k in long)
    # ... but are reproducible with the same seed, and differ with another
    same = make_dm(shards, batch_size=4, num_workers=num_workers, shuffle_buffer=5)
    again = collect(same.train_dataloader())
    assert [it["key"] for it in again] == [it["key"] for it in epochs[0]]
    for a, b in zip(again, epochs[0], strict=True):
        assert torch.equal(a["audio"], b["audio"])
    other = make_dm(shards, batch_size=4, num_workers=num_workers, shuffle_buffer=5, seed=1)
    assert [it["key"] for it in collect(other.train_dataloader())] != [
        it["key"] for it in epochs[0]
    ]


def test_train_epochs_with_persistent_workers(shards):
    dm = make_dm(shards, batch_size=3, num_workers=2, persistent_workers=True)
    loader = dm.train_dataloader()
    epochs = []
    for _ in range(2):
        epochs.append([it["key"] for it in collect(loader)])
    del loader  # shut the workers down now, not at some later garbage collection
    expected = sorted(reference(shards, "train"))
    assert sorted(epochs[0]) == expected and sorted(epochs[1]) == expected
    assert epochs[0] != epochs[1]


def test_drop_untagged(shards):
    dm = make_dm(shards, drop_untagged=True)
    assert len(collect(dm.val_dataloader())) == 4
    assert len(collect(dm.train_dataloader())) == 13
    assert all(it["target"].sum() > 0 for it in collect(dm.val_dataloader()))


def test_ranks_split_shards(shards, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    seen, n_batches = [], []
    for rank in (0, 1):
        monkeypatch.setenv("RANK", str(rank))
        dm = make_dm(shards, batch_size=2, num_workers=2, shuffle_buffer=4)
        seen.append([it["key"] for it in collect(dm.val_dataloader())])
        train = dm.train_dataloader()
        assert len(train) == 14 // (2 * 2)
        n_batches.append(sum(1 for _ in train))
    assert not set(seen[0]) & set(seen[1])  # val shards split between ranks ...
    assert sorted(seen[0] + seen[1]) == sorted(reference(shards, "val"))  # ... losing nothing
    assert n_batches == [3, 3]  # training: every rank runs the same number of steps


def test_patterns_brace_glob_and_relative(shards):
    names = [Path(u).name for u in shard_urls(shards, "train")]
    assert names == [f"train-{i:06d}.tar" for i in range(4)]
    common = {"tags": ["rock", "pop"], "sample_rate": SR, "crop_samples": CROP, "eval_crops": K}
    dm = TagDataModule(train=f"{shards}/train-{{000000..000002}}.tar", **common)
    assert len(collect(dm.train_dataloader())) == 12
    dm = TagDataModule(
        train=str(shards / "train-*.tar"), val=[str(shards / "val-000001.tar")], **common
    )
    assert len(collect(dm.train_dataloader())) == 14
    assert len(collect(dm.val_dataloader())) == 1
    # with a root, relative patterns are relative to it, and override the manifest's splits
    dm = make_dm(shards, test="val-{000000..000001}.tar")
    assert sorted(it["key"] for it in collect(dm.test_dataloader())) == sorted(
        reference(shards, "val")
    )
    with pytest.raises(FileNotFoundError, match=r"6 shard\(s\).*train-000004"):
        TagDataModule(train=f"{shards}/train-{{000000..000009}}.tar", **common)
    with pytest.raises(FileNotFoundError, match="no shard matches"):
        TagDataModule(train=str(shards / "nope-*.tar"), **common)


def test_urls_are_passed_through(shards):
    url = f"pipe:cat {shards}/test-000000.tar"
    dm = TagDataModule(test=url, tags=["pop"], sample_rate=SR, crop_samples=CROP, eval_crops=K)
    assert len(collect(dm.test_dataloader())) == 3


def test_configuration_errors(shards):
    with pytest.raises(ValueError, match="sample_rate=16000 disagrees.*8000"):
        make_dm(shards, sample_rate=16000)
    assert make_dm(shards, sample_rate=SR).sample_rate == SR
    train = str(shards / "train-*.tar")
    with pytest.raises(ValueError, match="tags="):
        TagDataModule(train=train, sample_rate=SR)
    with pytest.raises(ValueError, match="sample_rate"):
        TagDataModule(train=train, tags=["rock"])
    with pytest.raises(ValueError, match="top_k"):
        make_dm(shards, tags=["rock"], top_k=3)
    with pytest.raises(ValueError, match="'rokc'.*'rock'"):
        make_dm(shards, include=["rokc"])
    with pytest.raises(ValueError, match="pos_weight"):
        TagDataModule(train=train, tags=["rock"], sample_rate=SR).pos_weight()
    # no val split: validation is skipped ([]), a missing test split is an error
    dm = TagDataModule(train=train, tags=["rock"], sample_rate=SR)
    assert dm.val_dataloader() == []
    with pytest.raises(ValueError, match="no test shards"):
        dm.test_dataloader()


def test_sample_rate_of_the_audio_is_checked(shards):
    dm = TagDataModule(test=str(shards / "test-000000.tar"), tags=["pop"], sample_rate=16000)
    with pytest.raises(ValueError, match="8000 Hz"):
        collect(dm.test_dataloader())


def test_manifest_counts(shards):
    manifest = load_manifest(shards)
    counts = Counter(t for _, tags in TRACKS["train"] for t in tags)
    assert manifest["splits"]["train"]["tag_counts"] == dict(counts)


class _Recorder(pl.LightningModule):
    """Records which keys each stage sees."""

    def __init__(self, n_tags: int, sample_rate: int = 16000, crop_samples: int = 1) -> None:
        super().__init__()
        self.save_hyperparameters()  # keys shared with the data module, other values
        self.head = torch.nn.Linear(1, n_tags)
        self.train_keys: dict[int, list[str]] = {}
        self.val_keys: list[list[str]] = []

    def training_step(self, batch, batch_idx):
        self.train_keys.setdefault(self.current_epoch, []).extend(batch["key"])
        logits = self.head(batch["audio"].mean(dim=1, keepdim=True))
        return torch.nn.functional.binary_cross_entropy_with_logits(logits, batch["target"])

    def on_validation_epoch_start(self):
        self.val_keys.append([])

    def validation_step(self, batch, batch_idx):
        assert batch["audio"].shape[1:] == (K, CROP)
        self.val_keys[-1].extend(batch["key"])

    def predict_step(self, batch, batch_idx):
        return batch["key"]

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def test_with_a_lightning_trainer(shards, tmp_path):
    dm = make_dm(shards, batch_size=4, num_workers=2)
    model = _Recorder(dm.n_tags)
    trainer = pl.Trainer(
        max_epochs=2,
        accelerator="cpu",
        logger=pl.loggers.CSVLogger(tmp_path),
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(model, datamodule=dm)
    train_ref, val_ref = sorted(reference(shards, "train")), sorted(reference(shards, "val"))
    assert sorted(model.train_keys[0]) == train_ref and sorted(model.train_keys[1]) == train_ref
    assert model.train_keys[0] != model.train_keys[1]  # the epoch reaches the workers
    assert [sorted(keys) for keys in model.val_keys] == [val_ref, val_ref]
    predicted = trainer.predict(model, datamodule=dm)
    assert sorted(k for keys in predicted for k in keys) == sorted(reference(shards, "test"))


def test_pcm16_shards_give_the_same_batches(shards, tmp_path):
    # the same WAV inputs as the `shards` fixture, stored as raw 16-bit PCM
    splits = {
        split: [
            AudioItem(shards.parent / "wav" / f"{split}{i:02d}.wav", tags=tuple(tags))
            for i, (_, tags) in enumerate(tracks)
        ]
        for split, tracks in TRACKS.items()
    }
    pcm = tmp_path / "pcm"
    write_shards(
        splits, pcm, sample_rate=SR, max_samples_per_shard=4, progress=False, audio_format="pcm16"
    )
    assert load_manifest(pcm)["audio_format"] == "pcm16"
    for stage in ("train", "val"):
        batches = []
        for root in (shards, pcm):
            dm = make_dm(root, batch_size=4, shuffle_buffer=5)
            loader = dm.train_dataloader() if stage == "train" else dm.val_dataloader()
            batches.append(list(loader))
        assert len(batches[0]) == len(batches[1]) > 1
        for a, b in zip(*batches, strict=True):
            assert a["key"] == b["key"]
            assert torch.equal(a["audio"], b["audio"]) and torch.equal(a["target"], b["target"])
