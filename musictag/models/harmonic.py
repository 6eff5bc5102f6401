"""Harmonic CNN (Won et al. 2020, "Data-driven harmonic filters for audio representation
learning"): a harmonic-STFT frontend with learnable triangular filters, then a residual CNN.

The frontend computes a power STFT and applies ``n_harmonic × level`` triangular filters centred
on the harmonics ``h · f0`` of semitone-spaced pitches ``f0`` (``semitone_scale`` steps per
semitone from C1), whose bandwidth ``(0.1079 f + 24.7) / Q`` has one learnable ``Q``. The result
is a ``[batch, n_harmonic, level, frames]`` tensor: one channel per harmonic, pitch-aligned across
channels, so a 3×3 conv sees a pitch and its harmonics at once. With the defaults the model is the
published ``HarmonicCNN`` (3,631,551 parameters with a 50-tag head, including ``bw_Q`` and the
frontend ``BatchNorm2d(6)``).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .base import Backbone
from .blocks import ConvBlock2d
from .shortchunk import Res2dMP, global_max

__all__ = ["HarmonicCNN", "HarmonicSTFT", "harmonic_center_frequencies"]

_BW_ALPHA = 0.1079
_BW_BETA = 24.7


def harmonic_center_frequencies(
    sample_rate: int = 16000, n_harmonic: int = 6, semitone_scale: int = 2
) -> tuple[np.ndarray, int]:
    """Centre frequencies of the harmonic filterbank, as in the published ``initialize_filterbank``.

    Pitches run from C1 up to (excluding) the note nearest ``sample_rate / (2 · n_harmonic)`` (so
    the highest harmonic stays below Nyquist), ``semitone_scale`` steps per semitone; harmonic
    ``h`` (1-based) of every pitch follows, harmonic-major.

    Args:
        sample_rate: Sample rate in Hz.
        n_harmonic: Number of harmonics.
        semitone_scale: Filters per semitone.

    Returns:
        ``(f0, level)``: float32 array ``[n_harmonic * level]`` in Hz, and the number of pitches.
        For the defaults ``level = 128`` (C1 = MIDI 24 to E6 = MIDI 88) and ``f0[0] = 32.703 Hz``.
    """
    low_midi = 24  # C1
    # the nearest note, as librosa.hz_to_note rounds it
    high_midi = int(np.round(12 * np.log2(sample_rate / (2 * n_harmonic) / 440.0) + 69))
    level = (high_midi - low_midi) * semitone_scale
    if level <= 0:
        raise ValueError(
            f"sample_rate={sample_rate} with n_harmonic={n_harmonic} leaves no pitch above C1"
        )
    midi = np.linspace(low_midi, high_midi, level + 1)
    hz = 440.0 * (2.0 ** ((midi[:-1] - 69.0) / 12.0))
    f0 = np.concatenate([hz * (h + 1) for h in range(n_harmonic)])
    return f0.astype("float32"), level


class _PowerSpectrogram(nn.Module):
    """Power STFT of torchaudio 0.3.0's ``Spectrogram`` (periodic Hann, centred, reflect padding,
    ``re² + im²``); the window is a buffer named ``window`` as in the published state_dict."""

    def __init__(self, n_fft: int = 512, hop_length: int | None = None) -> None:
        super().__init__()
        self.n_fft = n_fft
        self.hop_length = hop_length or n_fft // 2
        self.register_buffer("window", torch.hann_window(n_fft))

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        """``[batch, samples]`` → ``[batch, n_fft // 2 + 1, 1 + samples // hop_length]``."""
        spec = torch.stft(
            waveform.float(),
            self.n_fft,
            hop_length=self.hop_length,
            win_length=self.n_fft,
            window=self.window,
            center=True,
            pad_mode="reflect",
            normalized=False,
            onesided=True,
            return_complex=True,
        )
        return torch.view_as_real(spec).pow(2).sum(-1)


class HarmonicSTFT(nn.Module):
    """Harmonic spectrogram: power STFT → learnable triangular harmonic filters → dB → optional BN.

    Usable as a Tagger frontend (``[batch, samples]`` in) and as the first module of
    :class:`HarmonicCNN`. Every constant (window, centre frequencies, FFT bin frequencies) is a
    buffer created at construction. The dB step is ``10 · log10(clamp(x, 1e-10))`` (torchaudio's
    ``AmplitudeToDB()``: reference 1, no ``top_db``).

    Args:
        sample_rate: Input sample rate in Hz.
        n_fft: FFT size (= window length); hop is ``n_fft // 2`` unless ``hop_length`` is given.
        hop_length: Hop between frames in samples.
        n_harmonic: Number of harmonics (output channels).
        semitone_scale: Filters per semitone.
        bw_Q: Initial bandwidth quality factor ``Q``.
        learn_bw: ``"only_Q"`` (``Q`` is a parameter, as published) or ``"fix"`` (a buffer).
        standardize: Apply a learned ``BatchNorm2d(n_harmonic)`` (named ``bn``) to the dB values.
        amin: Floor applied before the logarithm.

    Shape:
        input: ``[batch, samples]``.
        output: ``[batch, n_harmonic, level, 1 + samples // hop_length]`` (``level = 128`` by
        default; 313 frames for the published 80,000-sample input).
    """

    def __init__(
        self,
        sample_rate: int = 16000,
        n_fft: int = 512,
        hop_length: int | None = None,
        n_harmonic: int = 6,
        semitone_scale: int = 2,
        bw_Q: float = 1.0,
        learn_bw: str = "only_Q",
        standardize: bool = True,
        amin: float = 1e-10,
    ) -> None:
        super().__init__()
        if learn_bw not in ("only_Q", "fix"):
            raise ValueError(f"learn_bw must be 'only_Q' or 'fix', got {learn_bw!r}")
        self.sample_rate = sample_rate
        self.n_harmonic = n_harmonic
        self.amin = amin
        self.spec = _PowerSpectrogram(n_fft, hop_length)
        f0, self.level = harmonic_center_frequencies(sample_rate, n_harmonic, semitone_scale)
        self.register_buffer("f0", torch.from_numpy(f0))
        n_bins = n_fft // 2 + 1
        self.register_buffer("fft_bins", torch.linspace(0, sample_rate // 2, n_bins))
        q = torch.tensor([bw_Q], dtype=torch.float32)
        if learn_bw == "only_Q":
            self.bw_Q = nn.Parameter(q)
        else:
            self.register_buffer("bw_Q", q)
        self.bn = nn.BatchNorm2d(n_harmonic) if standardize else None

    @property
    def out_channels(self) -> int:
        """Channels of the output (``n_harmonic``)."""
        return self.n_harmonic

    def num_frames(self, num_samples: int) -> int:
        """Number of output frames for an input of ``num_samples`` samples."""
        return 1 + num_samples // self.spec.hop_length

    def harmonic_filterbank(self) -> torch.Tensor:
        """The triangular filters for the current ``bw_Q``: ``[n_fft // 2 + 1, n_harmonic * level]``."""
        bw = ((_BW_ALPHA * self.f0 + _BW_BETA) / self.bw_Q).unsqueeze(0)
        f0 = self.f0.unsqueeze(0)
        bins = self.fft_bins.unsqueeze(1)
        up_slope = bins @ (2 / bw) + 1 - (2 * f0 / bw)
        down_slope = bins @ (-2 / bw) + 1 + (2 * f0 / bw)
        return torch.clamp(torch.minimum(down_slope, up_slope), min=0.0)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        """Harmonic dB spectrogram of ``[batch, samples]`` → ``[batch, n_harmonic, level, frames]``."""
        if waveform.dim() != 2:
            raise ValueError(
                f"expected a waveform of shape [batch, samples], got {tuple(waveform.shape)}"
            )
        # float32 throughout: under autocast the filterbank matmul would lose precision in the log
        with torch.autocast(device_type=waveform.device.type, enabled=False):
            spec = self.spec(waveform.float())  # [B, bins, T]
            fb = self.harmonic_filterbank().float()
            harmonic = (spec.transpose(1, 2) @ fb).transpose(1, 2)
            b, _, t = harmonic.shape
            harmonic = harmonic.reshape(b, self.n_harmonic, self.level, t)
            x = 10.0 * torch.log10(torch.clamp(harmonic, min=self.amin))
        if self.bn is not None:
            x = self.bn(x)
        return x

    def extra_repr(self) -> str:
        return f"sample_rate={self.sample_rate}, n_harmonic={self.n_harmonic}, level={self.level}"


class HarmonicCNN(Backbone):
    """Harmonic CNN: (harmonic frontend →) Conv_2d, 3 × Res_2d_mp, Conv_2d, 2 × Res_2d_mp (pool
    (2, 3)), global max, ``dense1 → bn → ReLU`` (the embedding).

    By default the backbone owns its frontend, with the published names ``hstft`` (the
    :class:`HarmonicSTFT` without BatchNorm) and ``hstft_bn`` (``BatchNorm2d(n_harmonic)``), and
    takes the waveform from the Tagger's ``"waveform"`` frontend. With ``harmonic_frontend=False``
    it takes an already computed ``[batch, n_harmonic, level, frames]`` harmonic spectrogram
    instead (from a :class:`HarmonicSTFT` used as the Tagger frontend).

    Args:
        n_channels: Channels of layers 1-4 (layers 5-7 and the embedding have twice as many).
        sample_rate: Input sample rate in Hz (frontend).
        n_fft: FFT size (frontend).
        n_harmonic: Number of harmonics (frontend; input channels of ``layer1``).
        semitone_scale: Filters per semitone (frontend).
        learn_bw: ``"only_Q"`` or ``"fix"`` (frontend).
        hop_length: Hop of the harmonic STFT (frontend); ``None``: ``n_fft // 2``.
        bw_Q: Initial bandwidth factor ``Q`` of the harmonic filters (frontend).
        amin: Floor before the logarithm (frontend).
        harmonic_frontend: Own the harmonic frontend (waveform input) or not (spectrogram input).

    Shape:
        input: ``[batch, 1, samples]`` (``harmonic_frontend=True``) or
        ``[batch, n_harmonic, level, frames]``; output: ``[batch, 2 * n_channels]``.
        For the published 80,000-sample input, (freq, time) goes 128×313 → 64×156 → 32×78 →
        16×39 → 8×19 → 4×9 → 2×3 → 1×1.
    """

    def __init__(
        self,
        n_channels: int = 128,
        sample_rate: int = 16000,
        n_fft: int = 512,
        n_harmonic: int = 6,
        semitone_scale: int = 2,
        learn_bw: str = "only_Q",
        hop_length: int | None = None,
        bw_Q: float = 1.0,
        amin: float = 1e-10,
        harmonic_frontend: bool = True,
    ) -> None:
        super().__init__()
        if harmonic_frontend:
            self.hstft = HarmonicSTFT(
                sample_rate=sample_rate,
                n_fft=n_fft,
                n_harmonic=n_harmonic,
                semitone_scale=semitone_scale,
                learn_bw=learn_bw,
                hop_length=hop_length,
                bw_Q=bw_Q,
                amin=amin,
                standardize=False,
            )
            self.hstft_bn = nn.BatchNorm2d(n_harmonic)
        else:
            self.hstft = None
            self.hstft_bn = None
        c = n_channels
        self.layer1 = ConvBlock2d(n_harmonic, c, 3, 2)
        self.layer2 = Res2dMP(c, 2)
        self.layer3 = Res2dMP(c, 2)
        self.layer4 = Res2dMP(c, 2)
        self.layer5 = ConvBlock2d(c, 2 * c, 3, 2)
        self.layer6 = Res2dMP(2 * c, (2, 3))
        self.layer7 = Res2dMP(2 * c, (2, 3))
        self.dense1 = nn.Linear(2 * c, 2 * c)
        self.bn = nn.BatchNorm1d(2 * c)
        self.relu = nn.ReLU()
        self.embed_dim = 2 * c

    def forward_intermediates(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        if self.hstft is not None:
            if x.dim() == 3:
                x = x.squeeze(1)
            x = self.hstft_bn(self.hstft(x))
        stages = []
        for i in range(1, 8):
            x = getattr(self, f"layer{i}")(x)
            stages.append(x)
        emb = self.relu(self.bn(self.dense1(global_max(x))))
        return emb, stages
