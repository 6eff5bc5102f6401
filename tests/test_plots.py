"""Plots of a track's tag activations."""

from __future__ import annotations

import pytest

from musictag.inference import tag_file
from musictag.plots import plot_tag_activation

from .test_inference import PNG, noise_file, tiny_crnn


def test_activation_plot(tmp_path):
    model = tiny_crnn()
    result = tag_file(model, noise_file(tmp_path / "a.wav", 3.0), hop=1000)
    out = plot_tag_activation(result, tmp_path / "p.png", tags=["t1", "t3"])
    assert out.read_bytes()[:8] == PNG
    with pytest.raises(ValueError, match="not in the model"):
        plot_tag_activation(result, tmp_path / "q.png", tags=["nope"])
