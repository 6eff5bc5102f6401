"""Wrote the files of this folder with musictag at commit 034a18f (before the registry redesign).

Kept as the record of how they were made; do not rerun it to "refresh" them: the point of the
files is that they come from the old code. ``tests/test_legacy_checkpoints.py`` loads them.

    python tests/data/legacy_checkpoints/make_legacy.py
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from musictag import Tagger, create_model, list_models
from musictag.checkpoints import save_tagger

HERE = Path(__file__).resolve().parent
SMALL_FFT = {"n_fft": 32, "hop_length": 256, "f_max": None}
TINY = {
    "crnn": lambda: create_model(
        "crnn", n_tags=3, n_mels=16, channels=(4, 4, 4, 4),
        pools=((2, 2), (2, 2), (2, 2), (2, 2)), gru_hidden=4, crop_samples=16000,
        frontend_kwargs=SMALL_FFT,
    ),
    "samplecnn_ml": lambda: create_model(
        "samplecnn", n_tags=3, channels=(4,) * 9, multi_level=True, fc=True
    ),
    "short_res": lambda: create_model(
        "short_res", n_tags=3, n_mels=16, channels=(4,) * 4, embed_dim=8, crop_samples=16000,
        frontend_kwargs=SMALL_FFT,
    ),
    "hcnn": lambda: create_model("hcnn", n_tags=3, n_channels=4, n_fft=64, n_harmonic=2),
    "tagger_mel_gru": lambda: Tagger(
        backbone="mel_gru", n_tags=3, crop_samples=16000,
        frontend_kwargs={"n_mels": 8, **SMALL_FFT},
        backbone_kwargs={"d_model": 4, "hidden": 4, "layers": 1, "mlp_dim": 8},
    ),
}  # fmt: skip


def main() -> None:
    outputs = {}
    for name, build in TINY.items():
        torch.manual_seed(0)
        model = build().eval()
        x = torch.randn(2, model.crop_samples, generator=torch.Generator().manual_seed(1)) * 0.1
        with torch.no_grad():
            outputs[name] = model(x).tolist()
        save_tagger(model, HERE / f"{name}.ckpt")
    (HERE / "outputs.json").write_text(json.dumps(outputs, indent=1) + "\n")
    keys = {}
    for name in list_models():
        torch.manual_seed(0)
        keys[name] = list(create_model(name, n_tags=3).state_dict())
    (HERE / "state_dict_keys.json").write_text(json.dumps(keys, indent=1) + "\n")


if __name__ == "__main__":
    main()
