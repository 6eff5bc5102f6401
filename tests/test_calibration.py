"""Calibrated tags: F1 at thresholds, per-tag threshold choice, the calibrate command, predict auto."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score, precision_recall_fscore_support

from musictag.calibrate import load_calibration, read_checkpoint, score_shards
from musictag.calibration import (
    Calibration,
    best_f1_thresholds,
    calibrate,
    f1_at_thresholds,
    precision_thresholds,
)
from musictag.cli import main
from musictag.data.shards import AudioItem, write_shards
from musictag.inference import tag_file
from musictag.results import select_tags
from tests.test_inference import SR, noise_file, save_checkpoint, tiny_crnn


def _data(n=60, t=5, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.random((n, t)) < 0.3
    s = np.clip(0.35 * y + 0.65 * rng.random((n, t)), 0, 1)  # informative but noisy scores
    return s, y.astype(np.float32)


def test_f1_at_thresholds_matches_sklearn():
    s, y = _data()
    thr = np.array([0.2, 0.4, 0.5, 0.6, 0.9])
    got = f1_at_thresholds(s, y, thr)
    pred = s >= thr
    p, r, f, support = precision_recall_fscore_support(y, pred, average=None, zero_division=0)
    np.testing.assert_allclose(got.precision, p)
    np.testing.assert_allclose(got.recall, r)
    np.testing.assert_allclose(got.f1, f)
    np.testing.assert_array_equal(got.support, support)
    assert got.f1_micro == pytest.approx(f1_score(y, pred, average="micro"))
    assert got.f1_macro == pytest.approx(f1_score(y, pred, average="macro"))
    # a tag without positives leaves the macro mean; a scalar threshold applies to every tag
    y2 = y.copy()
    y2[:, 0] = 0
    one = f1_at_thresholds(s, y2, 0.5)
    assert one.thresholds.tolist() == [0.5] * 5
    assert one.f1_macro == pytest.approx(one.f1[1:].mean())
    with pytest.raises(ValueError, match=r"\[tracks, n_tags\]"):
        f1_at_thresholds(s[:, :2], y)


def test_best_f1_thresholds_reach_the_best_f1_of_every_cut():
    s, y = _data(seed=1)
    thr = best_f1_thresholds(s, y)
    got = f1_at_thresholds(s, y, thr).f1
    for t in range(s.shape[1]):
        # brute force: every distinct score as the lowest positive
        best = max(f1_score(y[:, t], s[:, t] >= c, zero_division=0) for c in np.unique(s[:, t]))
        assert got[t] == pytest.approx(best)
        # strictly between two scores, so it splits unseen data with a margin
        assert not np.isclose(s[:, t], thr[t]).any()
    assert (got >= f1_at_thresholds(s, y, 0.5).f1 - 1e-12).all()
    # a tag with no positive keeps the default
    y[:, 2] = 0
    assert best_f1_thresholds(s, y, default=0.7)[2] == 0.7


def test_precision_thresholds_reach_the_target_with_most_recall():
    s, y = _data(n=200, seed=2)
    thr, reached = precision_thresholds(s, y, 0.8)
    f = f1_at_thresholds(s, y, thr)
    for t in range(s.shape[1]):
        cuts = np.unique(s[:, t])
        kept = s[:, t][None, :] >= cuts[:, None]  # [cuts, tracks]
        prec = (kept & (y[:, t] > 0)).sum(1) / kept.sum(1)
        ok = cuts[prec >= 0.8]
        assert reached[t] == bool(ok.size)
        if ok.size:
            assert f.precision[t] >= 0.8
            assert f.recall[t] == pytest.approx(y[s[:, t] >= min(ok), t].sum() / y[:, t].sum())
    with pytest.raises(ValueError, match="precision"):
        precision_thresholds(s, y, 1.5)


def test_calibration_record_round_trip():
    s, y = _data()
    tags = ["a", "b", "c", "d", "e"]
    cal = calibrate(s, y, tags, split="val")
    assert cal.method == "f1" and cal.n_tracks == 60 and cal.calibrated.all()
    assert cal.scores_f1["f1_macro"] == pytest.approx(
        f1_at_thresholds(s, y, cal.thresholds).f1_macro
    )
    back = Calibration.from_dict(json.loads(json.dumps(cal.to_dict())))
    np.testing.assert_array_equal(back.thresholds, cal.thresholds)
    assert back.tags == tags and back.split == "val"
    np.testing.assert_array_equal(back.for_tags(["e", "a"]), cal.thresholds[[4, 0]])
    with pytest.raises(ValueError, match="missing"):
        back.for_tags(["a", "zzz"])
    y[:, 1] = 0
    p = calibrate(s, y, tags, precision=0.9)
    assert p.method == "precision" and p.target_precision == 0.9 and not p.calibrated[1]
    assert "b" in p.to_dict()["uncalibrated"]


def test_select_tags_with_per_tag_thresholds():
    scores = np.array([0.9, 0.2, 0.6, 0.4], np.float32)
    tags = ["w", "x", "y", "z"]
    assert select_tags(scores, tags, threshold=[0.95, 0.1, 0.5, 0.5]) == [
        ("y", pytest.approx(0.6)),
        ("x", pytest.approx(0.2)),
    ]
    assert [t for t, _ in select_tags(scores, tags, top_k=1, threshold=0.3)] == ["w"]


@pytest.fixture(scope="module")
def calibration_set(tmp_path_factory):
    """A tiny CRNN checkpoint and a val/test shard set of short noisy tones."""
    root = tmp_path_factory.mktemp("cal")
    model = tiny_crnn()
    ckpt = save_checkpoint(model, root / "m.ckpt")
    rng = np.random.default_rng(0)
    splits = {}
    for split, n in (("val", 10), ("test", 3)):
        items = []
        for i in range(n):
            path = noise_file(root / f"{split}{i}.wav", 0.8, seed=i)
            tags = tuple(f"t{k}" for k in range(4) if rng.random() < 0.5) or ("t0",)
            items.append(AudioItem(path, tags + ("not_in_model",), track_id=f"{split}{i}"))
        splits[split] = items
    write_shards(splits, root / "shards", sample_rate=SR, progress=False)
    return model, ckpt, root


def test_calibrate_command_stores_thresholds_and_predict_auto_uses_them(
    calibration_set, tmp_path, capsys
):
    model, ckpt, root = calibration_set
    out = tmp_path / "calibrated.ckpt"
    assert main(["calibrate", str(ckpt), str(root / "shards"), "-o", str(out)]) == 0
    assert "stored in" in capsys.readouterr().out
    assert load_calibration(ckpt) is None  # -o leaves the input alone
    cal = load_calibration(out)
    # the same as scoring the split and calibrating by hand
    data = score_shards(model, root / "shards", "val")
    assert data.scores.shape == (10, 4) and data.n_failed == 0
    np.testing.assert_allclose(
        cal.thresholds, calibrate(data.scores, data.targets, model.tags).thresholds, atol=1e-6
    )
    assert cal.split == "val" and cal.n_tracks == 10 and cal.protocol["crops"] == 4
    assert torch.equal(
        read_checkpoint(out)["state_dict"]["head.fc.weight"],
        read_checkpoint(ckpt)["state_dict"]["head.fc.weight"],
    )
    # predict --threshold auto: every tag at or above its own threshold, no top-k cap
    song = noise_file(tmp_path / "song.wav", 1.5, seed=3)
    assert main(["predict", str(out), str(song), "--quiet", "--format", "json", "--all-scores",
                 "--threshold", "auto"]) == 0  # fmt: skip
    [doc] = json.loads(capsys.readouterr().out)
    scores = tag_file(model, song).scores
    expected = [model.tags[i] for i in np.argsort(-scores) if scores[i] >= cal.thresholds[i]]
    assert [d["tag"] for d in doc["tags"]] == expected and 0 < len(expected) < 4
    # the model card of an export carries them, in the model's tag order
    assert main(["export", str(out), "-o", str(tmp_path / "m.pt"), "--no-check"]) == 0
    card = json.loads((tmp_path / "m.json").read_text())["thresholds"]
    assert card["method"] == "f1" and card["split"] == "val" and card["n_tracks"] == 10
    assert list(card["values"]) == model.tags
    np.testing.assert_allclose(list(card["values"].values()), cal.thresholds)
    # without thresholds: a clear error, exit status 2
    assert main(["predict", str(ckpt), str(song), "--quiet", "--threshold", "auto"]) == 2
    assert "no calibrated thresholds" in capsys.readouterr().err
    # a target precision; a missing split is named
    assert main(["calibrate", str(out), str(root / "shards"), "--precision", "0.9"]) == 0
    assert load_calibration(out).method == "precision"
    assert main(["calibrate", str(out), str(root / "shards"), "--split", "nope"]) == 2
    assert "no split 'nope'" in capsys.readouterr().err
