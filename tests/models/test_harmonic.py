"""Harmonic CNN: centre frequencies, filterbank, the STFT against librosa, shape arithmetic."""

from __future__ import annotations

import librosa
import numpy as np
import pytest
import torch

from musictag.models.harmonic import HarmonicCNN, HarmonicSTFT, harmonic_center_frequencies


def test_center_frequencies_follow_the_published_note_math():
    f0, level = harmonic_center_frequencies(16000, 6, 2)
    assert level == 128  # C1 (MIDI 24) to E6 (MIDI 88), 2 steps per semitone
    assert f0.dtype == np.float32 and f0.shape == (6 * 128,)
    c1 = 440.0 * 2 ** ((24 - 69) / 12)
    np.testing.assert_allclose(f0[:3], [c1, c1 * 2 ** (1 / 24), c1 * 2 ** (2 / 24)], rtol=1e-6)
    np.testing.assert_allclose(f0[0], 32.703197, rtol=1e-6)
    np.testing.assert_allclose(
        f0[127], 440.0 * 2 ** ((87.5 - 69) / 12), rtol=1e-6
    )  # last pitch: E6 - 1/2 semitone
    np.testing.assert_allclose(f0[128:256], 2 * f0[:128], rtol=1e-6)  # harmonic-major layout
    np.testing.assert_allclose(f0[640:], 6 * f0[:128], rtol=1e-6)
    assert f0.max() < 8000


def test_buffers_and_parameters_are_pinned_at_construction():
    h = HarmonicSTFT()
    state = h.state_dict()
    assert set(state) >= {"f0", "fft_bins", "spec.window", "bw_Q"}
    assert [n for n, _ in h.named_parameters()] == ["bw_Q", "bn.weight", "bn.bias"]
    assert torch.equal(state["f0"], torch.from_numpy(harmonic_center_frequencies()[0]))
    assert torch.equal(state["spec.window"], torch.hann_window(512))
    fixed = HarmonicSTFT(learn_bw="fix", standardize=False)
    assert list(fixed.parameters()) == [] and "bw_Q" in fixed.state_dict()


def test_filterbank_triangles_peak_at_their_centre():
    h = HarmonicSTFT()
    fb = h.harmonic_filterbank()
    assert fb.shape == (257, 768)
    assert fb.min() >= 0 and fb.max() <= 1
    nearest = (h.fft_bins[:, None] - h.f0[None]).abs().argmin(0)
    # a few low filters are narrower than the 31.25-Hz bin spacing and fall between bins (as published)
    live = fb.amax(0) > 0
    assert live.sum() == 767
    assert torch.equal(fb.argmax(0)[live], nearest[live])
    # bandwidth (0.1079 f0 + 24.7) / Q: a larger Q narrows every filter
    h.bw_Q.data.fill_(2.0)
    assert (h.harmonic_filterbank() > 0).sum() < (fb > 0).sum()


def test_forward_matches_librosa_power_spectrogram_and_filters():
    torch.manual_seed(0)
    x = torch.randn(2, 16000) * 0.1
    h = HarmonicSTFT(standardize=False)
    # an independent STFT: librosa's periodic Hann, centred with reflect padding, as published
    stft = librosa.stft(x.numpy(), n_fft=512, hop_length=256, window="hann", pad_mode="reflect")
    spec = torch.from_numpy(np.abs(stft) ** 2).float()  # [2, 257, 63]
    ref = (spec.transpose(1, 2) @ h.harmonic_filterbank()).transpose(1, 2).reshape(2, 6, 128, -1)
    ref = 10 * torch.log10(ref.clamp(min=1e-10))
    out = h(x)
    assert out.shape == (2, 6, 128, 63) and h.num_frames(16000) == 63
    torch.testing.assert_close(out, ref, atol=1e-3, rtol=1e-4)


def test_backbone_stage_arithmetic_on_the_published_input():
    net = HarmonicCNN(n_channels=4).eval()
    with torch.no_grad():
        emb, stages = net.forward_intermediates(torch.randn(1, 1, 80000))
    shapes = [tuple(s.shape[-2:]) for s in stages]
    assert shapes == [(64, 156), (32, 78), (16, 39), (8, 19), (4, 9), (2, 3), (1, 1)]
    assert emb.shape == (1, 8) and net.embed_dim == 8


def test_external_frontend_gives_the_same_output():
    """The switch to a registered ``harmonic_stft`` frontend keeps outputs (and counts) unchanged."""
    torch.manual_seed(0)
    owned = HarmonicCNN(n_channels=4).eval()
    external = HarmonicCNN(n_channels=4, harmonic_frontend=False).eval()
    external.load_state_dict(
        {k: v for k, v in owned.state_dict().items() if not k.startswith("hstft")}
    )
    frontend = HarmonicSTFT().eval()
    frontend.bw_Q.data.copy_(owned.hstft.bw_Q.data)
    frontend.bn.load_state_dict(owned.hstft_bn.state_dict())
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert n(owned) == n(external) + n(frontend)
    x = torch.randn(2, 80000)
    with torch.no_grad():
        torch.testing.assert_close(owned(x.unsqueeze(1)), external(frontend(x)))


def test_bad_settings_are_rejected():
    with pytest.raises(ValueError, match="learn_bw"):
        HarmonicSTFT(learn_bw="all")
    with pytest.raises(ValueError, match="batch, samples"):
        HarmonicSTFT()(torch.randn(1, 1, 1000))


def test_harmonic_stft_settings_are_named_arguments():
    from musictag.presets import HarmonicCNNTagger

    model = HarmonicCNNTagger(n_channels=4, hop_length=128, bw_Q=2.0)
    assert model.backbone.hstft.spec.hop_length == 128
    assert float(model.backbone.hstft.bw_Q) == 2.0
    # the way of musictag < 0.2, still in old checkpoints' hyperparameters
    with pytest.warns(DeprecationWarning, match="hop_length, bw_Q and amin by name"):
        old = HarmonicCNNTagger(n_channels=4, frontend_kwargs={"hop_length": 128, "bw_Q": 2.0})
    assert old.backbone.hstft.spec.hop_length == 128 and float(old.backbone.hstft.bw_Q) == 2.0
    assert old.hparams.hop_length == 128 and old.hparams.frontend_kwargs is None
