"""Tests for musictag.data.vocab.TagVocab."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from musictag.data.vocab import TagVocab

COUNTS = {"rock": 50, "pop": 30, "jazz": 30, "rap": 12, "hip-hop": 20, "hiphop": 3, "polka": 1}


def test_explicit_order_is_kept():
    vocab = TagVocab(["pop", "rock", "jazz"])
    assert vocab.tags == ["pop", "rock", "jazz"]
    assert len(vocab) == 3
    assert list(vocab) == ["pop", "rock", "jazz"]
    assert vocab.index("jazz") == 2
    assert "rock" in vocab and "polka" not in vocab


def test_from_counts_orders_by_count_then_name():
    vocab = TagVocab.from_counts(COUNTS)
    assert vocab.tags == ["rock", "jazz", "pop", "hip-hop", "rap", "hiphop", "polka"]


def test_top_k_and_min_count():
    assert TagVocab.from_counts(COUNTS, top_k=3).tags == ["rock", "jazz", "pop"]
    assert TagVocab.from_counts(COUNTS, min_count=12).tags == [
        "rock",
        "jazz",
        "pop",
        "hip-hop",
        "rap",
    ]
    # top_k larger than the number of tags keeps them all
    assert len(TagVocab.from_counts(COUNTS, top_k=100)) == 7
    with pytest.raises(ValueError, match="top_k"):
        TagVocab.from_counts(COUNTS, top_k=0)


def test_merge_adds_counts_and_encodes_one_positive():
    vocab = TagVocab.from_counts(COUNTS, merge={"rap": "hip-hop", "hiphop": "hip-hop"})
    # hip-hop: 20 + 12 + 3 = 35 moves above jazz/pop
    assert vocab.tags == ["rock", "hip-hop", "jazz", "pop", "polka"]
    target = vocab.encode(["rap", "hip-hop"])
    assert target.dtype == np.float32 and target.shape == (5,)
    np.testing.assert_array_equal(target, [0, 1, 0, 0, 0])
    assert vocab.canonical("rap") == "hip-hop"
    assert vocab.canonical("rock") == "rock"
    assert vocab.index("rap") == 1
    assert "rap" in vocab


def test_encode_ignores_unknown_and_rejects_a_string():
    vocab = TagVocab(["rock", "pop"])
    np.testing.assert_array_equal(vocab.encode(["pop", "polka", "pop"]), [0, 1])
    np.testing.assert_array_equal(vocab.encode([]), [0, 0])
    with pytest.raises(TypeError):
        vocab.encode("rock")


def test_include_exclude():
    vocab = TagVocab.from_counts(COUNTS, include=["pop", "rap", "polka"])
    assert vocab.tags == ["pop", "rap", "polka"]
    vocab = TagVocab.from_counts(COUNTS, exclude=["rock", "polka"], top_k=2)
    assert vocab.tags == ["jazz", "pop"]
    # names after merging; a merge source stands for its target
    vocab = TagVocab.from_counts(COUNTS, merge={"rap": "hip-hop"}, include=["rap", "rock"])
    assert vocab.tags == ["rock", "hip-hop"]


def test_unknown_names_are_errors_that_name_them():
    with pytest.raises(ValueError, match=r"'jaz'.*'jazz'"):
        TagVocab.from_counts(COUNTS, include=["jaz"])
    with pytest.raises(ValueError, match=r"'rokc'.*'rock'"):
        TagVocab.from_counts(COUNTS, exclude=["rokc"])
    with pytest.raises(ValueError, match=r"merge source.*'hip_hop'.*'hip-hop'"):
        TagVocab.from_counts(COUNTS, merge={"hip_hop": "rap"})
    with pytest.raises(KeyError, match="'rokc'.*'rock'"):
        TagVocab(["rock"]).index("rokc")
    with pytest.raises(ValueError, match="no tag is left"):
        TagVocab.from_counts(COUNTS, min_count=1000)


def test_merge_chains_and_cycles():
    vocab = TagVocab.from_counts(COUNTS, merge={"hiphop": "rap", "rap": "hip-hop"})
    assert vocab.merge == {"hiphop": "hip-hop", "rap": "hip-hop"}
    assert vocab.tags[:2] == ["rock", "hip-hop"]
    np.testing.assert_array_equal(vocab.encode(["hiphop"]), vocab.encode(["hip-hop"]))
    with pytest.raises(ValueError, match="cycle"):
        TagVocab(["rock"], merge={"a": "b", "b": "c", "c": "a"})
    with pytest.raises(ValueError, match="cycle"):
        TagVocab.from_counts(COUNTS, merge={"rap": "hip-hop", "hip-hop": "rap"})


def test_invalid_explicit_vocabularies():
    with pytest.raises(ValueError, match="duplicate"):
        TagVocab(["rock", "pop", "rock"])
    with pytest.raises(ValueError, match="'rap' -> 'hip-hop'"):
        TagVocab(["rap", "rock"], merge={"rap": "hip-hop"})
    with pytest.raises(TypeError):
        TagVocab("rock")


def test_decode_sorts_and_filters():
    vocab = TagVocab(["rock", "pop", "jazz", "folk"])
    scores = np.array([0.2, 0.9, 0.5, 0.5])
    assert vocab.decode(scores) == [("pop", 0.9), ("jazz", 0.5), ("folk", 0.5), ("rock", 0.2)]
    assert vocab.decode(scores, top_k=2) == [("pop", 0.9), ("jazz", 0.5)]
    assert vocab.decode(torch.tensor(scores), threshold=0.5) == [
        ("pop", 0.9),
        ("jazz", 0.5),
        ("folk", 0.5),
    ]
    assert vocab.decode(scores, top_k=1, threshold=0.95) == []
    with pytest.raises(ValueError, match=r"\[4\]"):
        vocab.decode(np.zeros((2, 4)))


def test_dict_round_trip(tmp_path):
    vocab = TagVocab.from_counts(COUNTS, merge={"rap": "hip-hop"}, top_k=4)
    d = json.loads(json.dumps(vocab.to_dict()))
    assert d == {"tags": ["rock", "hip-hop", "jazz", "pop"], "merge": {"rap": "hip-hop"}}
    again = TagVocab.from_dict(d)
    assert again == vocab and again.tags == vocab.tags and again.merge == vocab.merge
    vocab.save(tmp_path / "vocab.json")
    assert TagVocab.load(tmp_path / "vocab.json") == vocab


def test_pos_weight_values():
    vocab = TagVocab(["rock", "hip-hop", "polka", "ska"], merge={"rap": "hip-hop"})
    counts = {"rock": 25, "hip-hop": 10, "rap": 10, "polka": 100, "jazz": 7}
    w = vocab.pos_weight(counts, n_tracks=100)
    assert w.dtype == torch.float32 and w.shape == (4,)
    # rock 75/25; hip-hop (10+10) -> 80/20; polka n_pos = N -> 0; ska no positives -> n_pos 1
    torch.testing.assert_close(w, torch.tensor([3.0, 4.0, 0.0, 99.0]))
    np.testing.assert_array_equal(vocab.counts(counts), [25, 20, 100, 0])


def test_from_manifest_uses_the_split_counts(tmp_path):
    manifest = {
        "format": "musictag-shards",
        "version": 1,
        "sample_rate": 8000,
        "splits": {
            "train": {"tag_counts": {"a": 1, "b": 5, "c": 3}, "n_samples": 6},
            "test": {"tag_counts": {"z": 2}, "n_samples": 2},
        },
        "tag_counts": {"a": 1, "b": 5, "c": 3, "z": 2},
    }
    assert TagVocab.from_manifest(manifest, top_k=2).tags == ["b", "c"]
    assert TagVocab.from_manifest(manifest, split="test").tags == ["z"]
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    assert TagVocab.from_manifest(tmp_path, exclude=["b"]).tags == ["c", "a"]
    with pytest.raises(ValueError, match="no split 'val'"):
        TagVocab.from_manifest(manifest, split="val")
