"""LogMelFrontend against librosa, and the properties checkpoints rely on."""

from __future__ import annotations

import librosa
import numpy as np
import pytest
import torch

from musictag.frontend import LogMelFrontend, WaveformFrontend, build_frontend


def _signal(seconds=1.5, sr=16000, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    tone = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.2 * np.sin(2 * np.pi * 1234.5 * t)
    return (tone + 0.05 * rng.standard_normal(t.size)).astype(np.float32)


@pytest.mark.parametrize(
    "settings",
    [
        dict(
            sample_rate=16000,
            n_fft=512,
            hop_length=256,
            n_mels=96,
            f_min=0.0,
            f_max=8000.0,
            mel_scale="htk",
            norm=None,
        ),
        dict(
            sample_rate=22050,
            n_fft=1024,
            hop_length=512,
            n_mels=128,
            f_min=30.0,
            f_max=11025.0,
            mel_scale="slaney",
            norm="slaney",
        ),
        dict(
            sample_rate=16000,
            n_fft=400,
            hop_length=160,
            n_mels=64,
            f_min=50.0,
            f_max=7600.0,
            mel_scale="htk",
            norm="slaney",
        ),
    ],
)
@pytest.mark.parametrize("stft", ["fft", "conv"])
def test_power_mel_matches_librosa(settings, stft):
    x = _signal(sr=settings["sample_rate"])
    fe = LogMelFrontend(**settings, standardize=False, stft=stft)
    ours = fe.power_mel(torch.from_numpy(x)[None])[0].double().numpy()
    ref = librosa.feature.melspectrogram(
        y=x.astype(np.float64),
        sr=settings["sample_rate"],
        n_fft=settings["n_fft"],
        hop_length=settings["hop_length"],
        n_mels=settings["n_mels"],
        fmin=settings["f_min"],
        fmax=settings["f_max"],
        htk=settings["mel_scale"] == "htk",
        norm=settings["norm"],
        power=2.0,
        center=True,
        pad_mode="reflect",
        window="hann",
    )
    assert ours.shape == ref.shape == (settings["n_mels"], fe.num_frames(x.size))
    # relative error where the reference carries energy (tiny bins are float32 round-off)
    mask = ref > ref.max() * 1e-6
    rel = np.abs(ours - ref)[mask] / ref[mask]
    assert rel.max() < 1e-3


def test_log_matches_power_to_db_and_top_db():
    x = _signal()
    fe = LogMelFrontend(standardize=False)
    p = fe.power_mel(torch.from_numpy(x)[None])[0].double().numpy()
    db = fe(torch.from_numpy(x)[None])[0, 0].double().numpy()
    np.testing.assert_allclose(
        db, librosa.power_to_db(p, ref=1.0, amin=1e-10, top_db=None), atol=1e-4
    )
    fe80 = LogMelFrontend(standardize=False, top_db=30.0)
    db80 = fe80(torch.from_numpy(x)[None])[0, 0].double().numpy()
    np.testing.assert_allclose(
        db80, librosa.power_to_db(p, ref=1.0, amin=1e-10, top_db=30.0), atol=1e-4
    )
    assert db80.min() >= db80.max() - 30.0 - 1e-4 and db.min() < db.max() - 30.0


def test_silence_hits_the_clamp_not_minus_infinity():
    fe = LogMelFrontend(standardize=False)
    out = fe(torch.zeros(1, 16000))
    assert torch.all(out == -100.0)


def test_buffers_exist_at_construction_and_restore_bit_identically():
    a = LogMelFrontend(n_mels=64)
    names = {n for n, _ in a.named_buffers()}
    assert {
        "mel.mel_basis",
        "mel.stft.wsin",
        "mel.stft.wcos",
        "bn.running_mean",
        "bn.running_var",
    } <= names
    a.bn.running_mean.fill_(-10.0)
    a.bn.running_var.fill_(300.0)
    b = LogMelFrontend(n_mels=64)
    b.load_state_dict(a.state_dict())
    a.eval(), b.eval()
    x = torch.from_numpy(_signal())[None]
    assert torch.equal(a(x), b(x))


def test_standardize_is_batchnorm_over_whole_spectrogram():
    fe = LogMelFrontend(standardize=True)
    assert isinstance(fe.bn, torch.nn.BatchNorm2d) and fe.bn.num_features == 1
    assert sum(p.numel() for p in fe.parameters()) == 2  # gamma and beta only: filters are buffers


def test_shapes_and_errors():
    fe = build_frontend("logmel", 16000, n_mels=40)
    assert fe(torch.zeros(3, 8000)).shape == (3, 1, 40, 1 + 8000 // 256)
    assert WaveformFrontend()(torch.zeros(2, 100)).shape == (2, 1, 100)
    with pytest.raises(ValueError, match="waveform of shape"):
        fe(torch.zeros(8000))
    with pytest.raises(ValueError, match="mel_scale"):
        LogMelFrontend(mel_scale="bark")
    with pytest.raises(ValueError, match="f_max"):
        LogMelFrontend(sample_rate=16000, f_max=9000.0)
    with pytest.raises(ValueError, match="unknown frontend"):
        build_frontend("cqt9", 16000)


def test_fft_and_conv_stft_agree_and_share_the_state_dict():
    x = torch.from_numpy(np.stack([_signal(seed=0), _signal(seed=1)]))
    for kw in [
        {},
        {"n_fft": 400, "win_length": 300, "hop_length": 160, "n_mels": 40},
        {"power": 1.0},
    ]:
        fft = LogMelFrontend(stft="fft", standardize=False, **kw)
        conv = LogMelFrontend(stft="conv", standardize=False, **kw)
        a, b = fft.power_mel(x), conv.power_mel(x)
        assert a.shape == b.shape
        assert ((a - b).abs().max() / b.abs().max()).item() < 1e-5  # measured ~1e-6
        assert (fft(x) - conv(x)).abs().max().item() < 1e-3  # dB
    auto, conv = LogMelFrontend(), LogMelFrontend(stft="conv")
    assert auto.state_dict().keys() == conv.state_dict().keys()
    conv.load_state_dict(auto.state_dict())  # checkpoints do not depend on the STFT path
    assert auto._use_fft(x) and not conv._use_fft(x)
    with pytest.raises(ValueError, match="stft must be"):
        LogMelFrontend(stft="cufft")


def test_features_stay_float32_under_autocast():
    x = torch.from_numpy(_signal())[None]
    fe = LogMelFrontend(standardize=False)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = fe(x)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, fe(x))


def test_gradients_flow_through_the_fft_path():
    x = torch.from_numpy(_signal(seconds=0.5))[None].requires_grad_()
    LogMelFrontend(stft="fft")(x).mean().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
