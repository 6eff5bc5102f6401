"""``musictag train``: the budget is kept, the checkpoint works everywhere, the transfer-feature cache
is reused and invalidated."""

from __future__ import annotations

import json
import logging
import os
import sys
import time

import numpy as np
import pytest
import soundfile as sf
import torch

from musictag import Tagger, load_tagger
from musictag.checkpoints import save_tagger
from musictag.cli import main
from musictag.training import TrainConfig, train_tagger
from musictag.training.augment import Augment, mask_bands, mixup
from musictag.training.data import manifest_hash
from musictag.training.scratch import ScratchConfig
from tests.recipes.miniature import SR, one_torch_thread, write_miniature  # noqa: F401
from tests.recipes.test_recipes import QUIET, load_recipe, tiny_crnn

# one model trained until the deadline (no epoch cap): the budget is what ends it
TINY = ScratchConfig(channels=(4, 8), n_mels=16, eval_every=0.5, max_epochs=None, members=1)


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("train")
    return write_miniature(
        tmp / "shards", 4, n_tracks={"train": 12, "val": 6, "test": 4}, seconds=2.0
    )


def test_scratch_training_keeps_the_budget_and_its_checkpoint_works(shards, tmp_path, monkeypatch):
    cfg = TrainConfig(shards, tmp_path / "scratch.ckpt", max_minutes=0.1, scratch=TINY)
    result = train_tagger(cfg)
    assert 0.9 * 6 <= result.seconds <= 1.1 * 6
    assert 0.0 <= result.val_pr_auc <= 1.0 and result.n_train == 12 and result.n_val == 6
    model = load_tagger(result.checkpoint)
    assert model.tags == result.model.tags and len(model.tags) == 4
    assert model.crop_samples == 2 * SR  # crops as long as the clips
    wav = tmp_path / "a.wav"
    sf.write(wav, np.random.default_rng(0).uniform(-0.3, 0.3, 3 * SR), SR)
    with torch.no_grad():
        x = torch.from_numpy(sf.read(wav, dtype="float32")[0][: 2 * SR])[None]
        assert torch.allclose(model.predict_proba(x), result.model.predict_proba(x), atol=1e-6)
    assert main(["predict", str(result.checkpoint), str(wav), "--format", "json"]) == 0
    assert main(["embed", str(result.checkpoint), str(shards), "-o", str(tmp_path / "e")]) == 0
    assert np.load(tmp_path / "e" / "embeddings.npy").shape == (22, model.backbone.embed_dim)
    # a recipe fine-tunes it further (new head for the recipe's data, one step)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["finetune.py"])
    args = ["--data.root", str(shards), "--trainer.fast_dev_run", "true"]
    args += ["--model.checkpoint", str(result.checkpoint), "--data.crop_samples", "4000"]
    cli = load_recipe("finetune").main([*args, *QUIET])
    assert cli.trainer.state.finished and cli.trainer.global_step == 1
    assert type(cli.model) is Tagger and cli.model.hparams.backbone == "compact_cnn"


def _pretrained(tmp_path, seed: int) -> list[str]:
    torch.manual_seed(0)
    b = tiny_crnn(5)  # a preset: its backbone arguments are its own hyperparameters
    torch.manual_seed(seed)
    a = Tagger(
        backbone="crnn",
        n_tags=3,
        sample_rate=SR,
        crop_samples=4000,
        frontend_kwargs={"n_mels": 16, "f_max": None},
        backbone_kwargs={"channels": [4, 4, 4, 4], "pools": [[2, 2]] * 4, "gru_hidden": 4},
    )
    return [str(save_tagger(a, tmp_path / "a.ckpt")), str(save_tagger(b, tmp_path / "b.ckpt"))]


def test_transfer_caches_features_and_invalidates_them(shards, tmp_path, caplog):
    ckpts = _pretrained(tmp_path, 0)
    cache = tmp_path / "cache"
    cfg = TrainConfig(
        shards,
        tmp_path / "t.ckpt",
        0.5,
        pretrained=ckpts,
        cache_dir=cache,
        ensemble=None,  # the probe alone: deterministic, so a rerun must give the same figure
        finetune=None,
    )
    first = train_tagger(cfg)
    assert len(list(cache.glob("*.npz"))) == 4  # train and val features of each checkpoint
    assert "multi-layer features" in first.summary and first.seconds < 30
    model = load_tagger(first.checkpoint)
    assert model.hparams.backbone == "transfer" and len(model.backbone.members) == 2
    x = torch.randn(2, model.crop_samples) * 0.1
    with torch.no_grad():
        assert torch.allclose(model(x), first.model(x), atol=1e-5)
        assert model.embed(x, "all").shape[0] == 2
    with caplog.at_level(logging.INFO, logger="musictag.training.transfer"):
        again = train_tagger(cfg)
    assert caplog.text.count("from the cache") == 4 and len(list(cache.glob("*.npz"))) == 4
    assert again.val_pr_auc == pytest.approx(first.val_pr_auc)
    # a changed checkpoint: new features for it, the other one's are reused
    _pretrained(tmp_path, 1)
    train_tagger(cfg)
    assert len(list(cache.glob("*.npz"))) == 6
    # rewritten shards: a new manifest hash, new features
    before = manifest_hash(shards)
    shard = next(shards.glob("*.tar"))
    os.utime(shard, ns=(shard.stat().st_atime_ns, shard.stat().st_mtime_ns + 10**9))
    assert manifest_hash(shards) != before
    train_tagger(cfg)
    assert len(list(cache.glob("*.npz"))) == 10
    out = tmp_path / "m.json"
    assert main(["evaluate", str(first.checkpoint), str(shards), "--json", str(out)]) == 0
    assert json.loads(out.read_text())["n_tracks"] == 4


@pytest.mark.slow
def test_transfer_fine_tunes_within_the_budget_and_keeps_the_better_model(shards, tmp_path):
    from musictag.training.data import load_split, train_vocab
    from musictag.training.endtoend import FinetuneConfig, finetune_transfer, validation_score

    ckpts = _pretrained(tmp_path, 0)
    cfg = TrainConfig(
        shards, tmp_path / "ft.ckpt", 0.25, pretrained=ckpts, cache_dir=tmp_path, ensemble=None
    )
    result = train_tagger(cfg)
    tuned = result.finetune
    assert tuned is not None and tuned.ran and tuned.history
    assert 0.9 * 15 <= result.seconds <= 1.1 * 15  # fine-tuning fills the budget, no more
    # the model kept is the better on validation, and the checkpoint is that model
    assert result.val_pr_auc == max(tuned.probe_val, *tuned.history)
    assert tuned.kept == ("finetuned" if max(tuned.history) > tuned.probe_val else "probe")
    model = load_tagger(result.checkpoint)
    vocab = train_vocab(shards)
    train, val = load_split(shards, "train", vocab), load_split(shards, "val", vocab)
    assert validation_score(model, val) == pytest.approx(result.val_pr_auc, abs=1e-6)
    info = torch.load(result.checkpoint, weights_only=True)["musictag"]["train"]["finetune"]
    assert info["kept"] == tuned.kept and info["history"] == pytest.approx(tuned.history)
    wav = tmp_path / "a.wav"
    sf.write(wav, np.random.default_rng(0).uniform(-0.3, 0.3, 3 * SR), SR)
    assert main(["predict", str(result.checkpoint), str(wav), "--format", "json"]) == 0
    assert main(["evaluate", str(result.checkpoint), str(shards)]) == 0
    # learning rates of zero cannot beat the probe: the probe's weights come back unchanged
    before = {k: v.clone() for k, v in model.state_dict().items()}
    frozen = FinetuneConfig(head_lr=0.0, backbone_lr=0.0)
    same, res = finetune_transfer(model, train, val, time.monotonic() + 5, frozen)
    assert res.ran and res.kept == "probe" and res.val_pr_auc == res.probe_val
    assert all(torch.equal(v, before[k]) for k, v in same.state_dict().items())
    # no time left: skipped, said why
    _, res = finetune_transfer(model, train, val, time.monotonic() + 0.01)
    assert not res.ran and "skipped" in res.reason


def test_transfer_blends_compact_cnns_trained_on_the_collection(shards, tmp_path):
    from musictag.training.data import load_split, train_vocab
    from musictag.training.endtoend import validation_score
    from musictag.training.scratch import ScratchInputs, train_scratch
    from musictag.training.transfer import build_transfer_tagger, combine_taggers

    ckpts = _pretrained(tmp_path, 0)
    # 8 bands < the probe's 16: the CNNs resample the shared frontend's bands
    small = ScratchConfig(channels=(4, 8), n_mels=8, max_epochs=6, eval_every=0.5, members=2)
    cfg = TrainConfig(
        shards, tmp_path / "e.ckpt", 0.6, pretrained=ckpts, cache_dir=tmp_path,
        ensemble=small, finetune=None,
    )  # fmt: skip
    result = train_tagger(cfg)
    model = load_tagger(result.checkpoint)
    vocab = train_vocab(shards)
    train, val = load_split(shards, "train", vocab), load_split(shards, "val", vocab)
    # the figure `train` reports is what the saved model scores on validation
    assert validation_score(model, val) == pytest.approx(result.val_pr_auc, abs=1e-6)
    if "blended with 2 compact CNNs" in result.summary:
        assert model.backbone.roles == ["features", "features", "embedding", "embedding"]
    # the blend is the weighted sum of the logits: weight 1 is the probe, 0 the CNN
    probe = build_transfer_tagger(ckpts, list(vocab.tags), 2 * SR, 1)
    data = ScratchInputs(train, val, list(vocab.tags), SR, 2 * SR, 1, frontend=probe.frontend)
    members = [train_scratch(data, time.monotonic() + 60, small, seed)[0] for seed in (0, 1)]
    assert members[0].backbone.resample.shape == (8, 16)
    x = torch.randn(3, 2 * SR) * 0.1
    with torch.no_grad():
        a = probe(x)
        b, c = (m.head(m.backbone(probe.frontend(x))) for m in members)
        for w in ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.5, 0.25, 0.25)):
            both = combine_taggers(probe, members, w)
            assert both.backbone.roles == ["features", "features", "embedding", "embedding"]
            assert torch.allclose(both(x), w[0] * a + w[1] * b + w[2] * c, atol=1e-5)
        # without a probe: a plain ensemble behind the members' frontend
        alone = combine_taggers(None, members, (0.5, 0.5))
        assert alone.backbone.roles == ["embedding", "embedding"]
        assert torch.allclose(alone(x), 0.5 * (b + c), atol=1e-5)
    with pytest.raises(ValueError, match="one weight per tagger"):
        combine_taggers(probe, members, (1.0,))


def test_scratch_ensemble_keeps_the_budget_and_loads(shards, tmp_path):
    small = ScratchConfig(channels=(4, 8), n_mels=16, max_epochs=4, eval_every=0.5, members=3)
    cfg = TrainConfig(shards, tmp_path / "s.ckpt", 0.2, scratch=small)
    result = train_tagger(cfg)
    assert result.seconds <= 1.1 * 12
    model = load_tagger(result.checkpoint)
    x = torch.randn(2, model.crop_samples) * 0.1
    with torch.no_grad():
        assert torch.allclose(model(x), result.model(x), atol=1e-5)
    if "compact CNNs from scratch, averaged" in result.summary:
        assert model.hparams.backbone == "transfer" and set(model.backbone.roles) == {"embedding"}
    else:
        assert model.hparams.backbone == "compact_cnn"


def test_compact_cnn_resamples_bands_without_new_weights():
    from musictag.models.compact import CompactCNN

    torch.manual_seed(0)
    plain, fine = (
        CompactCNN(8, (4, 8), readout="bands"),
        CompactCNN(16, (4, 8), readout="bands", bands=8),
    )
    assert fine.resample.shape == (8, 16) and torch.allclose(fine.resample.sum(1), torch.ones(8))
    assert fine.state_dict().keys() == CompactCNN(16, (4, 8), readout="bands").state_dict().keys()
    assert fine.embed_dim == plain.embed_dim
    # neighbouring pairs of bins averaged: the same as the plain CNN on the averaged input
    fine.blocks.load_state_dict(plain.blocks.state_dict())
    x = torch.randn(2, 1, 16, 40)
    with torch.no_grad():
        assert torch.allclose(fine(x), plain(x.unflatten(2, (8, 2)).mean(3)), atol=1e-5)
    with pytest.raises(ValueError, match="bands must be in 1..16"):
        CompactCNN(16, bands=24)


def test_scratch_members_fill_the_budget_with_a_shortened_last_model(shards, monkeypatch):
    """Full models while one fits; then one whose epochs (and schedule) fit the time left."""
    from musictag.training import scratch
    from musictag.training.data import load_split, train_vocab

    clock = [0.0]
    monkeypatch.setattr(scratch.time, "monotonic", lambda: clock[0])
    epochs = []

    def fake_train(data, deadline, cfg, seed, progress):
        epochs.append(cfg.max_epochs)
        clock[0] += 100.0 * cfg.max_epochs / 40  # a 40-epoch model takes 100 s
        tagger = scratch.build_scratch_tagger(data.tags, data.sample_rate, data.crop, 1, cfg)
        return tagger.eval(), 0.5

    monkeypatch.setattr(scratch, "train_scratch", fake_train)
    vocab = train_vocab(shards)
    train, val = load_split(shards, "train", vocab), load_split(shards, "val", vocab)
    cfg = ScratchConfig(channels=(4, 8), n_mels=16, max_epochs=40, members=8)
    data = scratch.ScratchInputs(train, val, list(vocab.tags), SR, 2 * SR, 1)
    # 100 s per model and 110 s (with 10 % margin) needed: 2 full, then 70 of 110 s -> 25 epochs
    models, logits = scratch.train_scratch_members(data, 270.0, cfg)
    assert epochs == [40, 40, 25] and len(models) == 3 and logits.shape == (3, 6, 4)
    # under half a model's time left: no shortened model
    epochs.clear(), clock.__setitem__(0, 0.0)
    models, _ = scratch.train_scratch_members(data, 250.0, cfg)
    assert epochs == [40, 40] and len(models) == 2


def test_train_command_members_and_finetune_flags(capsys):
    from musictag.cli import build_parser
    from musictag.training.cli import train_config

    def cfg(*extra):
        return train_config(build_parser().parse_args(["train", "s", "-o", "x.ckpt", *extra]))

    default = cfg()
    assert default.scratch.members == 8 and default.ensemble.members == 6 and default.finetune
    assert cfg("--members", "3").scratch.members == 3
    assert cfg("--members", "0").scratch.members == 1  # from scratch there is always one
    transfer = cfg("--pretrained", "a.ckpt", "--members", "2", "--no-finetune")
    assert transfer.ensemble.members == 2 and transfer.finetune is None
    assert transfer.scratch.members == 8  # not used with --pretrained, left alone
    assert cfg("--pretrained", "a.ckpt", "--members", "0").ensemble is None  # the probe alone
    assert main(["train", "s", "-o", "x.ckpt", "--members", "-1"]) == 2
    assert "--members must be 0 or more" in capsys.readouterr().err


def test_threads_follow_the_cpus_other_work_leaves_free(monkeypatch):
    from musictag.training import api

    busy = api._busy_cpus(0.05)
    assert busy is None or 0.0 <= busy <= (os.cpu_count() or 1) + 1e-6
    monkeypatch.setattr(api.os, "cpu_count", lambda: 2)
    for others, threads in ((0.0, 2), (0.4, 2), (0.8, 1), (1.0, 1), (1.9, 1), (None, 2)):
        monkeypatch.setattr(api, "_busy_cpus", lambda others=others: others)
        assert api._cpu_threads(2) == threads


def test_augmentations():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 1, 16, 50)
    masked = mask_bands(x, 2, 5, -2, g)
    zero_rows = (masked == 0).all(-1).squeeze(1)  # [4, 16] whole mel bands set to 0
    assert zero_rows.any() and zero_rows.sum(1).max() <= 10
    y = torch.eye(4)
    mx, my = mixup(x, y, 0.4, g)
    assert torch.allclose(my.sum(1), torch.ones(4)) and (my.max(1).values >= 0.5).all()
    aug = Augment(gain_db=6.0, shift=0.2)
    out = aug.before_standardize(x, g)
    assert out.shape == x.shape and not torch.equal(out, x)


def test_features_resume_after_the_budget_runs_out(shards, tmp_path, monkeypatch):
    import itertools
    import time

    from musictag.training.data import load_split, train_vocab
    from musictag.training.transfer import BudgetExceeded, build_transfer_tagger, cached_features

    ckpts = _pretrained(tmp_path, 0)
    vocab = train_vocab(shards)
    tracks = load_split(shards, "train", vocab)
    tagger = build_transfer_tagger(ckpts, list(vocab.tags), 2 * SR, 1)
    key = {"test": "resume"}
    full = cached_features(tagger, 0, tracks, key, tmp_path / "ref", batch_crops=4)
    cache = tmp_path / "cache"
    with monkeypatch.context() as m:  # a clock that ticks once per batch of 4 tracks
        m.setattr(time, "monotonic", itertools.count().__next__)
        with pytest.raises(BudgetExceeded, match="8 of 12 tracks done"):
            cached_features(tagger, 0, tracks, key, cache, deadline=1.5, batch_crops=4)
    assert [p.name.endswith(".partial.npz") for p in cache.iterdir()] == [True]
    done = []
    resumed = cached_features(
        tagger, 0, tracks, key, cache, batch_crops=4, progress=lambda d, _: done.append(d)
    )
    assert done == [12]  # only the last batch was computed
    assert np.allclose(resumed, full, atol=1e-5)
    assert [p.name.endswith(".partial.npz") for p in cache.iterdir()] == [False]


def test_probe_selection_stops_starting_fits_after_the_deadline():
    from musictag.training.probe import select_probe

    g = torch.Generator().manual_seed(0)
    x, xv = torch.randn(40, 8, generator=g), torch.randn(20, 8, generator=g)
    y, yv = (x[:, :2] > 0).float(), (xv[:, :2] > 0).float().numpy()
    full = select_probe(x, y, xv, yv, weight_decays=(0.1, 1.0, 10.0))
    late = select_probe(x, y, xv, yv, weight_decays=(10.0, 0.1, 1.0), deadline=0.0)
    assert late.weight_decay == 10.0  # only the first of the grid was fitted
    assert full.weight_decay != 10.0 and full.val_pr_auc > late.val_pr_auc
