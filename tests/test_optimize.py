"""optimize_for_inference: a faster copy with the same outputs, for every kind of zoo block."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import musictag
from musictag import optimize as optimize_module
from musictag.optimize import fold_batchnorm, optimize_for_inference
from musictag.pretrained import SOTA_CONFIGS, convert_sota, sota_weights_path

# one model per block kind: ConvBlock2d (+GRU), ConvV/ConvH/ConvBlock1d, Res2d, Res2dMP,
# PreActBlock, ConvBlock1d, SEBlock1d, ResBlock1d with SE
# narrow variants keep it quick; the block kinds are the zoo's
MODELS = {
    "fcn": {"channels": [8, 8, 8, 8, 8]},
    "crnn": {"channels": [8, 8, 8, 8]},
    "musicnn": {"backend_channels": 8, "embed_dim": 16},
    "short_res": {"channels": [8, 8, 8, 8, 8, 8, 16], "embed_dim": 16},
    "hcnn": {"n_channels": 8},
    "resnet": {"channels": [8, 8, 8, 16]},
    "samplecnn": {"channels": [8] * 8 + [16]},
    "samplecnn_se_ml": {"channels": [8] * 8 + [16]},
}
SECONDS = 3.0


def _with_running_stats(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial BatchNorm statistics and affine parameters, as after training."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
            m.running_var.copy_(0.5 + 1.5 * torch.rand(n, generator=g))
            if m.affine:
                m.weight.data.copy_(0.5 + torch.rand(n, generator=g))
                m.bias.data.copy_(0.4 * torch.rand(n, generator=g) - 0.2)
    return model.eval()


def _input(model: musictag.Tagger, batch: int, seed: int) -> torch.Tensor:
    # the model's own input, or 3 s of the models that take any length (29-s FCN, CRNN ...)
    n = model.crop_samples if model.crop_samples <= 80000 else int(SECONDS * model.sample_rate)
    return 0.3 * torch.randn(batch, n, generator=torch.Generator().manual_seed(seed))


def _n_batchnorms(model: nn.Module) -> int:
    return sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


@pytest.mark.parametrize("name", MODELS)
def test_optimized_copy_matches_the_original(name):
    torch.manual_seed(0)
    model = _with_running_stats(musictag.create_model(name, n_tags=10, **MODELS[name]))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fast = optimize_for_inference(model, _input(model, 1, 0), channels_last=True)
    assert type(fast) is type(model) and not fast.training
    assert _n_batchnorms(fast) < _n_batchnorms(model)
    x = _input(model, 2, 1)  # another batch size than the example
    with torch.inference_mode():
        torch.testing.assert_close(fast(x), model(x), atol=1e-5, rtol=1e-5)
        if name == "fcn":  # another length, and the stage outputs (channels_last tensors)
            x = x[:, :-777]
            torch.testing.assert_close(fast.embed(x, "all"), model.embed(x, "all"))
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in after)


def test_fold_batchnorm_counts_and_reorders():
    model = musictag.create_model("fcn", n_tags=4).eval()
    assert fold_batchnorm(model.backbone) == 5
    block = model.backbone.layer1
    assert isinstance(block.bn, nn.Identity) and block.conv.bias is not None
    assert type(block).__name__ == "_PoolFirstConvBlock2d"
    assert fold_batchnorm(model.backbone) == 0  # nothing left to fold
    with pytest.raises(ValueError, match="eval"):
        fold_batchnorm(musictag.create_model("fcn", n_tags=4).train())


def test_a_wrong_rewrite_is_caught(monkeypatch):
    def broken(conv, bn):
        fused = nn.utils.fusion.fuse_conv_bn_eval(conv, bn)
        fused.weight.data.mul_(1.01)
        return fused

    monkeypatch.setattr(optimize_module, "fuse_conv_bn_eval", broken)
    model = _with_running_stats(musictag.create_model("short", n_tags=4))
    with pytest.raises(RuntimeError, match="differs from the original"):
        optimize_for_inference(model, _input(model, 1, 0), channels_last=False)


@pytest.mark.parametrize("name", ["mtat_fcn", "mtat_crnn", "mtat_musicnn"])
def test_published_weights_keep_their_outputs(shared_dir, name):
    sota = shared_dir / "pretrained" / "sota"
    cfg = SOTA_CONFIGS[name]
    model = convert_sota(sota_weights_path(sota, cfg.arch, cfg.dataset), cfg.arch, cfg.dataset)
    ref = np.load(sota / "refs" / f"{name}.npz")
    x = torch.from_numpy(ref["input"])
    # the example row is checked against the unoptimised logits (1e-5) inside; the other row
    # against the published implementation's output, as in test_pretrained
    fast = optimize_for_inference(model, x[:1], channels_last=True)
    with torch.inference_mode():
        got = fast.predict_proba(x[1:])
    assert float(np.abs(got.numpy() - ref["output"][1:]).max()) <= 1e-4


def test_channels_last_is_chosen_by_timing(monkeypatch):
    model = _with_running_stats(musictag.create_model("fcn", n_tags=4, **MODELS["fcn"]))
    x = _input(model, 1, 0)
    chosen = []
    real = optimize_module._channels_last_pays
    monkeypatch.setattr(
        optimize_module,
        "_channels_last_pays",
        lambda *a: chosen.append(real(*a)) or chosen[-1],
    )
    fast = optimize_for_inference(model, x)
    assert len(chosen) == 1  # measured once, since the FCN has 2D convolutions
    weight = fast.backbone.layer2.conv.weight
    assert weight.is_contiguous(memory_format=torch.channels_last) == chosen[0]
    assert model.backbone.layer2.conv.weight.is_contiguous()  # the original is untouched
