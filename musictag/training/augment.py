"""Augmentation of log-mel batches on the model's device: gain, time shift, SpecAugment, mixup.

Small torch functions on ``[batch, 1, n_mels, frames]`` tensors, so they run wherever the batch
is (no torchaudio). SpecAugment masking follows Park et al. (2019): a few frequency and time
bands per example set to the mean (0 after standardisation). Mixup (Zhang et al. 2018) mixes
examples and their multi-hot targets with a Beta-distributed weight.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["Augment", "mask_bands", "mixup", "random_gain_db", "random_shift"]


def random_gain_db(x: torch.Tensor, max_db: float, generator: torch.Generator | None = None):
    """Add a random level in ``[-max_db, max_db]`` dB per example to dB features ``[B, ...]``."""
    shape = (x.shape[0],) + (1,) * (x.dim() - 1)
    g = (torch.rand(shape, generator=generator, device="cpu") * 2 - 1) * max_db
    return x + g.to(x)


def random_shift(x: torch.Tensor, max_fraction: float, generator: torch.Generator | None = None):
    """Roll each example by a random number of frames, up to ``max_fraction`` of its length."""
    if max_fraction <= 0:
        return x
    frames = x.shape[-1]
    limit = max(1, int(frames * max_fraction))
    shifts = torch.randint(-limit, limit + 1, (x.shape[0],), generator=generator).tolist()
    return torch.stack([torch.roll(row, s, dims=-1) for row, s in zip(x, shifts)])


def mask_bands(
    x: torch.Tensor,
    n_masks: int,
    max_width: int,
    dim: int,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """SpecAugment masking: ``n_masks`` bands of up to ``max_width`` bins along ``dim`` set to 0.

    Args:
        x: ``[batch, channels, n_mels, frames]`` standardised features.
        n_masks: Masks per example.
        max_width: Widest mask, in bins.
        dim: ``-2`` (frequency) or ``-1`` (time).

    Returns:
        A masked copy of ``x``.
    """
    size = x.shape[dim]
    if n_masks <= 0 or max_width <= 0 or size < 2:
        return x
    b = x.shape[0]
    width = torch.randint(0, max_width + 1, (b, n_masks), generator=generator)
    start = (torch.rand((b, n_masks), generator=generator) * (size - width).clamp_min(1)).long()
    pos = torch.arange(size)
    masked = ((pos >= start[..., None]) & (pos < (start + width)[..., None])).any(1)  # [B, size]
    shape = [b, 1, 1, 1]
    shape[dim] = size
    return x.masked_fill(masked.reshape(shape).to(x.device), 0.0)


def mixup(
    x: torch.Tensor, y: torch.Tensor, alpha: float, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mix each example with a shuffled partner: ``λ·a + (1-λ)·b`` for inputs and targets."""
    if alpha <= 0:
        return x, y
    beta = torch.distributions.Beta(torch.tensor(float(alpha)), torch.tensor(float(alpha)))
    lam = beta.sample((x.shape[0],))
    lam = torch.maximum(lam, 1 - lam).to(x)  # the first example dominates
    perm = torch.randperm(x.shape[0], generator=generator).to(x.device)
    lx = lam.reshape((-1,) + (1,) * (x.dim() - 1))
    ly = lam.reshape(-1, 1)
    return lx * x + (1 - lx) * x[perm], ly * y + (1 - ly) * y[perm]


@dataclass
class Augment:
    """Training augmentation of the scratch model (a field at 0 turns that part off).

    The field defaults are sensible strengths when augmenting; ``musictag train`` uses
    :meth:`off` (see :class:`~musictag.training.scratch.ScratchConfig`).

    Attributes:
        gain_db: Random level change, in dB.
        shift: Random circular time shift, as a fraction of the frames.
        freq_masks: SpecAugment frequency masks per example.
        freq_width: Widest frequency mask, in mel bands.
        time_masks: SpecAugment time masks per example.
        time_width: Widest time mask, as a fraction of the frames.
        mixup_alpha: Beta parameter of mixup (0: no mixup).
    """

    gain_db: float = 6.0
    shift: float = 0.25
    freq_masks: int = 2
    freq_width: int = 8
    time_masks: int = 2
    time_width: float = 0.1
    mixup_alpha: float = 0.0

    @classmethod
    def off(cls) -> Augment:
        """No augmentation at all."""
        return cls(gain_db=0.0, shift=0.0, freq_masks=0, time_masks=0, mixup_alpha=0.0)

    def before_standardize(self, x: torch.Tensor, g: torch.Generator | None = None):
        """Level and time shift, on dB features."""
        if self.gain_db > 0:
            x = random_gain_db(x, self.gain_db, g)
        return random_shift(x, self.shift, g)

    def after_standardize(self, x: torch.Tensor, y: torch.Tensor, g: torch.Generator | None = None):
        """Masks and mixup, on standardised features; returns ``(x, y)``."""
        x = mask_bands(x, self.freq_masks, self.freq_width, -2, g)
        x = mask_bands(x, self.time_masks, int(self.time_width * x.shape[-1]), -1, g)
        return mixup(x, y, self.mixup_alpha, g)
