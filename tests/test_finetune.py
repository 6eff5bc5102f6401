"""Fine-tuning: new head on a kept backbone, frozen-then-unfrozen schedule, linear probe, and a
checkpoint pretrained on the synthetic collection beating training from scratch."""

from __future__ import annotations

import logging

import pytest
import pytorch_lightning as pl
import torch

from musictag import CRNNTagger, TagDataModule, load_tagger
from musictag.finetune import BackboneFreeze, constant_lr, finetune_tagger
from tests.recipes.miniature import (
    one_torch_thread,  # noqa: F401 (autouse fixture)
    write_miniature,
    write_synth,
)
from tests.recipes.test_recipes import save_checkpoint, tiny_crnn

KEPT = ("frontend.", "backbone.")


def trainer(epochs: int, callbacks=(), **kw) -> pl.Trainer:
    kw = {
        "accelerator": "cpu",
        "max_epochs": epochs,
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "num_sanity_val_steps": 0,
        **kw,
    }
    return pl.Trainer(callbacks=list(callbacks), **kw)


def test_new_head_on_the_kept_backbone(tmp_path, caplog):
    source = tiny_crnn(5, tags=[f"t{i}" for i in range(5)], lr=3e-3)
    path = save_checkpoint(source, tmp_path / "source.ckpt")
    with caplog.at_level(logging.WARNING, logger="musictag.tagger"):
        model = finetune_tagger(
            path, n_tags=3, tags=["a", "b", "c"], multi_label=False, crop_samples=6000, lr=1e-4
        )
    assert "head.fc.weight [5, 8] -> [3, 8] and head.fc.bias" in caplog.text
    assert type(model) is CRNNTagger and model.training
    old, new = source.state_dict(), model.state_dict()
    for key in old:
        if key.startswith(KEPT):
            assert torch.equal(old[key], new[key]), key
    assert new["head.fc.weight"].shape == (3, 8)
    assert model.tags == ["a", "b", "c"] and model.loss_name == "ce"
    assert model.hparams.lr == 1e-4 and model.crop_samples == 6000
    # the fine-tuned checkpoint restores the new tag set and label kind
    restored = load_tagger(save_checkpoint(model, tmp_path / "tuned.ckpt"))
    assert restored.tags == ["a", "b", "c"] and not restored.hparams.multi_label
    assert restored.hparams.crop_samples == 6000
    for key, value in model.state_dict().items():
        assert torch.equal(value, restored.state_dict()[key]), key


def test_same_tags_keep_the_head_and_wrong_inputs_are_named(tmp_path):
    source = tiny_crnn(2, tags=["x", "y"])
    path = save_checkpoint(source, tmp_path / "source.ckpt")
    model = finetune_tagger(path, n_tags=2, tags=["x", "y"], pos_weight=[2.0, 3.0])
    assert torch.equal(model.head.fc.weight, source.head.fc.weight)
    assert model.criterion.pos_weight.tolist() == [2.0, 3.0]
    with pytest.raises(ValueError, match="expects 8000 Hz audio, the data is at 16000 Hz"):
        finetune_tagger(path, n_tags=2, sample_rate=16000)
    with pytest.raises(ValueError, match="cannot take crops of 100 samples"):
        finetune_tagger(path, n_tags=2, crop_samples=100)


def test_a_converted_published_checkpoint(shared_dir, tmp_path):
    from musictag.pretrained import save_sota_checkpoint, sota_weights_path

    weights = sota_weights_path(shared_dir / "pretrained" / "sota", "crnn", "mtat")
    path = save_sota_checkpoint(weights, "crnn", "mtat", tmp_path / "mtat_crnn.ckpt")
    published = load_tagger(path)
    model = finetune_tagger(path, n_tags=10, tags=[f"g{i}" for i in range(10)], multi_label=False)
    for key, value in published.state_dict().items():
        if key.startswith(KEPT):
            assert torch.equal(value, model.state_dict()[key]), key
    assert model.head.fc.weight.shape == (10, 32) and model.sample_rate == 16000


class _Snapshots(pl.Callback):
    """The backbone's first conv weight and BatchNorm statistics at each epoch start."""

    def __init__(self) -> None:
        self.weights, self.stats, self.groups = [], [], []

    def on_train_epoch_start(self, trainer, pl_module):
        conv = pl_module.backbone.layer1
        self.weights.append(conv.conv.weight.detach().clone())
        self.stats.append(conv.bn.running_mean.detach().clone())
        self.groups.append([g["lr"] for g in trainer.optimizers[0].param_groups])

    def on_train_end(self, trainer, pl_module):
        self.on_train_epoch_start(trainer, pl_module)


@pytest.mark.parametrize("unfreeze_at", [1, None])
def test_backbone_freeze_schedule(unfreeze_at, tmp_path):
    root = write_miniature(tmp_path / "mini", 3, n_tracks={"train": 8, "val": 4, "test": 4})
    path = save_checkpoint(tiny_crnn(5), tmp_path / "source.ckpt")
    model = finetune_tagger(path, n_tags=3, tags=[f"genre_{i:03d}" for i in range(3)], lr=1e-2)
    dm = TagDataModule(root=str(root), crop_samples=4000, eval_crops=2, batch_size=4)
    snaps = _Snapshots()
    freeze = BackboneFreeze(unfreeze_backbone_at_epoch=unfreeze_at, backbone_initial_ratio_lr=0.1)
    trainer(3, [freeze, snaps], limit_val_batches=0).fit(model, dm)
    # epoch 0 is frozen: weights and BatchNorm statistics (eval mode) do not move
    assert torch.equal(snaps.weights[0], snaps.weights[1])
    assert torch.equal(snaps.stats[0], snaps.stats[1])
    if unfreeze_at is None:  # linear probe: frozen to the end, one parameter group
        assert torch.equal(snaps.weights[0], snaps.weights[-1])
        assert torch.equal(snaps.stats[0], snaps.stats[-1])
        assert snaps.groups[-1] == [1e-2]
    else:  # unfrozen at epoch 1, in a new group at 0.1 x the head's rate (constant_lr)
        assert not torch.equal(snaps.weights[1], snaps.weights[2])
        assert not torch.equal(snaps.stats[1], snaps.stats[2])
        assert snaps.groups[0] == [1e-2] and snaps.groups[-1] == pytest.approx([1e-2, 1e-3])
    assert constant_lr(7) == 1.0


# Fine-tuning a checkpoint pretrained on the synthetic collection on a new tag subset, against
# training from scratch with the same data and budget. docs/training.md quotes these numbers.
PRETRAIN_TAGS = ["pluck", "pad", "bass", "lead", "drums", "distorted", "reverb"]
NEW_TAGS = ["bass", "drums", "lead"]
CROP = 4000  # 0.5 s at 8 kHz


def _tagger(tags: list[str], lr: float) -> CRNNTagger:
    return tiny_crnn(
        len(tags),
        tags=tags,
        n_mels=32,
        channels=(16, 16, 16, 16),
        pools=((2, 2), (2, 2), (2, 2), (4, 2)),
        gru_hidden=16,
        crop_samples=CROP,
        eval_crops=2,
        lr=lr,
    )


@pytest.mark.slow
def test_finetuning_beats_training_from_scratch(tmp_path):
    # 160 clips of 1.5 s: 72 train (pretraining), 16 val (the new task's training set), 72 test
    root = write_synth(
        tmp_path / "synth", 160, seconds=1.5, split_fractions=(0.45, 0.1, 0.45), per_shard=16
    )

    def data(tags: list[str], small: bool, batch_size: int) -> TagDataModule:
        splits = {"train": "val-*.tar", "val": "val-*.tar"} if small else {}
        return TagDataModule(
            root=str(root), tags=tags, crop_samples=CROP, eval_crops=2, batch_size=batch_size,
            shuffle_buffer=32, **splits,
        )  # fmt: skip

    pl.seed_everything(0, verbose=False)
    pretrained = _tagger(PRETRAIN_TAGS, 3e-3)
    trainer(30, limit_val_batches=0).fit(pretrained, data(PRETRAIN_TAGS, False, 8))
    ckpt = save_checkpoint(pretrained, tmp_path / "pretrained.ckpt")

    results = {}
    for mode in ("scratch", "finetune", "probe"):  # 4 epochs on 16 clips, batch 4, lr 1e-2
        pl.seed_everything(0, verbose=False)
        if mode == "scratch":
            model, callbacks = _tagger(NEW_TAGS, 1e-2), []
        else:
            model = finetune_tagger(ckpt, n_tags=len(NEW_TAGS), tags=NEW_TAGS, lr=1e-2)
            unfreeze = 2 if mode == "finetune" else None
            callbacks = [BackboneFreeze(unfreeze_backbone_at_epoch=unfreeze)]
        dm = data(NEW_TAGS, True, 4)
        fit = trainer(4, callbacks, limit_val_batches=0)
        fit.fit(model, dm)
        fit.test(model, datamodule=dm, verbose=False)
        results[mode] = model.test_results["test/pr_auc_macro"]
    print("test PR-AUC (macro) on the new tags:", {k: round(v, 4) for k, v in results.items()})
    assert results["finetune"] >= results["scratch"] + 0.05
    assert results["probe"] >= results["scratch"] + 0.05
    assert results["finetune"] >= 0.7 and results["scratch"] <= 0.72
