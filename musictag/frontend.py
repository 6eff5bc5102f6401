"""On-device feature extraction: waveform in, features out, inside the model.

The frontend is an ``nn.Module`` that lives inside the tagger, so its settings travel with the
checkpoint and it runs on whatever device the model runs on (the kapre idea: no spectrograms on
disk). Every filter, window and kernel is a registered buffer created at construction: a restored
checkpoint computes bit-identical features on any device, and no lazily built state can go stale
after a library upgrade.
"""

from __future__ import annotations

import torch
from nnAudio.features.mel import MelSpectrogram
from torch import nn

__all__ = ["FRONTENDS", "LogMelFrontend", "WaveformFrontend", "build_frontend"]

# Input samples per torch.stft call on CPU (see LogMelFrontend._fft_power_mel).
_FFT_CHUNK_SAMPLES = 1 << 20


class LogMelFrontend(nn.Module):
    """Log-mel spectrogram on nnAudio's MelSpectrogram, with optional learned standardisation.

    power mel → ``10 · log10(clamp(x, amin))`` (reference 1.0) → optional ``top_db`` floor relative
    to each example's maximum → optional ``BatchNorm2d(1)`` over the whole spectrogram.

    The STFT runs one of two ways with the same window and filterbank buffers (nnAudio's), so the
    outputs agree to float32 round-off (~1e-6 relative) and checkpoints hold the same keys:
    ``"fft"`` (``torch.stft`` with nnAudio's window, then the mel matmul: about 5x faster than the
    conv on CPU, 3x faster than librosa) or ``"conv"`` (nnAudio's conv1d STFT). ``stft="auto"``
    takes ``"fft"`` on CPU and ``"conv"`` on other devices (see ``docs/benchmarks.md``).

    The defaults are those of the published taggers of Won et al. (2020): 16 kHz, n_fft 512, hop 256,
    96 HTK mel bands up to 8 kHz without filter normalisation, no ``top_db``, BatchNorm.
    ``mel_scale="slaney", norm="slaney"`` gives librosa's defaults instead.

    Args:
        sample_rate: Expected input sample rate in Hz.
        n_fft: FFT size (and window length unless ``win_length`` is given).
        hop_length: Hop between frames in samples.
        n_mels: Number of mel bands.
        f_min: Lowest band edge in Hz.
        f_max: Highest band edge in Hz; ``None`` means ``sample_rate / 2``.
        mel_scale: ``"htk"`` or ``"slaney"``.
        norm: Filter normalisation: ``None`` (triangles peak at 1) or ``"slaney"`` (area).
        win_length: Window length; ``None`` means ``n_fft``. The window is a periodic Hann.
        power: Exponent of the magnitude (2.0: power spectrogram).
        amin: Floor applied before the logarithm.
        top_db: If set, values below ``max - top_db`` (per example) are raised to that floor.
        standardize: Apply a learned ``BatchNorm2d(1)`` to the dB spectrogram.
        stft: ``"auto"``, ``"fft"`` or ``"conv"``: how the STFT is computed (same result).

    Shape:
        input: ``[batch, samples]`` float waveform.
        output: ``[batch, 1, n_mels, frames]`` with ``frames = 1 + samples // hop_length``.
    """

    def __init__(
        self,
        sample_rate: int = 16000,
        n_fft: int = 512,
        hop_length: int = 256,
        n_mels: int = 96,
        f_min: float = 0.0,
        f_max: float | None = 8000.0,
        mel_scale: str = "htk",
        norm: str | None = None,
        win_length: int | None = None,
        power: float = 2.0,
        amin: float = 1e-10,
        top_db: float | None = None,
        standardize: bool = True,
        stft: str = "auto",
    ) -> None:
        super().__init__()
        if stft not in ("auto", "fft", "conv"):
            raise ValueError(f"stft must be 'auto', 'fft' or 'conv', got {stft!r}")
        if mel_scale not in ("htk", "slaney"):
            raise ValueError(f"mel_scale must be 'htk' or 'slaney', got {mel_scale!r}")
        if norm not in (None, "slaney"):
            raise ValueError(f"norm must be None or 'slaney', got {norm!r}")
        f_max = sample_rate / 2 if f_max is None else f_max
        if not 0 <= f_min < f_max <= sample_rate / 2:
            raise ValueError(
                f"need 0 <= f_min < f_max <= sample_rate/2, got f_min={f_min}, f_max={f_max}, "
                f"sample_rate={sample_rate}"
            )
        if top_db is not None and top_db <= 0:
            raise ValueError(f"top_db must be positive or None, got {top_db}")
        self.sample_rate = sample_rate
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.n_mels = n_mels
        self.amin = amin
        self.top_db = top_db
        self.power = power
        self.stft = stft
        self.mel = MelSpectrogram(
            sr=sample_rate,
            n_fft=n_fft,
            win_length=win_length,
            n_mels=n_mels,
            hop_length=hop_length,
            window="hann",
            center=True,
            pad_mode="reflect",
            power=power,
            htk=mel_scale == "htk",
            fmin=f_min,
            fmax=f_max,
            norm=1 if norm == "slaney" else None,
            trainable_mel=False,
            trainable_STFT=False,
            verbose=False,
        )
        self.bn = nn.BatchNorm2d(1) if standardize else None

    @property
    def out_channels(self) -> int:
        """Channels of the output feature map (1)."""
        return 1

    def num_frames(self, num_samples: int) -> int:
        """Number of output frames for an input of ``num_samples`` samples."""
        return 1 + num_samples // self.hop_length

    def power_mel(self, waveform: torch.Tensor) -> torch.Tensor:
        """Power mel spectrogram before the logarithm.

        Args:
            waveform: ``[batch, samples]``.

        Returns:
            ``[batch, n_mels, frames]``.
        """
        # float32 throughout, even under autocast: reduced precision would show in the log.
        x = waveform.float()
        with torch.autocast(device_type=x.device.type, enabled=False):
            if self._use_fft(x):
                return self._fft_power_mel(x)
            return self.mel(x)

    def _use_fft(self, x: torch.Tensor) -> bool:
        return self.stft == "fft" or (self.stft == "auto" and x.device.type == "cpu")

    def _fft_power_mel(self, x: torch.Tensor) -> torch.Tensor:
        """``torch.stft`` with nnAudio's window buffer, then nnAudio's mel filterbank.

        Runs on chunks of about ``_FFT_CHUNK_SAMPLES`` input samples: the frames, spectrum and
        power of a chunk stay in cache, which makes a batch of 30-s clips ~2x faster than one
        call on the whole batch.
        """
        conv = self.mel.stft
        window = conv.window_mask.reshape(-1)  # the periodic Hann, centred in n_fft
        rows = max(1, _FFT_CHUNK_SAMPLES // max(1, x.shape[-1]))
        out = []
        for chunk in x.split(rows):
            spec = torch.stft(
                chunk,
                n_fft=self.n_fft,
                hop_length=self.hop_length,
                window=window,
                center=conv.center,
                pad_mode=conv.pad_mode,
                return_complex=True,
            )
            power = spec.real.square().addcmul_(spec.imag, spec.imag)  # |X|^2, one extra pass
            if self.power != 2.0:
                power = power.pow(self.power / 2)
            out.append(torch.matmul(self.mel.mel_basis, power))
        return out[0] if len(out) == 1 else torch.cat(out)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        """Compute standardised log-mel features.

        Args:
            waveform: ``[batch, samples]``.

        Returns:
            ``[batch, 1, n_mels, frames]``.
        """
        if waveform.dim() != 2:
            raise ValueError(
                f"expected a waveform of shape [batch, samples], got {tuple(waveform.shape)}"
            )
        db = 10.0 * torch.log10(torch.clamp(self.power_mel(waveform), min=self.amin))
        if self.top_db is not None:
            floor = db.amax(dim=(-2, -1), keepdim=True) - self.top_db
            db = torch.maximum(db, floor)
        x = db.unsqueeze(1)
        if self.bn is not None:
            x = self.bn(x)
        return x

    def extra_repr(self) -> str:
        return (
            f"sample_rate={self.sample_rate}, top_db={self.top_db}, amin={self.amin}, "
            f"stft={self.stft!r}"
        )


class WaveformFrontend(nn.Module):
    """Identity frontend for raw-waveform models (SampleCNN): adds a channel axis.

    Args:
        sample_rate: Expected input sample rate in Hz.

    Shape:
        input: ``[batch, samples]``; output: ``[batch, 1, samples]``.
    """

    def __init__(self, sample_rate: int = 16000) -> None:
        super().__init__()
        self.sample_rate = sample_rate

    @property
    def out_channels(self) -> int:
        return 1

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        if waveform.dim() != 2:
            raise ValueError(
                f"expected a waveform of shape [batch, samples], got {tuple(waveform.shape)}"
            )
        return waveform.unsqueeze(1)


FRONTENDS: dict[str, type[nn.Module]] = {
    "logmel": LogMelFrontend,
    "waveform": WaveformFrontend,
}


def build_frontend(name: str, sample_rate: int, **kwargs) -> nn.Module:
    """Build a frontend by name (``"logmel"``, ``"waveform"``, or any registered in ``FRONTENDS``).

    Args:
        name: Key of ``FRONTENDS``.
        sample_rate: Input sample rate in Hz, passed to the frontend.
        **kwargs: Frontend settings.

    Returns:
        The frontend module.
    """
    try:
        cls = FRONTENDS[name]
    except KeyError:
        raise ValueError(f"unknown frontend {name!r}; known: {sorted(FRONTENDS)}") from None
    return cls(sample_rate=sample_rate, **kwargs)
