"""Every registered model gets the same checks (timm-style, parametrised over list_models())."""

from __future__ import annotations

import inspect
import re

import pytest
import pytorch_lightning as pl
import torch

from musictag import list_models, load_tagger, model_entry
from musictag.models import BACKBONES

ALL = list_models()
N_TAGS = 50


def _inputs(model, batch=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, model.crop_samples, generator=g) * 0.1


@pytest.fixture(scope="module", params=ALL)
def named(request):
    torch.manual_seed(0)
    return request.param, model_entry(request.param).create(n_tags=N_TAGS)


@pytest.fixture
def model(named):
    return named[1]


def test_registry_lists_models():
    assert "crnn" in ALL
    assert ALL == sorted(ALL)
    assert list_models("crnn*") and all(n.startswith("crnn") for n in list_models("crnn*"))


def test_forward_shape(model):
    model.eval()
    with torch.no_grad():
        out = model(_inputs(model))
    assert out.shape == (2, N_TAGS)
    assert torch.isfinite(out).all()


def test_backward_reaches_every_parameter(model):
    model.train()
    model.zero_grad()
    model(_inputs(model)).sum().backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"no gradient for {missing}"


def test_embedding_shapes(model):
    model.eval()
    with torch.no_grad():
        x = _inputs(model)
        emb = model.embed(x)
        multi = model.embed(x, layers="all")
    assert emb.shape == (2, model.backbone.embed_dim)
    assert multi.shape[0] == 2 and multi.shape[1] > emb.shape[1]


@pytest.mark.parametrize("name", [n for n in ALL if model_entry(n).reference_params is not None])
def test_parameter_count_matches_published(name):
    torch.manual_seed(0)
    model = model_entry(name).create(n_tags=N_TAGS)
    assert sum(p.numel() for p in model.parameters()) == model_entry(name).reference_params


def test_published_counts_cover_the_published_architectures():
    with_counts = {n for n in ALL if model_entry(n).reference_params is not None}
    assert {
        "fcn",
        "crnn",
        "musicnn",
        "musicnn_msd",
        "samplecnn",
        "samplecnn_se",
        "short_chunk_cnn",
        "short_chunk_resnet",
        "harmonic_cnn",
        "cnnsa",
    } <= with_counts


def test_training_step_and_checkpoint_round_trip(model, tmp_path):
    torch.manual_seed(0)
    x = _inputs(model, batch=2)
    y = torch.zeros(2, N_TAGS)
    y[0, 0] = y[1, 1] = 1
    loader = torch.utils.data.DataLoader(
        [{"audio": x[i], "target": y[i]} for i in range(2)], batch_size=2
    )
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainer = pl.Trainer(
        max_steps=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        default_root_dir=tmp_path,
    )
    trainer.fit(model, train_dataloaders=loader)
    changed = [n for n, p in model.named_parameters() if not torch.equal(p, before[n])]
    assert changed, "one optimiser step changed no parameter"
    path = tmp_path / "m.ckpt"
    trainer.save_checkpoint(path)
    restored = load_tagger(path)
    assert type(restored) is type(model)
    assert restored.tags == model.tags and restored.sample_rate == model.sample_rate
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), restored(x))


# backbone settings a preset does not expose: the frontend decides them
_NOT_PRESET_SETTINGS = {"in_channels", "n_mels", "harmonic_frontend"}


def _plain(value):
    return [_plain(v) for v in value] if isinstance(value, (list, tuple)) else value


@pytest.mark.parametrize("preset", sorted({model_entry(n).tagger for n in ALL}, key=str))
def test_preset_exposes_every_backbone_setting_with_its_default(preset):
    preset_params = inspect.signature(preset).parameters
    backbone = BACKBONES[preset.BACKBONE]
    for name, param in inspect.signature(backbone).parameters.items():
        if name in _NOT_PRESET_SETTINGS:
            continue
        assert name in preset_params, f"{preset.__name__} hides {backbone.__name__}'s {name!r}"
        assert _plain(preset_params[name].default) == _plain(param.default), (
            f"{preset.__name__}({name}={preset_params[name].default!r}) differs from "
            f"{backbone.__name__}({name}={param.default!r})"
        )


def test_family_names_are_one_name():
    # registry name == backbone name == class name in snake_case without "Tagger"
    for name in ALL:
        preset = model_entry(name).tagger
        assert name.startswith(preset.BACKBONE), (name, preset.BACKBONE)
        snake = re.sub(r"(?<=[a-z])(?=[A-Z])", "_", preset.__name__.removesuffix("Tagger")).lower()
        assert snake.replace("_", "") == preset.BACKBONE.replace("_", ""), (preset, snake)


@pytest.mark.parametrize("preset", sorted({model_entry(n).tagger for n in ALL}, key=str))
def test_lightning_cli_sees_the_preset_arguments(preset):
    # LightningCLI (jsonargparse) follows **kwargs into Tagger, minus what the preset fills itself
    from jsonargparse import ArgumentParser

    parser = ArgumentParser()
    parser.add_class_arguments(preset, "model")
    names = {k.removeprefix("model.") for k in vars(parser.get_defaults().model)}
    assert {"lr", "tags", "head_dropout"} <= names
    assert not {"backbone", "backbone_kwargs", "frontend"} & names
