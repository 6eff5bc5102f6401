"""SE excitations read with hooks, averaged per tag, plotted; the se-analysis command."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from musictag import create_model
from musictag.analysis import ExcitationRecorder, collect_excitations, se_layers
from musictag.cli import main
from musictag.data.shards import AudioItem, write_shards
from musictag.plots import plot_excitations
from musictag.tta import extract_crops

from .test_inference import PNG, noise_file, save_checkpoint, tiny_crnn

CROP = 3**4  # stem + 3 pooled blocks: 81 samples pool to one frame


def tiny_se(block: str = "rese", seed: int = 0):
    torch.manual_seed(seed)
    model = create_model(
        "samplecnn_se",
        n_tags=3,
        tags=["a", "b", "c"],
        block=block,
        channels=(8, 8, 16),
        crop_samples=CROP,
        sample_rate=8000,
        eval_crops=3,
    )
    for m in model.modules():  # non-trivial batch-norm statistics
        if isinstance(m, torch.nn.BatchNorm1d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 2.0)
    return model.eval()


def manual_excitations(model, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Recompute sigmoid(dense2(relu(dense1(mean_t(residual branch))))) block by block."""
    out = {}
    h = model.frontend(x)
    bb = model.backbone
    for i in range(1, bb.n_layers + 1):
        blk = getattr(bb, f"layer{i}")
        branch = blk.bn_2(blk.conv_2(blk.relu(blk.bn_1(blk.conv_1(h)))))
        out[f"layer{i}"] = torch.sigmoid(blk.dense2(blk.relu(blk.dense1(branch.mean(-1)))))
        h = blk(h)
    return out


def test_hooks_read_the_excitations_without_changing_the_model():
    model = tiny_se()
    assert list(se_layers(model)) == ["layer1", "layer2", "layer3", "layer4", "layer5"]
    x = torch.randn(5, CROP)
    with torch.no_grad():
        before = model(x)
        with ExcitationRecorder(model) as rec:
            during = model(x)
        ref = manual_excitations(model, x)
    assert torch.equal(before, during)
    layers = se_layers(model)
    for name, e in rec.excitations.items():
        assert e.shape == (5, layers[name].out_features)
        assert 0 < e.min() and e.max() < 1
        torch.testing.assert_close(e, ref[name], atol=1e-6, rtol=0)
    assert rec.excitations["layer4"].shape == (5, 16)
    assert all(not layer._forward_hooks for layer in layers.values())
    # plain SE blocks (basic + SE module) are found too; models without SE are refused
    assert list(se_layers(tiny_se("se")))[-1] == "layer5"
    with pytest.raises(ValueError, match="no squeeze-and-excitation"):
        se_layers(tiny_crnn())


def test_per_tag_means_average_crop_averaged_tracks(tmp_path):
    model = tiny_se()
    rng = np.random.default_rng(0)
    waves = [rng.standard_normal(200 + 50 * i).astype(np.float32) for i in range(4)]
    labels = [["a"], ["a", "b"], ["b", "zzz"], []]
    stats = collect_excitations(model, zip(waves, labels), tags=["a", "b", "c"], batch_size=2)
    assert stats.counts.tolist() == [2, 2, 0] and stats.n_tracks == 4
    per_track = []
    with torch.no_grad():
        for w in waves:
            crops = extract_crops(torch.from_numpy(w), CROP, 3)  # the model's eval_crops
            per_track.append(
                {k: v.mean(0).numpy() for k, v in manual_excitations(model, crops).items()}
            )
    for block in stats.blocks:
        mean = stats.mean(block)
        np.testing.assert_allclose(
            mean[0], (per_track[0][block] + per_track[1][block]) / 2, atol=1e-6
        )
        np.testing.assert_allclose(
            mean[1], (per_track[1][block] + per_track[2][block]) / 2, atol=1e-6
        )
        assert np.isnan(mean[2]).all()
        overall = np.mean([p[block] for p in per_track], axis=0)
        np.testing.assert_allclose(stats.overall(block), overall, atol=1e-6)
    out = plot_excitations(stats, tmp_path / "se.png")
    assert out.read_bytes()[:8] == PNG


@pytest.mark.slow
def test_se_analysis_command(tmp_path, capsys):
    model = tiny_se()
    ckpt = save_checkpoint(model, tmp_path / "se.ckpt")
    items = [
        AudioItem(
            noise_file(tmp_path / f"{i}.wav", 0.05 + 0.01 * i, seed=i),
            tags=(["a"], ["b"], ["a", "c"])[i],
        )
        for i in range(3)
    ]
    write_shards({"test": items}, tmp_path / "shards", sample_rate=8000, progress=False)
    out = tmp_path / "plot.png"
    assert (
        main(
            ["se-analysis", str(ckpt), str(tmp_path / "shards"), "-o", str(out), "--split", "test"]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "3 tracks; per tag: a 2, b 1, c 1" in text and "layer5" in text
    assert out.read_bytes()[:8] == PNG
    assert main(["se-analysis", str(ckpt), str(tmp_path / "nowhere"), "-o", str(out)]) == 2
