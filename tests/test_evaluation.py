"""``musictag evaluate``: per-track, crop-averaged metrics, checked against scikit-learn."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, f1_score, roc_auc_score

from musictag.checkpoints import load_tagger, save_tagger
from musictag.cli import main
from musictag.evaluation import evaluate_scores, evaluate_shards, track_score_batches
from musictag.inference import iter_shard_tracks
from musictag.tta import extract_crops
from tests.recipes.miniature import one_torch_thread, write_miniature  # noqa: F401
from tests.recipes.test_recipes import tiny_crnn


def test_scores_match_sklearn():
    rng = np.random.default_rng(0)
    target = (rng.random((40, 3)) < 0.4).astype(int)
    target[:, 2] = 0  # a tag without positives: undefined AP and ROC-AUC
    scores = np.clip(target * 0.3 + rng.random((40, 3)) * 0.7, 0, 1).astype(np.float32)
    out = evaluate_scores(torch.from_numpy(scores), torch.from_numpy(target), ["a", "b", "c"])
    for i, tag in enumerate("ab"):
        ref_ap = average_precision_score(target[:, i], scores[:, i])
        assert out["per_tag"][tag]["ap"] == pytest.approx(ref_ap, abs=1e-5)
        ref_roc = roc_auc_score(target[:, i], scores[:, i])
        assert out["per_tag"][tag]["roc_auc"] == pytest.approx(ref_roc, abs=1e-5)
        assert out["per_tag"][tag]["n_positive"] == int(target[:, i].sum())
    assert out["per_tag"]["c"] == {"ap": None, "roc_auc": None, "n_positive": 0}
    ref_micro = average_precision_score(target.ravel(), scores.ravel())
    assert out["metrics"]["pr_auc_micro"] == pytest.approx(ref_micro, abs=1e-5)


def test_short_tracks_are_scored_once_and_long_ones_crop_averaged():
    model = tiny_crnn(2).eval()  # crops of 4000 samples
    long = np.random.default_rng(0).uniform(-0.5, 0.5, 12000).astype(np.float32)
    short = long[:3000]
    (keys, scores), *rest = list(track_score_batches(model, [("s", short)], crops=4))
    assert keys == ["s"] and not rest
    padded = torch.nn.functional.pad(torch.from_numpy(short), (0, 1000))
    with torch.no_grad():
        assert torch.allclose(scores[0], model.predict_proba(padded[None])[0], atol=1e-6)
        batches = list(track_score_batches(model, [("l", long)], crops=4))
        starts = [0, 2000, 4000, 6000]  # (12000 - 4000) // 4 apart
        crops = torch.stack([torch.from_numpy(long[s : s + 4000]) for s in starts])
        expected = model.predict_proba(crops).mean(0)
    assert torch.allclose(batches[0][1][0], expected, atol=1e-6)


def test_evaluate_command_writes_the_issue_json(tmp_path):
    shards = write_miniature(tmp_path / "shards", 3, n_tracks={"train": 4, "val": 2, "test": 5})
    tags = [f"genre_{i:03d}" for i in range(3)]
    ckpt = save_tagger(tiny_crnn(3, tags=tags), tmp_path / "m.ckpt")
    out = tmp_path / "metrics.json"
    assert main(["evaluate", str(ckpt), str(shards), "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    # the issue's fields, then what evaluate adds: tracks not scored, F1 (at 0.5 uncalibrated)
    assert set(doc) == {"split", "n_tracks", "metrics", "per_tag", "n_not_scored", "not_scored"}
    assert doc["split"] == "test" and doc["n_tracks"] == 5
    assert doc["n_not_scored"] == 0 and doc["not_scored"] == []
    auc = {"pr_auc_macro", "pr_auc_micro", "roc_auc_macro", "roc_auc_micro"}
    assert set(doc["metrics"]) == auc | {"f1_macro", "f1_micro"}
    assert set(doc["per_tag"]) == set(tags)
    keys = {"ap", "roc_auc", "n_positive", "f1", "threshold"}
    assert all(set(v) == keys and v["threshold"] == 0.5 for v in doc["per_tag"].values())
    # the same numbers as scoring every test track by hand and asking scikit-learn
    model = load_tagger(ckpt)
    scores, target = [], []
    for info, wave, _ in iter_shard_tracks(shards, ["test"]):
        k = model.hparams.eval_crops  # 16 crops of 4000 samples from 1-s tracks at 8 kHz
        crops = extract_crops(torch.from_numpy(wave), model.crop_samples, k)
        with torch.no_grad():
            scores.append(model.predict_proba(crops).mean(0).numpy())
        target.append([t in info["tags"] for t in tags])
    scores, target = np.stack(scores), np.array(target, dtype=int)
    for i, tag in enumerate(tags):
        ref = average_precision_score(target[:, i], scores[:, i])
        assert doc["per_tag"][tag]["ap"] == pytest.approx(ref, abs=1e-5)
        f1 = f1_score(target[:, i], scores[:, i] >= 0.5, zero_division=0)
        assert doc["per_tag"][tag]["f1"] == pytest.approx(f1, abs=1e-6)
    assert evaluate_shards(model, shards, "val").n_tracks == 2
    assert main(["evaluate", str(ckpt), str(shards), "--split", "nope"]) == 2
