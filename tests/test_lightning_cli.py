"""The recipe command line (musictag.lightning_cli): subcommands, configs, overrides, links, logging."""

from __future__ import annotations

import sys

import pytest
import torch
import yaml

from musictag import load_tagger
from musictag.lightning_cli import AutoWandbLogger, main, wandb_api_key_configured
from tests.recipes.miniature import (
    one_torch_thread,  # noqa: F401 (autouse fixture)
    write_miniature,
)
from tests.recipes.test_recipes import CASES, QUIET, load_recipe

CONFIG = load_recipe("gtzan_crnn").CONFIG
SMALL = CASES["gtzan_crnn"][4]


@pytest.fixture
def gtzan(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["gtzan_crnn.py"])
    return write_miniature(tmp_path / "gtzan", 10, single_label=True)


def test_print_config_and_help(capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["gtzan_crnn.py"])
    with pytest.raises(SystemExit) as exit_:
        main(CONFIG, ["--print_config", "--data.batch_size", "7"])  # no subcommand: fit's
    assert exit_.value.code == 0
    config = yaml.safe_load(capsys.readouterr().out)
    assert config["model"]["class_path"] == "musictag.CRNNTagger"
    assert config["data"]["batch_size"] == 7 and config["data"]["root"] == "shards/gtzan"
    assert config["checkpoint"]["monitor"] == "val/pr_auc_macro"
    assert config["checkpoint"]["save_last"] is True
    # linked arguments are not options: they come from the data module
    for name in ("n_tags", "tags", "multi_label", "sample_rate", "crop_samples", "eval_crops"):
        assert name not in config["model"]["init_args"]
    with pytest.raises(SystemExit):
        main(CONFIG, ["--help"])
    text = capsys.readouterr().out
    assert "Without a subcommand it fits" in text
    assert all(sub in text for sub in ("fit", "validate", "test", "predict"))


def test_auto_wandb_logger_is_offline_without_an_api_key(tmp_path, monkeypatch):
    netrc = tmp_path / "netrc"
    netrc.write_text("machine example.org login x password y\n")
    monkeypatch.setenv("NETRC", str(netrc))
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_BASE_URL", raising=False)
    assert not wandb_api_key_configured()
    logger = AutoWandbLogger(project="musictag", save_dir=str(tmp_path / "runs"))
    assert logger._offline and (tmp_path / "runs").is_dir()  # nothing started yet
    netrc.write_text("machine api.wandb.ai login user password 0123456789abcdef\n")
    assert wandb_api_key_configured()
    assert not AutoWandbLogger(project="musictag", save_dir=str(tmp_path))._offline
    assert AutoWandbLogger(offline=True, save_dir=str(tmp_path))._offline
    netrc.write_text("")
    monkeypatch.setenv("WANDB_API_KEY", "0123456789abcdef")
    assert wandb_api_key_configured()


@pytest.mark.slow
def test_config_file_overrides_logging_and_subcommands(gtzan, tmp_path):
    run = tmp_path / "run.yaml"
    run.write_text(
        yaml.safe_dump(
            {
                "trainer": {"max_epochs": 2, "log_every_n_steps": 1},
                "model": {"init_args": {"lr": 0.005}},
                "data": {"batch_size": 2},
            }
        )
    )
    args = [
        "--config", str(run), "--data.root", str(gtzan), *QUIET, *SMALL, "--data.batch_size", "4",
        "--trainer.logger", "CSVLogger", "--trainer.logger.save_dir", "logs",
        "--checkpoint.dirpath", "ckpt",
    ]  # fmt: skip
    cli = main(CONFIG, ["fit", *args])
    assert cli.datamodule.batch_size == 4  # the command line beats --config beats the recipe
    assert cli.model.hparams.lr == 0.005 and cli.trainer.max_epochs == 2
    assert cli.model.test_results == {}  # `fit` only fits
    log_dir = tmp_path / "logs" / "gtzan_crnn" / "version_0"  # name kept from the recipe
    assert (log_dir / "config.yaml").is_file() and (log_dir / "metrics.csv").is_file()
    hparams = yaml.safe_load((log_dir / "hparams.yaml").read_text())
    assert hparams["config"]["data"]["batch_size"] == 4  # the resolved config, logged
    assert hparams["config"]["trainer"]["logger"]["class_path"].endswith("CSVLogger")
    figures = sorted(p.name for p in (log_dir / "figures").iterdir())
    assert figures == [
        "val_pr_curves-epoch=000.png", "val_pr_curves-epoch=001.png",
        "val_tags_over_time-epoch=000.png", "val_tags_over_time-epoch=001.png",
    ]  # fmt: skip
    best = cli.trainer.checkpoint_callback.best_model_path
    assert (tmp_path / "ckpt" / "last.ckpt").is_file() and best.startswith(str(tmp_path / "ckpt"))
    last = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=True)
    assert last["epoch"] == 1 and last["musictag"]["tagger_class"] == "CRNNTagger"
    assert load_tagger(best).tags == cli.datamodule.tags  # the preset's own hyperparameters

    # test / validate / predict a checkpoint without the size overrides: the model is rebuilt
    # from the hyperparameters in the checkpoint, the data-dependent ones from the data module
    base = ["--data.root", str(gtzan), *QUIET, "--trainer.logger", "false", "--ckpt_path", best]
    test = main(CONFIG, ["test", *base])
    assert test.model.hparams.channels == [4, 4, 4, 4] and test.model.hparams.lr == 0.005
    assert 0 <= test.model.test_results["test/accuracy"] <= 1
    validate = main(CONFIG, ["validate", *base])
    assert "val/pr_auc_macro" in validate.trainer.callback_metrics
    # the data follow the checkpoint's tag order, not the order of their own counts
    ckpt = torch.load(best, weights_only=True)
    ckpt["hyper_parameters"]["tags"] = tags = cli.datamodule.tags[::-1]
    torch.save(ckpt, tmp_path / "reversed.ckpt")
    base[-1] = str(tmp_path / "reversed.ckpt")
    predict = main(CONFIG, ["predict", *base])
    assert predict.datamodule.tags == predict.model.tags == tags


@pytest.mark.slow
def test_any_preset_and_weighted_positives(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["msd.py"])
    root = write_miniature(tmp_path / "multi", 6)
    args = [
        "fit", "--data.root", str(root), *QUIET, "--trainer.fast_dev_run", "true",
        "--model", "GRUTagger", *CASES["fma_gru"][4], "--weight_positives", "true",
    ]  # fmt: skip
    cli = main(CONFIG, args)
    assert type(cli.model).__name__ == "GRUTagger" and cli.model.hparams.multi_label
    expected = cli.datamodule.pos_weight()
    assert cli.model.hparams.pos_weight == pytest.approx(expected.tolist())
    assert torch.equal(cli.model.criterion.pos_weight, expected)
