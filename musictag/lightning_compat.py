"""Every use of a private Lightning API in musictag, in one place.

Exact resume (is the fit loop replaying a restored epoch, which epoch runs next), fine-tuning (the
logged hyperparameters), ``StagedLRDecay`` (amending the early-stopping decision), the recipes'
``--ckpt_path`` and ``save_tagger``'s quiet trainer need Lightning internals. They are reached
only through this module, and ``tests/test_lightning_compat.py`` checks each one against the
installed Lightning, failing with the attribute and the Lightning version. Tested with
pytorch-lightning 2.6.1 to 2.6.6, hence the bound ``>=2.6.1,<2.7`` in pyproject.toml and
docs/install.md: raise it only after those tests pass with the new release.
"""

from __future__ import annotations

import copy
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback, EarlyStopping
from pytorch_lightning.cli import LightningCLI

__all__ = [
    "RANK_ZERO_LOGGER",
    "CheckpointArgsCLI",
    "DecisionAmendingEarlyStopping",
    "cli_config_value",
    "epochs_processed",
    "fit_restarting",
    "refresh_logged_hparams",
    "state_key",
]

RANK_ZERO_LOGGER = "pytorch_lightning.utilities.rank_zero"
"""The logger of Lightning's set-up messages (accelerator found, logger tips)."""


def fit_restarting(trainer: pl.Trainer) -> bool:
    """Whether the fit loop is replaying the end of an epoch restored from a checkpoint."""
    return bool(trainer.fit_loop.restarting)


def epochs_processed(trainer: pl.Trainer) -> int:
    """The epoch the fit loop runs next (``current_epoch`` still names a restored, finished one)."""
    return int(trainer.fit_loop.epoch_progress.current.processed)


def refresh_logged_hparams(model: pl.LightningModule) -> None:
    """Make the loggers report ``model.hparams`` as they are now (``hparams_initial``)."""
    model._hparams_initial = copy.deepcopy(model._hparams)


def state_key(callback: Callback, **key: Any) -> str:
    """A callback's checkpoint state key from its identifying settings (Lightning's format)."""
    return callback._generate_state_key(**key)


def cli_config_value(cli: LightningCLI, config: Any, key: str, default: Any = None) -> Any:
    """``key`` of a LightningCLI config namespace, under the running subcommand if there is one."""
    return cli._get(config, key, default)


class DecisionAmendingEarlyStopping(EarlyStopping):
    """``EarlyStopping`` whose subclasses may amend each stop decision in :meth:`amend_stop`."""

    def _evaluate_stopping_criteria(self, current: Any) -> tuple[bool, str | None]:
        return self.amend_stop(*super()._evaluate_stopping_criteria(current))

    def amend_stop(self, should_stop: bool, reason: str | None) -> tuple[bool, str | None]:
        """The decision ``(should_stop, reason)``; by default Lightning's, unchanged."""
        return should_stop, reason


class CheckpointArgsCLI(LightningCLI):
    """``LightningCLI`` whose subclasses read ``--ckpt_path`` themselves in :meth:`read_ckpt_path`."""

    def _parse_ckpt_path(self) -> None:
        self.read_ckpt_path()

    def read_ckpt_path(self) -> None:
        """Update ``self.config`` from the checkpoint of ``--ckpt_path``; by default Lightning's."""
        super()._parse_ckpt_path()
