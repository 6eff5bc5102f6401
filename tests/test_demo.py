"""The demo end to end: synthetic audio → shards → CRNN → per-track test metrics above the bar."""

from __future__ import annotations

import json

import pytest

from musictag import load_tagger
from musictag.calibrate import calibrate_checkpoint, score_shards
from musictag.calibration import f1_at_thresholds
from musictag.data.sources.synth import TAGS
from musictag.demo import DemoConfig, run_demo


@pytest.mark.slow
def test_demo_small_settings_reaches_the_bar(tmp_path, record_property):
    # fixed epochs and no time limit: the same number of steps on any machine
    cfg = DemoConfig(
        out_dir=tmp_path / "demo",
        n_clips=300,
        clip_seconds=3.0,
        max_minutes=None,
        max_epochs=30,
        num_workers=0,
        progress=False,
    )
    result = run_demo(cfg)
    assert result.metrics["test/pr_auc_macro"] >= 0.85, result.metrics
    assert result.metrics["test/roc_auc_macro"] >= 0.85, result.metrics
    manifest = json.loads((tmp_path / "demo" / "shards" / "manifest.json").read_text())
    assert manifest["splits"]["test"]["n_samples"] == 45 and manifest["n_failed"] == 0
    model = load_tagger(result.checkpoint)
    assert set(model.tags) == set(TAGS)
    assert len(result.examples) == 3
    assert all(tagged.scores.shape == (len(TAGS),) for _, _, tagged in result.examples)
    # the best-scored tag is a true tag for most examples
    hits = sum(tagged.top(1)[0][0] in truth for _, truth, tagged in result.examples)
    assert hits >= 2
    # calibrated tags: thresholds chosen on val do at least as well on test as 0.5
    shards = tmp_path / "demo" / "shards"
    cal, _ = calibrate_checkpoint(result.checkpoint, shards, split="val")
    test = score_shards(load_tagger(result.checkpoint), shards, "test")
    assert test.scores.shape == (45, len(TAGS))
    at_half = f1_at_thresholds(test.scores, test.targets, 0.5)
    calibrated = f1_at_thresholds(test.scores, test.targets, cal.for_tags(model.tags))
    for name, f1 in (("at_0.5", at_half), ("calibrated", calibrated)):
        record_property(f"test_f1_macro_{name}", round(f1.f1_macro, 4))
        record_property(f"test_f1_micro_{name}", round(f1.f1_micro, 4))
    assert calibrated.f1_macro >= at_half.f1_macro
