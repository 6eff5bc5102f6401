"""A run interrupted after its first epoch and resumed with ``--ckpt_path last`` ends exactly
where the uninterrupted run ends: same weights, optimiser, scheduler, epoch; with the data read
in the main process and by DataLoader workers."""

from __future__ import annotations

import sys

import pytest
import pytorch_lightning as pl
import torch

from musictag.callbacks import ExactResume
from musictag.lightning_cli import main
from tests.recipes.miniature import (
    one_torch_thread,  # noqa: F401 (autouse fixture)
    write_miniature,
)
from tests.recipes.test_recipes import CASES, QUIET, load_recipe

EPOCHS = 3


class Interrupt(Exception):
    """Stands for a crash or a preemption."""


class InterruptAt(pl.Callback):
    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == self.epoch:
            raise Interrupt(f"interrupted at the start of epoch {self.epoch}")


def last_checkpoint(folder) -> dict:
    return torch.load(folder / "last.ckpt", map_location="cpu", weights_only=True)


@pytest.mark.slow
@pytest.mark.parametrize(
    "loader",
    [
        [],
        # DataLoader workers that live across epochs: crops and shuffling are seeded per
        # (seed, epoch, rank, worker); every pass draws the same from the global torch RNG.
        # (seed 1: a trajectory on which the plateau schedule acts, as with seed 0 above)
        ["--data.num_workers", "2", "--data.persistent_workers", "true", "--data.seed", "1"],
    ],
    ids=["main-process", "2-persistent-workers"],
)
def test_interrupted_and_resumed_run_ends_with_the_same_weights(tmp_path, monkeypatch, loader):
    root = write_miniature(tmp_path / "mtt", 6, n_tracks={"train": 8, "val": 4, "test": 4})
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["mtt.py"])
    config = load_recipe("gtzan_crnn").CONFIG

    def fit(name: str, *extra: str, callbacks=()) -> None:
        args = [
            "fit", "--data.root", str(root), *QUIET, *CASES["gtzan_crnn"][4],
            "--data.shuffle_buffer", "8", "--trainer.max_epochs", str(EPOCHS),
            "--trainer.logger", "false", "--checkpoint.dirpath", str(tmp_path / name),
            # dropout and a plateau schedule that acts every epoch: RNG and scheduler state count
            "--model.init_args.head_dropout", "0.5", "--model.init_args.plateau_patience", "0",
            "--model.init_args.lr", "0.01", "--trainer.callbacks", "[]", *loader, *extra,
        ]  # fmt: skip
        main(config, args, trainer_defaults={"callbacks": list(callbacks)})

    fit("uninterrupted")
    with pytest.raises(Interrupt):
        fit("resumed", callbacks=[InterruptAt(1)])
    assert last_checkpoint(tmp_path / "resumed")["epoch"] == 0
    fit("resumed", "--ckpt_path", "last")

    a, b = last_checkpoint(tmp_path / "uninterrupted"), last_checkpoint(tmp_path / "resumed")
    assert a["epoch"] == b["epoch"] == EPOCHS - 1
    assert a["global_step"] == b["global_step"] == EPOCHS * 2
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for key in a["state_dict"]:
        assert torch.equal(a["state_dict"][key], b["state_dict"][key]), key
    (opt_a,), (opt_b,) = a["optimizer_states"], b["optimizer_states"]
    assert opt_a["param_groups"] == opt_b["param_groups"]
    for i, state in opt_a["state"].items():
        for name, value in state.items():
            assert torch.equal(value, opt_b["state"][i][name]), (i, name)
    (sched_a,), (sched_b,) = a["lr_schedulers"], b["lr_schedulers"]
    assert sched_a == sched_b
    assert sched_a["_last_lr"] != [0.01]  # the plateau schedule decayed the learning rate
    state = b["callbacks"][ExactResume.__qualname__]
    assert set(state["rng"]) >= {"torch", "numpy", "python"}
