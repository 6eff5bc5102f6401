"""Each private Lightning API that musictag.lightning_compat reaches still works as it expects.

A failure names the attribute and the installed Lightning: update musictag/lightning_compat.py
(and the ``pytorch-lightning`` bound in pyproject.toml and docs/install.md) for that release.
"""

from __future__ import annotations

import inspect
import logging

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import EarlyStopping
from pytorch_lightning.cli import LightningCLI

from musictag import lightning_compat as compat


def _changed(what: str) -> str:
    return f"pytorch-lightning {pl.__version__} changed {what}; update musictag/lightning_compat.py"


@pytest.fixture(scope="module")
def trainer():
    return pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False)


def test_fit_loop_restarting(trainer):
    assert isinstance(getattr(trainer.fit_loop, "restarting", None), bool), _changed(
        "Trainer.fit_loop.restarting"
    )
    assert compat.fit_restarting(trainer) is False


def test_fit_loop_epoch_progress(trainer):
    try:
        assert compat.epochs_processed(trainer) == 0
    except AttributeError as e:
        pytest.fail(_changed(f"Trainer.fit_loop.epoch_progress.current.processed ({e})"))


def test_hparams_initial():
    model = pl.LightningModule()
    model.save_hyperparameters({"lr": 1.0})
    assert hasattr(model, "_hparams_initial") and hasattr(model, "_hparams"), _changed(
        "LightningModule._hparams_initial / _hparams"
    )
    model.hparams.lr = 2.0
    compat.refresh_logged_hparams(model)
    assert model.hparams_initial["lr"] == 2.0, _changed("LightningModule.hparams_initial")


def test_callback_state_key():
    assert hasattr(EarlyStopping, "_generate_state_key"), _changed("Callback._generate_state_key")
    key = compat.state_key(EarlyStopping(monitor="m"), monitor="m", mode="max")
    assert key == "EarlyStopping{'monitor': 'm', 'mode': 'max'}", _changed("callback state keys")


def test_early_stopping_decision_hook():
    hook = getattr(EarlyStopping, "_evaluate_stopping_criteria", None)
    assert hook is not None, _changed("EarlyStopping._evaluate_stopping_criteria")
    assert list(inspect.signature(hook).parameters) == ["self", "current"], _changed(
        "EarlyStopping._evaluate_stopping_criteria(current)"
    )

    class Never(compat.DecisionAmendingEarlyStopping):
        def amend_stop(self, should_stop, reason):
            return False, f"amended {should_stop}"

    stop = Never(monitor="m", patience=0, mode="max")
    stop.best_score = torch.tensor(1.0)  # no improvement: Lightning would stop
    assert stop._evaluate_stopping_criteria(torch.tensor(0.5)) == (False, "amended True")


def test_cli_hooks():
    for name, params in (
        ("_parse_ckpt_path", ["self"]),
        ("_get", ["self", "config", "key", "default"]),
    ):
        hook = getattr(LightningCLI, name, None)
        assert hook is not None, _changed(f"LightningCLI.{name}")
        assert list(inspect.signature(hook).parameters) == params, _changed(f"LightningCLI.{name}")
    # the --ckpt_path hook is still called while the CLI parses (from __init__ or a method it runs)
    calls = inspect.getsource(LightningCLI).count("self._parse_ckpt_path()")
    assert calls >= 1, _changed("where LightningCLI calls _parse_ckpt_path")


def test_rank_zero_logger():
    from pytorch_lightning.utilities import rank_zero

    logger = getattr(rank_zero.rank_zero_module, "log", None)
    assert isinstance(logger, logging.Logger), _changed("pytorch_lightning.utilities.rank_zero")
    assert logger.name == compat.RANK_ZERO_LOGGER, _changed("the rank-zero logger's name")
