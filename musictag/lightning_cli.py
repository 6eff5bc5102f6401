"""The LightningCLI entry of the training recipes: :class:`TagCLI` and :func:`main`.

A recipe (``recipes/mtt_fcn.py``) is a few lines around :func:`main` with its YAML defaults::

    python recipes/mtt_fcn.py --trainer.devices 2          # fit, then test the best checkpoint
    python recipes/mtt_fcn.py fit --config run.yaml --data.batch_size 32 --model.init_args.lr 1e-4
    python recipes/mtt_fcn.py test --ckpt_path runs/mtt_fcn/checkpoints/last.ckpt
    python recipes/mtt_fcn.py --print_config

Everything that depends on the data is linked from the data module and never typed twice: tag
count, tag names, single- or multi-label, sample rate (after the data module has read the
manifest), crop length and evaluation crops (when parsing), and optionally the ``pos_weight``
of the loss (``--weight_positives true``). See ``docs/training.md``.
"""

from __future__ import annotations

import logging
import netrc
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.cli import LightningArgumentParser, SaveConfigCallback
from pytorch_lightning.loggers import WandbLogger

from .callbacks import ExactResume
from .checkpoints import tagger_classes
from .data.datamodule import TagDataModule
from .lightning_compat import CheckpointArgsCLI, cli_config_value
from .tagger import Tagger

__all__ = ["AutoWandbLogger", "SUBCOMMANDS", "TagCLI", "main", "wandb_api_key_configured"]

log = logging.getLogger(__name__)

SUBCOMMANDS = ("fit", "validate", "test", "predict")
"""The LightningCLI subcommands; with none, a recipe fits and then tests the best checkpoint."""

LINKED = (
    "n_tags",
    "tags",
    "multi_label",
    "pos_weight",
    "sample_rate",
    "crop_samples",
    "eval_crops",
)
"""Model arguments linked from the data module (never set on the command line)."""


def wandb_api_key_configured() -> bool:
    """Whether a wandb API key is configured: ``WANDB_API_KEY`` or a ``netrc`` entry for the host.

    Reads the environment and ``$NETRC`` / ``~/.netrc`` only; never touches the network.
    """
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname
    path = os.environ.get("NETRC") or os.path.join(os.path.expanduser("~"), ".netrc")
    try:
        return netrc.netrc(path).authenticators(host or "api.wandb.ai") is not None
    except (OSError, netrc.NetrcParseError):
        return False


class AutoWandbLogger(WandbLogger):
    """Lightning's ``WandbLogger``, offline unless an API key is configured.

    Offline runs are written under ``save_dir/wandb/offline-run-*``; upload them later with
    ``wandb sync <run folder>``. ``WANDB_MODE`` (``offline``, ``disabled``) still applies.

    Args:
        offline: ``None`` (default): offline exactly when :func:`wandb_api_key_configured` is
            false; ``True``/``False`` force it.
        **kwargs: Any ``WandbLogger`` argument (``project``, ``name``, ``save_dir``, ``log_model``
            ...).
    """

    def __init__(self, offline: bool | None = None, **kwargs: Any) -> None:
        if offline is None:
            offline = not wandb_api_key_configured()
            if offline:
                log.info("no wandb API key configured: logging offline (upload with `wandb sync`)")
        save_dir = kwargs.get("save_dir")
        if save_dir:
            Path(save_dir).mkdir(parents=True, exist_ok=True)
        super().__init__(offline=offline, **kwargs)


class _SaveConfigToLoggers(SaveConfigCallback):
    """Save ``config.yaml`` in the log folder and log the resolved config to every logger."""

    def save_config(self, trainer: Any, pl_module: Any, stage: str) -> None:
        import yaml

        try:  # jsonargparse >= 4.49 renamed skip_none
            text = self.parser.dump(self.config, skip_unset=False)
        except (TypeError, ValueError):
            text = self.parser.dump(self.config, skip_none=False)
        config = yaml.safe_load(text)
        for logger in trainer.loggers:
            logger.log_hyperparams({"config": config})


def _pos_weight_fn(enabled: Callable[[], bool]) -> Callable[[TagDataModule], list[float] | None]:
    def pos_weight(data: TagDataModule) -> list[float] | None:
        return data.pos_weight().tolist() if enabled() else None

    return pos_weight


def _multi_label(data: TagDataModule) -> bool:
    return data.multi_label


class TagCLI(CheckpointArgsCLI):
    """``LightningCLI`` for a :class:`~musictag.tagger.Tagger` and a :class:`TagDataModule`.

    On top of Lightning's CLI it:

    - links the data-dependent model arguments from the data module (``n_tags``, ``tags``,
      ``multi_label``, ``sample_rate`` and, with ``--weight_positives true``, ``pos_weight``
      when it is instantiated; ``crop_samples`` and ``eval_crops`` when parsing);
    - always checkpoints: ``--checkpoint.*`` configures a ``ModelCheckpoint`` that keeps the best
      ``val/pr_auc_macro``; with ``checkpoint.save_last`` (default) ``last.ckpt`` in the same
      folder is rewritten at the end of every epoch, for ``fit --ckpt_path last``;
    - adds :class:`~musictag.callbacks.ExactResume`, so ``fit --ckpt_path last`` resumes exactly;
    - logs the resolved config to every logger (and ``config.yaml`` in the log folder);
    - with ``test_after_fit``, tests the best checkpoint when ``fit`` ends (a recipe run without
      subcommand).

    Args:
        model_class: The model: ``Tagger`` (default; any preset is chosen with ``--model``) or a
            function that returns a tagger (fine-tuning, :func:`musictag.finetune.finetune_tagger`).
        datamodule_class: The data module class.
        subclass_mode_model: Whether ``--model`` takes any subclass (a preset) of ``model_class``;
            default: ``True`` for a class, ``False`` for a function.
        test_after_fit: Test the best checkpoint after ``fit``.
        extra_callback_groups: ``{key: callback class}`` added as always-present, configurable
            callbacks (``--<key>.*``), e.g. the fine-tuning schedule.
        **kwargs: Any ``LightningCLI`` argument.
    """

    def __init__(
        self,
        model_class: type[Tagger] | Callable[..., Tagger] | None = Tagger,
        datamodule_class: type[TagDataModule] = TagDataModule,
        *,
        subclass_mode_model: bool | None = None,
        test_after_fit: bool = False,
        extra_callback_groups: dict[str, type] | None = None,
        **kwargs: Any,
    ) -> None:
        self.test_after_fit = test_after_fit
        self.extra_callback_groups = dict(extra_callback_groups or {})
        self._weight_positives = False
        if subclass_mode_model is None:
            subclass_mode_model = isinstance(model_class, type)
        kwargs.setdefault("save_config_callback", _SaveConfigToLoggers)
        # a second run in the same save_dir (wandb's log_dir) replaces the previous config.yaml
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        kwargs.setdefault("auto_configure_optimizers", False)  # the tagger configures its own
        # checkpoints hold the model's own hyperparameters, as when it is built in Python
        kwargs.setdefault("load_from_checkpoint_support", False)
        defaults = dict(kwargs.pop("trainer_defaults", None) or {})
        callbacks = defaults.get("callbacks", [])
        callbacks = list(callbacks) if isinstance(callbacks, (list, tuple)) else [callbacks]
        defaults["callbacks"] = [*callbacks, ExactResume()]
        super().__init__(
            model_class,
            datamodule_class,
            subclass_mode_model=subclass_mode_model,
            trainer_defaults=defaults,
            **kwargs,
        )

    # ---------------------------------------------------------------------------- parser
    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults(
            {
                "checkpoint.monitor": "val/pr_auc_macro",
                "checkpoint.mode": "max",
                "checkpoint.save_last": True,
            }
        )
        for key, callback in self.extra_callback_groups.items():
            parser.add_lightning_class_args(callback, key)
        parser.add_argument(
            "--weight_positives",
            type=bool,
            default=False,
            help="Link the data module's pos_weight() (training tag counts) into the model's "
            "multi-label loss.",
        )
        model = "model.init_args." if self.subclass_mode_model else "model."
        parser.link_arguments("data.crop_samples", model + "crop_samples")
        parser.link_arguments("data.eval_crops", model + "eval_crops")
        for name in ("n_tags", "tags", "sample_rate"):  # known once the manifest is read
            parser.link_arguments("data." + name, model + name, apply_on="instantiate")
        parser.link_arguments(
            "data", model + "multi_label", compute_fn=_multi_label, apply_on="instantiate"
        )
        parser.link_arguments(
            "data",
            model + "pos_weight",
            compute_fn=_pos_weight_fn(lambda: self._weight_positives),
            apply_on="instantiate",
        )

    def before_instantiate_classes(self) -> None:
        self._weight_positives = bool(
            cli_config_value(self, self.config, "weight_positives", False)
        )

    def after_instantiate_classes(self) -> None:
        # Lightning writes last.ckpt only when a top-k checkpoint is written; resuming needs the
        # last epoch, so with `checkpoint.save_last` a second ModelCheckpoint (no monitor, top 1)
        # writes last.ckpt in the same folder at the end of every epoch.
        best = cli_config_value(self, self.config_init, "checkpoint")
        if not isinstance(best, ModelCheckpoint) or not best.save_last:
            return
        best.save_last = False
        last = ModelCheckpoint(
            dirpath=best.dirpath,
            filename=ModelCheckpoint.CHECKPOINT_NAME_LAST,
            monitor=None,
            save_top_k=1,
            save_weights_only=best.save_weights_only,
            enable_version_counter=False,
        )
        self.trainer.callbacks.append(last)

    def read_ckpt_path(self) -> None:
        """Rebuild the model of ``--ckpt_path FILE`` from the hyperparameters it holds.

        Lightning's version needs checkpoints written with its instantiator; musictag
        checkpoints name their class (``musictag.tagger_class``) and hold the preset's own
        arguments, which replace the config's model. The data module takes the checkpoint's tags
        (in its output order) and sample rate, and the model's data-dependent arguments stay
        linked from it. A fine-tuning model is a function of its own arguments (source
        checkpoint, learning rate ...), so nothing is read for it.
        """
        subcommand = self.config.get("subcommand")
        if not subcommand or not self.subclass_mode_model:
            return
        ckpt_path = self.config[subcommand].get("ckpt_path")
        if not ckpt_path or not Path(ckpt_path).is_file():
            return
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        name = (ckpt.get("musictag") or {}).get("tagger_class")
        classes = tagger_classes()
        if name not in classes:
            raise ValueError(
                f"{ckpt_path}: not a musictag checkpoint (tagger class {name!r}); pass one written "
                "by a recipe, by Trainer.save_checkpoint of a tagger or by `musictag convert-sota`"
            )
        cls = classes[name]
        hparams = ckpt.get("hyper_parameters") or {}
        init_args = {k: v for k, v in hparams.items() if k not in LINKED and not k.startswith("_")}
        model = {"class_path": f"{cls.__module__}.{cls.__qualname__}", "init_args": init_args}
        # The data follow the model: its tags in its output order (a vocabulary chosen from the
        # data's counts could order them otherwise and silently scramble every column), and its
        # sample rate (the data module refuses shards at another rate).
        data: dict[str, Any] = {}
        if hparams.get("tags"):
            data.update(tags=list(hparams["tags"]), top_k=None, include=None, exclude=None)
            data.update(min_count=1)
        if hparams.get("sample_rate"):
            data["sample_rate"] = int(hparams["sample_rate"])
        self.config = self.parser.parse_object(
            {subcommand: {"model": model, "data": data}}, self.config
        )

    # ---------------------------------------------------------------------------- running
    def after_fit(self) -> None:
        """Test the best checkpoint (the current weights if there is none) after ``fit``."""
        if not self.test_after_fit or self.trainer.interrupted:
            return
        callback = self.trainer.checkpoint_callback
        best = getattr(callback, "best_model_path", "") if callback is not None else ""
        ckpt_path = best if best and not self.trainer.fast_dev_run else None
        if ckpt_path is None:
            log.info("no best checkpoint: testing the weights at the end of training")
        self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path=ckpt_path)


def main(
    config: str | Path | Sequence[str | Path] | None = None,
    args: Sequence[str] | None = None,
    *,
    model_class: type[Tagger] | Callable[..., Tagger] | None = Tagger,
    **kwargs: Any,
) -> TagCLI:
    """Run a recipe: parse ``args``, then fit, validate, test or predict.

    Without a subcommand (first argument ``fit``, ``validate``, ``test`` or ``predict``) the run
    fits and then tests the best checkpoint. ``config`` files are the defaults of every
    subcommand; ``--config``, ``--data.*``, ``--model.*``, ``--trainer.*`` ... override them.

    Args:
        config: Default YAML config(s) of the recipe.
        args: Command-line arguments (default: ``sys.argv[1:]``).
        model_class: See :class:`TagCLI`.
        **kwargs: Further :class:`TagCLI` arguments.

    Returns:
        The CLI, holding ``trainer``, ``model`` and ``datamodule``.
    """
    args = list(sys.argv[1:] if args is None else args)
    help_only = bool(args) and args[0] in ("-h", "--help")
    test_after_fit = not help_only and (not args or args[0] not in SUBCOMMANDS)
    if test_after_fit:
        args = ["fit", *args]
    configs = [] if config is None else [config] if isinstance(config, (str, Path)) else config
    parser_kwargs = {
        sub: {"default_config_files": [str(c) for c in configs]} for sub in SUBCOMMANDS
    }
    parser_kwargs.update(kwargs.pop("parser_kwargs", None) or {})
    parser_kwargs.setdefault(
        "description",
        "A musictag recipe. Without a subcommand it fits and then tests the best checkpoint "
        "(the arguments are those of `fit`).",
    )
    with warnings.catch_warnings():
        # `args` is sys.argv[1:] (maybe with "fit" in front), not a second set of arguments.
        # sys.argv itself stays as given: DDP's launcher starts the other ranks with it.
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
        return TagCLI(
            model_class,
            args=args,
            parser_kwargs=parser_kwargs,
            test_after_fit=test_after_fit,
            **kwargs,
        )
