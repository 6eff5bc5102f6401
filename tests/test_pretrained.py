"""Published weights of Won et al. (2020): conversion reproduces the original outputs."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from musictag import load_tagger, model_entry
from musictag.pretrained import (
    MTG_JAMENDO_TAGS,
    SOTA_CONFIGS,
    convert_sota,
    file_sha256,
    list_pretrained,
    map_sota_state_dict,
    pretrained_config,
    save_sota_checkpoint,
    sota_weights_path,
)

NAMES = list_pretrained()
TOL = 1e-4  # on the sigmoid scores; the measured errors are below 5e-7 (docs/pretrained.md)


@pytest.fixture(scope="module")
def sota(shared_dir):
    return shared_dir / "pretrained" / "sota"


@pytest.fixture(scope="module")
def converted(sota):
    """Each published checkpoint converted once, with the reference input/output and our scores."""
    cache = {}

    def get(name):
        if name not in cache:
            cfg = SOTA_CONFIGS[name]
            model = convert_sota(
                sota_weights_path(sota, cfg.arch, cfg.dataset), cfg.arch, cfg.dataset
            )
            ref = np.load(sota / "refs" / f"{name}.npz")
            x = torch.from_numpy(ref["input"])
            with torch.no_grad():
                scores = model.predict_proba(x)
            cache[name] = (model, ref, x, scores)
        return cache[name]

    return get


def test_configs_are_consistent(sota):
    assert NAMES == sorted(
        [
            "mtat_fcn",
            "mtat_crnn",
            "mtat_musicnn",
            "msd_fcn",
            "msd_crnn",
            "jamendo_fcn",
            "jamendo_crnn",
            "jamendo_musicnn",
        ]
    )
    mtat_tags = [str(t) for t in np.load(sota / "split" / "mtat" / "tags.npy")]
    for cfg in SOTA_CONFIGS.values():
        assert len(cfg.tags) == 50 == len(set(cfg.tags))
        assert cfg.params == model_entry(cfg.model).reference_params
        assert (
            cfg.sample_rate == 16000 and cfg.frontend.n_mels == 96 and cfg.frontend.top_db is None
        )
        if cfg.dataset == "mtat":
            assert list(cfg.tags) == mtat_tags
    # the Jamendo gotcha: LabelBinarizer sorts the classes, so outputs are alphabetical
    assert list(MTG_JAMENDO_TAGS) == sorted(MTG_JAMENDO_TAGS)
    assert pretrained_config("musicnn", "jamendo").input_samples == 48000
    with pytest.raises(ValueError, match="no published"):
        pretrained_config("musicnn", "msd")


@pytest.mark.parametrize("name", NAMES)
def test_sha256_of_shared_files(sota, name):
    cfg = SOTA_CONFIGS[name]
    path = sota / cfg.file
    assert path.stat().st_size == cfg.size_bytes
    assert file_sha256(path) == cfg.sha256


@pytest.mark.parametrize("name", NAMES)
def test_outputs_match_original(converted, name, record_property):
    model, ref, _, scores = converted(name)
    assert model.tags == [str(t) for t in ref["tags"]]
    err = float(np.abs(scores.numpy() - ref["output"]).max())
    record_property("max_abs_error", err)
    print(f"{name}: max |sigmoid - reference| = {err:.3g}")
    assert err <= TOL
    assert sum(p.numel() for p in model.parameters()) == SOTA_CONFIGS[name].params


@pytest.mark.parametrize("name", NAMES)
def test_lightning_checkpoint_round_trip(converted, sota, name, tmp_path):
    model, _, x, scores = converted(name)
    cfg = SOTA_CONFIGS[name]
    out = save_sota_checkpoint(
        sota / cfg.file, cfg.arch, cfg.dataset, tmp_path / "sub" / f"{name}.ckpt"
    )
    ckpt = torch.load(out, map_location="cpu", weights_only=True)
    assert ckpt["musictag"]["tagger_class"] == type(model).__name__
    assert ckpt["musictag"]["source"]["sha256"] == cfg.sha256
    restored = load_tagger(out)
    assert type(restored) is type(model) and not restored.training
    assert restored.tags == list(cfg.tags) and restored.crop_samples == cfg.input_samples
    same_class = type(model).load_from_checkpoint(out).eval()
    for other in (restored, same_class):
        sd, osd = model.state_dict(), other.state_dict()
        assert sd.keys() == osd.keys() and all(torch.equal(sd[k], osd[k]) for k in sd)
    with torch.no_grad():  # one row keeps it quick; the state_dicts are already equal
        assert torch.equal(restored.predict_proba(x[:1]), model.predict_proba(x[:1]))


def test_stored_filterbank_is_used(converted, sota):
    model, *_ = converted("mtat_musicnn")
    fb = torch.load(sota / "mtat/musicnn/best_model.pth", map_location="cpu", weights_only=True)[
        "spec.mel_scale.fb"
    ]
    assert torch.equal(model.frontend.mel.mel_basis, fb.t())
    assert model.frontend.hop_length == 256 and model.frontend.top_db is None


def test_frontend_matches_float64_stft(converted):
    """nnAudio's float32 conv-STFT log-mel vs a float64 torch.stft one: the error budget."""
    model, _, x, _ = converted("mtat_musicnn")
    fe = model.frontend
    with torch.no_grad():
        db32 = 10 * torch.log10(torch.clamp(fe.power_mel(x), min=1e-10)).double()
        window = torch.hann_window(512, dtype=torch.float64)
        spec = torch.stft(
            x.double(),
            512,
            256,
            window=window,
            center=True,
            pad_mode="reflect",
            return_complex=True,
        )
        mel = fe.mel.mel_basis.double() @ spec.abs().pow(2)
        db64 = 10 * torch.log10(torch.clamp(mel, min=1e-10))
    assert (db32 - db64).abs().max() < 1e-3  # dB; measured 3.7e-5


def test_wrong_arch_names_the_keys(sota):
    path = sota / "mtat" / "crnn" / "best_model.pth"
    with pytest.raises(ValueError, match="SHA-256"):
        convert_sota(path, "fcn", "mtat")
    with pytest.raises(ValueError) as err:
        convert_sota(path, "fcn", "mtat", verify_sha256=False)
    msg = str(err.value)
    assert "layer5.weight_ih_l0" in msg  # unused source key
    assert "backbone.layer5.conv.weight" in msg  # unfilled target key
    assert "'crnn'" in msg  # the hint


def test_modified_file_fails_sha256(sota, tmp_path):
    copy = tmp_path / "best_model.pth"
    shutil.copyfile(sota / "mtat" / "musicnn" / "best_model.pth", copy)
    with open(copy, "ab") as f:
        f.write(b"\0")
    with pytest.raises(ValueError, match="differs from the published mtat_musicnn"):
        convert_sota(copy, "musicnn", "mtat")


def test_window_must_be_periodic_hann(sota):
    cfg = pretrained_config("musicnn", "mtat")
    sd = torch.load(sota / cfg.file, map_location="cpu", weights_only=True)
    target = cfg.build().state_dict()
    assert map_sota_state_dict(sd, target, "musicnn").keys() == target.keys()
    sd["spec.spectrogram.window"] = torch.hann_window(512, periodic=False)
    with pytest.raises(ValueError, match="periodic Hann"):
        map_sota_state_dict(sd, target, "musicnn")
