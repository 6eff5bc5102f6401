"""Inference-only rewrites of a tagger that keep its outputs (float32 round-off) and run faster.

:func:`optimize_for_inference` returns an optimised copy of a :class:`~musictag.tagger.Tagger`:

* **BatchNorm folded into the convolution before it** (``conv → bn`` becomes one conv with
  rescaled weights and a bias), for the conv blocks of the zoo (``ConvBlock2d``, ``ConvBlock1d``,
  ``Res2d``, ``Res2dMP``, ``ResBlock1d``, Musicnn's ``ConvV`` / ``ConvH``, the ResNet's
  pre-activation block). This removes one full pass over every feature map.
* **Max-pool before an in-place ReLU** in the blocks that pool (the blocks themselves already
  pool first, since ReLU is monotone and ``max(relu(x)) == relu(max(x))`` exactly; the
  inference copy also drops the identity left by the folded BatchNorm and reuses the buffer).
* **channels_last** memory format for 2D-convolution backbones: oneDNN's convolutions and
  PyTorch's max-pool are vectorised over channels in that layout (2-3x faster on a 29-s FCN).

``torch.compile`` is not applied: on top of these it gained 2 % on the FCN (146 → 143 ms per
29-s crop) for 20 s or more of compilation (``docs/benchmarks.md``).

The copy is checked against the original on ``example_input`` before it is returned. Only inference
is affected (the copy is in eval mode and its folded BatchNorms no longer learn); the original
tagger is left untouched, so training and checkpoints see the published layout.
"""

from __future__ import annotations

import copy
import logging
import threading
import time
import weakref

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from .autotune import cache_key, cached_entry, store_entry
from .models.blocks import ConvBlock1d, ConvBlock2d
from .models.musicnn import ConvH, ConvV
from .models.resnet import PreActBlock
from .models.samplecnn import ResBlock1d, SEBlock1d
from .models.shortchunk import Res2d, Res2dMP

__all__ = ["fold_batchnorm", "optimize_for_inference", "optimized_copy"]

log = logging.getLogger(__name__)

# (conv attribute, BatchNorm attribute applied directly to that conv's output), per block class
_CONV_BN_PAIRS: dict[type[nn.Module], tuple[tuple[str, str], ...]] = {
    ConvBlock2d: (("conv", "bn"),),
    ConvBlock1d: (("conv", "bn"),),
    SEBlock1d: (("conv", "bn"),),
    ConvV: (("conv", "bn"),),
    ConvH: (("conv", "bn"),),
    Res2d: (("conv_1", "bn_1"), ("conv_2", "bn_2"), ("conv_3", "bn_3")),
    Res2dMP: (("conv_1", "bn_1"), ("conv_2", "bn_2")),
    ResBlock1d: (("conv_1", "bn_1"), ("conv_2", "bn_2"), ("conv_3", "bn_3")),
    PreActBlock: (("conv1", "bn2"),),  # bn1 acts on the block input, before any conv
}


class _PoolFirstConvBlock2d(ConvBlock2d):
    """``ConvBlock2d`` with folded BN: ``relu(pool(conv(x)))``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.pool(self.conv(x)), inplace=True)


class _PoolFirstConvBlock1d(ConvBlock1d):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.pool(self.conv(x)), inplace=True)


class _PoolFirstConvV(ConvV):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv(x).amax(dim=2), inplace=True)


class _PoolFirstSEBlock1d(SEBlock1d):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.se(F.relu(self.pool(self.conv(x)), inplace=True))


class _PoolFirstRes2dMP(Res2dMP):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv_2(F.relu(self.conv_1(x), inplace=True))
        return F.relu(self.mp(out.add_(x)), inplace=True)


class _PoolFirstResBlock1d(ResBlock1d):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv_2(F.relu(self.conv_1(x), inplace=True))
        if self.se:
            w = torch.sigmoid(self.dense2(F.relu(self.dense1(out.mean(dim=-1)))))
            out = out * w.unsqueeze(-1)
        if self.diff:
            x = self.conv_3(x)
        return F.relu(self.pool(out.add_(x)), inplace=True)


# exact classes only: a subclass may have changed forward()
_POOL_FIRST: dict[type[nn.Module], type[nn.Module]] = {
    ConvBlock2d: _PoolFirstConvBlock2d,
    ConvBlock1d: _PoolFirstConvBlock1d,
    SEBlock1d: _PoolFirstSEBlock1d,
    ConvV: _PoolFirstConvV,
    Res2dMP: _PoolFirstRes2dMP,
    ResBlock1d: _PoolFirstResBlock1d,
}


def fold_batchnorm(module: nn.Module) -> int:
    """Fold every eval-mode BatchNorm that directly follows a conv of a known zoo block, in place.

    The conv gets the BatchNorm's scale and shift in its weights and bias; the BatchNorm becomes
    ``nn.Identity``. Blocks that pool are switched to a forward without that identity and with an
    in-place ReLU after the pool. Only for inference: ``module`` must be in eval mode.

    Args:
        module: A model in eval mode (a tagger, a backbone, any module containing zoo blocks).

    Returns:
        Number of BatchNorms folded.
    """
    if module.training:
        raise ValueError("fold_batchnorm is for inference: call module.eval() first")
    folded = 0
    for block in module.modules():
        pairs = _CONV_BN_PAIRS.get(type(block), ())
        for conv_name, bn_name in pairs:
            conv, bn = getattr(block, conv_name, None), getattr(block, bn_name, None)
            if not isinstance(conv, nn.modules.conv._ConvNd) or not isinstance(
                bn, nn.modules.batchnorm._BatchNorm
            ):
                continue
            if not bn.track_running_stats or bn.running_mean is None:
                continue  # batch statistics at inference: nothing fixed to fold
            setattr(block, conv_name, fuse_conv_bn_eval(conv, bn))
            setattr(block, bn_name, nn.Identity())
            folded += 1
        if (
            pairs
            and type(block) in _POOL_FIRST
            and all(
                isinstance(getattr(block, b, None), nn.Identity)
                for _, b in pairs
                if hasattr(block, b)
            )
        ):
            # same state and attributes, forward in the pool-first order
            block.__class__ = _POOL_FIRST[type(block)]
    return folded


def _has_conv2d(module: nn.Module) -> bool:
    return any(isinstance(m, nn.Conv2d) for m in module.modules())


def _max_abs_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).abs().max()) if a.numel() else 0.0


def optimize_for_inference(
    tagger: nn.Module,
    example_input: torch.Tensor,
    *,
    channels_last: bool | None = None,
    atol: float = 1e-5,
    rtol: float = 1e-5,
) -> nn.Module:
    """An equivalent, faster copy of ``tagger`` for inference (the original is not changed).

    The copy is a deep copy of the same class in eval mode, so everything the tagger offers
    (``forward``, ``predict_proba``, ``embed``, ``track_scores``, ``tags``, ``hparams``) still
    works; it runs its backbone with BatchNorm folded into the convolutions, pool-before-ReLU and,
    for 2D-convolution backbones, the channels_last memory format (see the module docstring).
    Its logits on ``example_input`` are checked against the original's before it is returned.

    Args:
        tagger: A :class:`~musictag.tagger.Tagger` (or any module mapping ``[batch, samples]``
            waveforms to ``[batch, n_tags]`` logits whose blocks come from ``musictag.models``).
        example_input: A representative batch, ``[batch, samples]`` float32 waveforms on the
            tagger's device (a few crops of the model's input length are enough); used for the
            check and for the channels_last measurement.
        channels_last: Use the channels_last memory format for the backbone: ``True``, ``False``
            or ``None`` (default: for backbones with 2D convolutions, the faster of both as
            timed on ``example_input``).
        atol: Absolute tolerance of the check on the logits.
        rtol: Relative tolerance of the check on the logits.

    Returns:
        The optimised copy, in eval mode, on the tagger's device. It computes the same
        ``[batch, samples] → [batch, n_tags]`` mapping; feed it other batch sizes and lengths as
        usual.

    Raises:
        RuntimeError: If the copy's logits differ from the original's beyond the tolerance.
    """
    was_training = tagger.training
    tagger.eval()
    try:
        with torch.inference_mode():
            reference = tagger(example_input)
    finally:
        tagger.train(was_training)
    fast = copy.deepcopy(tagger).eval()
    for p in fast.parameters():
        p.requires_grad_(False)
    folded = fold_batchnorm(fast)
    backbone = getattr(fast, "backbone", fast)
    if channels_last is None:
        channels_last = _has_conv2d(backbone) and _channels_last_pays(fast, backbone, example_input)
    if channels_last:
        backbone.to(memory_format=torch.channels_last)
    with torch.inference_mode():
        got = fast(example_input)
    diff = _max_abs_diff(got, reference)
    if not torch.allclose(got.float(), reference.float(), atol=atol, rtol=rtol):
        raise RuntimeError(
            f"optimised {type(tagger).__name__} differs from the original by {diff:.3g} "
            f"(atol={atol}, rtol={rtol}); use the tagger as it is"
        )
    log.info(
        "optimised %s for inference: %d BatchNorms folded, channels_last=%s, "
        "max |logit difference| %.2g",
        type(tagger).__name__,
        folded,
        channels_last,
        diff,
    )
    return fast


def _channels_last_pays(model: nn.Module, backbone: nn.Module, x: torch.Tensor) -> bool:
    """Whether the backbone in channels_last runs ``x`` faster (best of 2, interleaved)."""
    times = {False: float("inf"), True: float("inf")}
    with torch.inference_mode():
        for _ in range(2):
            for layout in (False, True):
                backbone.to(
                    memory_format=torch.channels_last if layout else torch.contiguous_format
                )
                start = time.perf_counter()
                model(x)
                times[layout] = min(times[layout], time.perf_counter() - start)
    backbone.to(memory_format=torch.contiguous_format)
    return times[True] < times[False]


_OPTIMIZED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_OPTIMIZED_LOCK = threading.Lock()


def optimized_copy(model: nn.Module, window: int) -> nn.Module:
    """The checked optimised copy of a tagger (:func:`optimize_for_inference`), or the tagger
    itself if it cannot be made.

    One copy per model is kept while the model lives and its parameters are unchanged (same
    storage, no in-place update since), so that a server making an ``Inference`` per request
    does not optimise again each time. channels_last is chosen by timing once per model and
    device, then cached (:mod:`musictag.autotune`), so that every run computes alike.

    Args:
        model: A tagger.
        window: Its input length in samples.
    """
    stamp = tuple((p.data_ptr(), p._version, p.device) for p in model.parameters())
    with _OPTIMIZED_LOCK:
        known = _OPTIMIZED.get(model)
        if known is not None and known[0] == stamp:
            return known[1] or model
        device = next(model.parameters()).device
        key = cache_key(model, window, device, "channels_last")
        layout = (cached_entry(key) or {}).get("channels_last")
        gen = torch.Generator().manual_seed(0)
        example = (0.1 * torch.randn(1, window, generator=gen)).to(device)
        try:
            net = optimize_for_inference(model, example, channels_last=layout)
        except (RuntimeError, ValueError, TypeError, NotImplementedError) as e:
            log.warning("running %s unoptimised: %s", type(model).__name__, e)
            net = None  # not the model itself: the entry must not keep its key alive
        else:
            if not isinstance(layout, bool):
                store_entry(key, {"channels_last": _is_channels_last(net)})
        _OPTIMIZED[model] = (stamp, net)
        return net or model


def _is_channels_last(model: nn.Module) -> bool:
    """Whether the model's 4-d (2D-convolution) weights are in the channels_last layout."""
    return any(
        p.dim() == 4
        and not p.is_contiguous()
        and p.is_contiguous(memory_format=torch.channels_last)
        for p in model.parameters()
    )
