"""Which training precision pays on a device: bf16 mixed precision where the hardware has it.

On a CPU with native bfloat16 (AVX512-BF16 or AMX: ``torch.ops.mkldnn._is_mkldnn_bf16_supported``)
oneDNN runs the convolutions of ``torch.autocast("cpu", dtype=torch.bfloat16)`` on its bf16
kernels, and the memory-bound BatchNorm, ReLU and pooling passes move half the bytes: a training
step of the zoo's CNNs ran 1.5-3.6x faster than float32 on a 2-core AMD EPYC (Zen 4),
``docs/benchmarks.md``, "Training step (CPU)". Without native bf16 the same code is emulated and
slower, so float32 stays. On CUDA, bf16 where the GPU supports it.

The weights, the optimiser state and the loss stay float32 (autocast: only the matmuls and
convolutions, and what follows them, run in bf16); the log-mel frontend disables autocast and
stays float32 (``musictag.frontend``). The loss curves of bf16-mixed and float32 training differ
by the round-off of bf16 (8 mantissa bits) amplified through Adam: the stated and tested
tolerance is in ``tests/test_compute_options.py``.

    >>> import pytorch_lightning as pl
    >>> trainer = pl.Trainer(precision=training_precision(torch.device("cpu")))  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

__all__ = ["BF16_MIXED", "FP32", "autocast", "has_native_bf16", "training_precision"]

BF16_MIXED = "bf16-mixed"
"""Lightning's name of bf16 autocast with float32 weights."""
FP32 = "32-true"
"""Lightning's name of plain float32."""


def has_native_bf16(device: torch.device | str) -> bool:
    """Whether ``device`` runs bf16 convolutions and matmuls natively (not emulated).

    Args:
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"`` ...

    Returns:
        CPU: oneDNN reports bf16 support (AVX512-BF16 or AMX); CUDA: the GPU supports bf16
        (compute capability 8.0 or later); other devices: ``False``.
    """
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
        return bool(torch.backends.mkldnn.is_available() and check is not None and check())
    return False


def training_precision(device: torch.device | str) -> str:
    """Lightning ``precision`` to train with on ``device``: ``"bf16-mixed"`` where bf16 is
    native (:func:`has_native_bf16`), else ``"32-true"``."""
    return BF16_MIXED if has_native_bf16(device) else FP32


@contextlib.contextmanager
def autocast(device: torch.device | str, precision: str) -> Iterator[None]:
    """What Lightning's ``precision`` does around a training step, for loops without a Trainer.

    Args:
        device: Device the model runs on.
        precision: ``"bf16-mixed"`` (bf16 autocast) or ``"32-true"`` / ``"32"`` (nothing).

    Raises:
        ValueError: for any other precision.
    """
    if precision in (FP32, "32", "fp32"):
        yield
        return
    if precision != BF16_MIXED:
        raise ValueError(f"precision must be {BF16_MIXED!r} or {FP32!r}, got {precision!r}")
    with torch.autocast(torch.device(device).type, dtype=torch.bfloat16):
        yield
