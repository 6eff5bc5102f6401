"""Every recipe runs ``fast_dev_run`` on a miniature of its collection, through its own ``main``."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path
from types import ModuleType

import pytest
import pytorch_lightning as pl
import yaml

from musictag import CRNNTagger
from musictag.callbacks import ExactResume, StagedLRDecay, TagPlots
from musictag.finetune import BackboneFreeze
from tests.conftest import REPO
from tests.recipes.miniature import (
    SR,
    one_torch_thread,  # noqa: F401 (autouse fixture)
    write_miniature,
)

RECIPES = REPO / "recipes"
NO_NYQUIST = ["--model.init_args.frontend_kwargs", '{"f_max": null}']  # 8-kHz miniatures

# recipe -> (collection, n_tags, single-label, preset, overrides that shrink the model)
# fmt: off
CASES = {
    "fma_transformer": ("fma", 163, False, "TransformerTagger", [
        "--model.init_args.n_mels", "16", "--model.init_args.d_model", "16",
        "--model.init_args.heads", "2", "--model.init_args.layers", "1",
        "--model.init_args.dim_feedforward", "16", "--model.init_args.mlp_dim", "16",
        "--data.crop_samples", "4000", *NO_NYQUIST]),
    "fma_gru": ("fma", 163, False, "GRUTagger", [
        "--model.init_args.n_mels", "16", "--model.init_args.d_model", "16",
        "--model.init_args.hidden", "8", "--model.init_args.layers", "1",
        "--model.init_args.mlp_dim", "16", "--data.crop_samples", "4000", *NO_NYQUIST]),
    "mtt_samplecnn": ("mtt", 50, False, "SampleCNNTagger", [
        "--model.init_args.channels", "[8, 8, 8, 8]", "--data.crop_samples", "729"]),
    "mtt_short_res": ("mtt", 50, False, "ShortChunkResNetTagger", [
        "--model.init_args.n_mels", "32", "--model.init_args.channels", "[4, 4, 4, 4, 4, 4, 4]",
        "--model.init_args.embed_dim", "8", "--data.crop_samples", "8192", *NO_NYQUIST]),
    "mtt_fcn": ("mtt", 50, False, "FCNTagger", [
        "--model.init_args.n_mels", "32", "--model.init_args.channels", "[4, 4, 4, 4, 4]",
        "--model.init_args.pools", "[[2, 2], [2, 2], [2, 2], [2, 2], [2, 2]]",
        "--data.crop_samples", "8192", *NO_NYQUIST]),
    "gtzan_crnn": ("gtzan", 10, True, "CRNNTagger", [
        "--model.init_args.n_mels", "16", "--model.init_args.channels", "[4, 4, 4, 4]",
        "--model.init_args.pools", "[[2, 2], [2, 2], [2, 2], [2, 2]]",
        "--model.init_args.gru_hidden", "8", "--data.crop_samples", "4000", *NO_NYQUIST]),
    "msd_musicnn": ("msd", 50, False, "MusicnnTagger", [
        "--model.init_args.n_mels", "16", "--model.init_args.backend_channels", "8",
        "--model.init_args.embed_dim", "16", "--model.init_args.horizontal_lengths", "[5, 5, 5]",
        "--data.crop_samples", "4000", *NO_NYQUIST]),
    "jamendo_short_res": ("jamendo", 50, False, "ShortChunkResNetTagger", [
        "--model.init_args.n_mels", "32", "--model.init_args.channels", "[4, 4, 4, 4, 4, 4, 4]",
        "--model.init_args.embed_dim", "8", "--data.crop_samples", "8192", *NO_NYQUIST]),
    # fine-tuning a 5-tag multi-label CRNN checkpoint on the 10 single-label GTZAN genres
    "finetune": ("gtzan", 10, True, "CRNNTagger", ["--data.crop_samples", "4000"]),
}
# fmt: on


def load_recipe(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"recipe_{name}", RECIPES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tiny_crnn(n_tags: int = 5, **kw) -> CRNNTagger:
    kw = {
        "n_mels": 16,
        "channels": (4, 4, 4, 4),
        "pools": ((2, 2), (2, 2), (2, 2), (2, 2)),
        "gru_hidden": 8,
        "sample_rate": SR,
        "crop_samples": 4000,
        "frontend_kwargs": {"f_max": None},
        **kw,
    }
    return CRNNTagger(n_tags=n_tags, **kw)


def save_checkpoint(model: pl.LightningModule, path: Path) -> Path:
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False)
    trainer.strategy.connect(model)
    trainer.save_checkpoint(path)
    return path


QUIET = [
    "--data.num_workers", "0", "--data.batch_size", "4", "--data.eval_crops", "2",
    "--trainer.accelerator", "cpu", "--trainer.enable_progress_bar", "false",
    "--trainer.enable_model_summary", "false",
]  # fmt: skip


@pytest.fixture(scope="module")
def collections(tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("collections")
    sizes = {"fma": (163, False), "mtt": (50, False), "gtzan": (10, True), "msd": (50, False)}
    sizes["jamendo"] = (50, False)
    return {
        name: write_miniature(tmp / name, n, single_label=single)
        for name, (n, single) in sizes.items()
    }


def test_every_recipe_has_a_config_and_a_test():
    scripts = sorted(p.stem for p in RECIPES.glob("*.py"))
    assert scripts == sorted(CASES)
    assert sorted(p.stem for p in (RECIPES / "configs").glob("*.yaml")) == scripts
    for name in scripts:
        config = yaml.safe_load((RECIPES / "configs" / f"{name}.yaml").read_text())
        assert config["checkpoint"]["dirpath"] == f"runs/{name}/checkpoints"
        assert config["trainer"]["logger"]["class_path"] == "musictag.lightning_cli.AutoWandbLogger"


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CASES))
def test_recipe_fast_dev_run(name, collections, tmp_path, monkeypatch):
    collection, n_tags, single, preset, shrink = CASES[name]
    monkeypatch.chdir(tmp_path)  # runs/<recipe>/ of the config lands here
    monkeypatch.setattr(sys, "argv", [f"{name}.py"])
    args = ["--data.root", str(collections[collection]), "--trainer.fast_dev_run", "true"]
    if name == "finetune":
        source = save_checkpoint(tiny_crnn(5, lr=3e-3), tmp_path / "source.ckpt")
        args += ["--model.checkpoint", str(source)]
    cli = load_recipe(name).main([*args, *QUIET, *shrink])

    model, trainer = cli.model, cli.trainer
    assert type(model).__name__ == preset
    # linked from the data module, never typed: tags, label kind, rate, crop and eval crops
    assert model.n_tags == n_tags == cli.datamodule.n_tags
    assert model.tags == cli.datamodule.tags
    assert model.hparams.multi_label is (not single)
    assert model.loss_name == ("ce" if single else "bce")
    assert model.sample_rate == SR and model.hparams.eval_crops == 2
    assert model.crop_samples == cli.datamodule.crop_samples
    assert trainer.state.finished and trainer.global_step == 1
    # no subcommand: the run was tested after fitting, on every test track of the miniature
    assert math.isfinite(model.test_results["test/pr_auc_macro"])
    assert ("test/accuracy" in model.test_results) is single
    kinds = {type(c) for c in trainer.callbacks}
    assert {ExactResume, TagPlots, pl.callbacks.ModelCheckpoint} <= kinds
    assert (StagedLRDecay in kinds) is (name == "mtt_samplecnn")
    assert (BackboneFreeze in kinds) is (name == "finetune")
