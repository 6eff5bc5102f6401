"""``create_model``: the one way to a named tagger, fresh, from published weights or a checkpoint."""

from __future__ import annotations

import pytest
import torch

from musictag import create_model, list_pretrained
from musictag.checkpoints import save_tagger
from musictag.presets import CRNNTagger, MusicnnTagger, ShortChunkResNetTagger


@pytest.fixture(scope="module")
def sota(shared_dir):
    return shared_dir / "pretrained" / "sota"


def test_published_weights_by_name_dataset_or_environment(sota, monkeypatch):
    assert "mtat_musicnn" in list_pretrained()
    model = create_model("mtat_musicnn", weights_dir=sota)
    assert type(model) is MusicnnTagger and model.n_tags == 50 and not model.training
    x = torch.randn(1, model.crop_samples, generator=torch.Generator().manual_seed(0)) * 0.1
    monkeypatch.setenv("MUSICTAG_PRETRAINED", str(sota))
    same = create_model("musicnn", pretrained="mtat")
    with torch.no_grad():
        assert torch.equal(same(x), model(x))
    # other tags: backbone kept, new head
    tuned = create_model("musicnn", pretrained="mtat_musicnn", tags=["a", "b", "c"])
    assert tuned.tags == ["a", "b", "c"] and tuned.head.fc.out_features == 3
    sd = model.state_dict()
    assert all(
        torch.equal(v, sd[k]) for k, v in tuned.state_dict().items() if k.startswith("backbone.")
    )


def test_weights_errors_name_the_problem(sota, monkeypatch):
    monkeypatch.delenv("MUSICTAG_PRETRAINED", raising=False)
    with pytest.raises(ValueError, match="nothing is downloaded"):
        create_model("crnn", pretrained="msd")
    with pytest.raises(ValueError, match=r"\['jamendo_musicnn', 'mtat_musicnn'\]"):
        create_model("musicnn", pretrained=True, weights_dir=sota)
    with pytest.raises(ValueError, match="published 'samplecnn' weights are \\[\\]"):
        create_model("samplecnn", pretrained=True)
    with pytest.raises(ValueError, match="cannot change a model with weights"):
        create_model("mtat_musicnn", weights_dir=sota, n_mels=128)


def test_checkpoint_as_pretrained(tmp_path):
    ckpt = save_tagger(
        create_model("crnn", n_tags=3, channels=(4, 4, 4, 4), gru_hidden=4), tmp_path / "c.ckpt"
    )
    model = create_model("crnn", pretrained=ckpt)
    assert type(model) is CRNNTagger and model.n_tags == 3
    assert create_model("crnn", pretrained=str(ckpt), n_tags=5).n_tags == 5
    with pytest.raises(ValueError, match="holds a CRNNTagger, not a 'fcn' model"):
        create_model("fcn", pretrained=ckpt)


def test_old_names_are_deprecated_aliases():
    with pytest.warns(
        DeprecationWarning, match="'short_res' is deprecated; use 'short_chunk_resnet'"
    ):
        model = create_model("short_res", n_tags=3, channels=(4,) * 4, embed_dim=8)
    assert type(model) is ShortChunkResNetTagger
