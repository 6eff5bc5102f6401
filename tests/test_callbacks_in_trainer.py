"""Callbacks inside a real Trainer: TagPlots through a real offline wandb run (the logger is not
patched), and StagedLRDecay deciding from logged metrics, with its state in the checkpoint."""

from __future__ import annotations

import json

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import WandbLogger
from torch.utils.data import DataLoader

from musictag.callbacks import StagedLRDecay, TagPlots

N_TAGS, K, SAMPLES = 4, 2, 64


class Toy(pl.LightningModule):
    """A linear tagger on the mean of the audio; logs a scripted ``val/score`` per epoch."""

    def __init__(self, scores: list[float] | None = None) -> None:
        super().__init__()
        self.head = torch.nn.Linear(1, N_TAGS)
        self.scripted = scores
        self.tags = [f"tag{i}" for i in range(N_TAGS)]
        self.lrs: list[float] = []

    def predict_proba(self, audio: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.head(audio.mean(dim=-1, keepdim=True)))

    def training_step(self, batch, batch_idx):
        scores = self.predict_proba(batch["audio"].mean(dim=1))
        return torch.nn.functional.binary_cross_entropy(scores, batch["target"])

    def on_train_epoch_start(self):
        self.lrs.append(self.optimizers().param_groups[0]["lr"])

    def validation_step(self, batch, batch_idx):
        scores = self.predict_proba(batch["audio"]).mean(dim=1)  # [B, n_tags]
        if self.scripted is not None:
            self.log("val/score", self.scripted[self.current_epoch])
        return scores

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def loader() -> DataLoader:
    g = torch.Generator().manual_seed(0)
    items = [
        {
            "audio": torch.rand(K, SAMPLES, generator=g),
            "target": torch.tensor([i % 2, (i + 1) % 2, 1, 0], dtype=torch.float32),
            "key": f"track{i}",
        }
        for i in range(8)
    ]
    return DataLoader(items, batch_size=4)


def trainer(tmp_path, **kwargs) -> pl.Trainer:
    return pl.Trainer(
        accelerator="cpu",
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=tmp_path,
        **kwargs,
    )


def test_tag_plots_reach_a_real_offline_wandb_run(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    logger = WandbLogger(project="musictag-tests", save_dir=str(tmp_path), offline=True)
    plots = TagPlots(n_best=2, n_worst=1, n_track_tags=2)
    t = trainer(
        tmp_path, max_epochs=2, logger=logger, callbacks=[plots], enable_checkpointing=False
    )
    t.fit(Toy(), train_dataloaders=loader(), val_dataloaders=loader())
    logger.experiment.finish()
    assert plots.logged == ["wandb", "wandb"]
    (run,) = (tmp_path / "wandb").glob("offline-run-*")
    assert list(run.glob("*.wandb"))  # the run's record, for `wandb sync`
    images = sorted((run / "files" / "media" / "images").rglob("*.png"))
    names = sorted({p.name.split("_", 1)[0] + "/" + p.parent.name for p in images})
    assert len(images) == 4, images  # two figures in each of two epochs
    assert names == ["pr/val", "tags/val"]
    for png in images:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 2000
    history = run / "files" / "wandb-summary.json"
    if history.is_file():  # written at finish
        summary = json.loads(history.read_text())
        assert summary["val/pr_curves"]["_type"] == "image-file"


def test_staged_lr_decay_in_a_trainer_decays_then_stops(tmp_path):
    # val/score never improves after epoch 0: patience 1 -> decay, decay, then stop
    decay = StagedLRDecay(monitor="val/score", mode="max", patience=1, factor=0.5, max_decays=2)
    model = Toy(scores=[0.5] * 10)
    t = trainer(tmp_path, max_epochs=10, logger=False, callbacks=[decay])
    t.fit(model, train_dataloaders=loader(), val_dataloaders=loader())
    # epochs 0-3 ran: decays after epochs 1 and 2, the stop after epoch 3 (not max_epochs)
    assert t.current_epoch == 4 and t.should_stop
    assert model.lrs == [0.1, 0.1, 0.05, 0.025]
    assert decay.decays == 2
    t.save_checkpoint(tmp_path / "c.ckpt")
    state = torch.load(tmp_path / "c.ckpt", weights_only=True)["callbacks"][decay.state_key]
    assert state["decays"] == 2
    resumed = StagedLRDecay(monitor="val/score", mode="max", factor=0.5)
    resumed.load_state_dict(state)
    assert resumed.decays == 2 and resumed.wait_count == decay.wait_count
