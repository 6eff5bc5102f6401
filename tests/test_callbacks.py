"""Callbacks of the recipes: figures through every logger kind, staged LR decay, RNG states."""

from __future__ import annotations

import random
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger, WandbLogger

from musictag.callbacks import ExactResume, StagedLRDecay, log_figure
from musictag.plots import pr_curves, tags_over_time


def fake_trainer(loggers, tmp_path, rank_zero=True):
    return SimpleNamespace(
        is_global_zero=rank_zero,
        loggers=loggers,
        global_step=7,
        current_epoch=2,
        default_root_dir=str(tmp_path),
    )


def figures():
    scores = torch.tensor([[0.9, 0.2, 0.6, 0.1], [0.8, 0.5, 0.5, 0.3], [0.1, 0.6, 0.4, 0.2]])
    target = torch.tensor([[1, 0, 1, 0], [1, 1, 0, 0], [0, 0, 1, 0]])
    tags = ["rock", "jazz", "pop", "noise"]
    pr = Figure()
    assert pr_curves(pr, scores, target, tags, n_best=2, n_worst=2)
    assert [ax.get_title() for ax in pr.axes] == ["best tags (AP)", "worst tags (AP)"]
    legend = [t.get_text() for t in pr.axes[0].get_legend().get_texts()]
    assert legend == ["rock (1.00)", "pop (0.83)"]  # 'noise' has no positive track: left out
    assert [t.get_text() for t in pr.axes[1].get_legend().get_texts()] == ["jazz (0.50)"]
    over_time = Figure()
    per_crop = torch.tensor([[0.9, 0.1, 0.2, 0.05], [0.7, 0.3, 0.1, 0.05]])  # [K=2, n_tags]
    tags_over_time(over_time, "track7", per_crop, torch.tensor([0, 0, 0, 1]), tags, n_tags=3)
    labels = [t.get_text() for t in over_time.axes[0].get_yticklabels()]
    assert labels == ["rock", "jazz", "pop", "noise *"]  # top 3, and the true tag anyway
    assert not pr_curves(Figure(), scores, torch.zeros_like(target), tags, n_best=2, n_worst=2)
    return pr, over_time


def test_figures_reach_every_logger_kind(tmp_path, monkeypatch):
    pr, _ = figures()
    images = []
    wandb = WandbLogger(offline=True, save_dir=str(tmp_path))  # never started: log_image caught
    monkeypatch.setattr(wandb, "log_image", lambda **kw: images.append(kw))
    tensorboard = TensorBoardLogger(str(tmp_path), name="tb")
    csv = CSVLogger(str(tmp_path), name="csv")
    done = log_figure(fake_trainer([wandb, tensorboard, csv], tmp_path), "val/pr_curves", pr)
    png = tmp_path / "csv" / "version_0" / "figures" / "val_pr_curves-epoch=002.png"
    assert done == ["wandb", "tensorboard", str(png)] and png.stat().st_size > 1000
    (image,) = images[0]["images"]
    assert images[0]["key"] == "val/pr_curves" and images[0]["step"] == 7
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    tensorboard.experiment.flush()
    events = list((tmp_path / "tb" / "version_0").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 1000  # the PNG went into the event file
    # no logger: a PNG beside the run; other ranks: nothing
    assert log_figure(fake_trainer([], tmp_path), "x", pr) == [
        str(tmp_path / "figures" / "x-epoch=002.png")
    ]
    assert log_figure(fake_trainer([csv], tmp_path, rank_zero=False), "x", pr) == []


class _Optimizer:
    def __init__(self, lr):
        self.param_groups = [{"lr": lr}, {"lr": lr / 10}]


def test_staged_lr_decay():
    decay = StagedLRDecay(monitor="val/loss", mode="min", patience=2, factor=0.2, max_decays=2)
    optimizer = _Optimizer(0.01)
    decay._trainer = SimpleNamespace(optimizers=[optimizer])
    stops = []
    for value in [1.0, 0.9, 0.95, 0.92, 0.8, 0.85, 0.81, 0.9, 0.9]:
        stop, _ = decay._evaluate_stopping_criteria(torch.tensor(value))
        stops.append(stop)
    # plateaus after 0.9 and after 0.8 decay the rate; the third plateau stops training
    assert stops == [False] * 8 + [True]
    assert decay.decays == 2
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([4e-4, 4e-5])
    state = decay.state_dict()
    fresh = StagedLRDecay(monitor="val/loss", mode="min")
    fresh.load_state_dict(state)
    assert fresh.decays == 2 and fresh.wait_count == decay.wait_count
    with pytest.raises(ValueError, match="factor"):
        StagedLRDecay(factor=1.5)


def test_rng_states_survive_a_weights_only_checkpoint(tmp_path):
    callback = ExactResume()
    torch.manual_seed(3), np.random.seed(3), random.seed(3)
    torch.save({"state": callback.state_dict()}, tmp_path / "c.ckpt")
    expected = (torch.rand(2), np.random.rand(2), random.random())
    torch.manual_seed(4), np.random.seed(4), random.seed(4)
    state = torch.load(tmp_path / "c.ckpt", weights_only=True)["state"]
    restored = ExactResume()
    restored.load_state_dict(state)
    restored.on_fit_start(None, None)
    again = (torch.rand(2), np.random.rand(2), random.random())
    assert torch.equal(expected[0], again[0]) and np.array_equal(expected[1], again[1])
    assert expected[2] == again[2]
