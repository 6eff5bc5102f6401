"""Embedding sets, the similarity index (exact and faiss) and the embed/index/search commands."""

from __future__ import annotations

import json
import logging
import shutil
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

from musictag.cli import main
from musictag.data.shards import AudioItem, write_shards
from musictag.inference import tag_file
from musictag.search import EmbeddingSet, TrackIndex, embed_file, embed_tracks, faiss_available
from musictag.tta import extract_crops, window_starts

from .test_inference import CROP, SR, noise_file, save_checkpoint, tiny_crnn


def random_set(n: int = 60, d: int = 16, seed: int = 0) -> EmbeddingSet:
    vectors = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    tracks = [
        {"id": f"t{i}", "path": f"/music/{i}.mp3", "tags": ["x"] if i % 2 else []} for i in range(n)
    ]
    return EmbeddingSet(vectors, tracks, {"layers": "last"})


def test_exact_search_ranks_by_cosine():
    emb = random_set()
    index = TrackIndex(emb, backend="exact")
    queries = np.stack([3.0 * emb.vectors[7], emb.vectors[20] + 0.01])
    hits = index.search(queries, top_k=5)
    assert hits[0][0].index == 7 and hits[0][0].score == pytest.approx(1.0, abs=1e-6)
    assert hits[0][0].track["id"] == "t7" and hits[1][0].index == 20
    unit = emb.vectors / np.linalg.norm(emb.vectors, axis=1, keepdims=True)
    cos = unit @ (queries[1] / np.linalg.norm(queries[1]))
    expected = np.argsort(-cos)[:5]
    assert [h.index for h in hits[1]] == expected.tolist()
    np.testing.assert_allclose([h.score for h in hits[1]], cos[expected], atol=1e-6)
    assert [h.rank for h in hits[1]] == [1, 2, 3, 4, 5]
    with pytest.raises(ValueError, match=r"\[Q, 16\]"):
        index.search(np.zeros(8))


def test_index_files_are_npy_and_json(tmp_path):
    index = TrackIndex.build([random_set(20), random_set(10, seed=1)], backend="exact")
    index.save(tmp_path / "idx")
    vectors = np.load(tmp_path / "idx" / "embeddings.npy", allow_pickle=False)
    assert vectors.shape == (30, 16) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)
    doc = json.loads((tmp_path / "idx" / "index.json").read_text())
    assert doc["format"] == "musictag-embeddings" and doc["n"] == 30 and doc["normalized"]
    assert doc["tracks"][25]["id"] == "t5"
    again = TrackIndex.load(tmp_path / "idx")
    q = random_set(3, seed=2).vectors
    assert [[h.index for h in r] for r in again.search(q, 4)] == [
        [h.index for h in r] for r in index.search(q, 4)
    ]
    (tmp_path / "idx" / "index.json").write_text('{"format": "other"}')
    with pytest.raises(ValueError, match="not a musictag index"):
        TrackIndex.load(tmp_path / "idx")
    with pytest.raises(ValueError, match="different sizes"):
        EmbeddingSet.concat([random_set(3), random_set(3, d=8)])


@pytest.mark.skipif(not faiss_available(), reason="faiss-cpu not installed (extra 'ann')")
def test_faiss_backend_agrees_with_exact(tmp_path):
    emb = random_set(400, 32)
    exact = TrackIndex(emb, backend="exact")
    ann = TrackIndex(emb, backend="faiss")
    assert ann.backend == "faiss"
    q = np.concatenate([emb.vectors[:5], random_set(5, 32, seed=3).vectors])
    e, a = exact.search(q, 5), ann.search(q, 5)
    assert [r[0].index for r in a] == [r[0].index for r in e]
    for re_, ra in zip(e, a):
        np.testing.assert_allclose([h.score for h in ra], [h.score for h in re_], atol=1e-5)
    ann.save(tmp_path / "idx")
    assert (tmp_path / "idx" / "hnsw.faiss").is_file()
    loaded = TrackIndex.load(tmp_path / "idx")
    assert loaded.backend == "faiss" and loaded.search(q[:1], 1)[0][0].index == 0


def test_falls_back_to_exact_without_faiss(monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "faiss", None)  # import faiss -> ImportError
    with caplog.at_level(logging.INFO, logger="musictag.search"):
        index = TrackIndex(random_set(), backend="faiss")
    assert index.backend == "exact"
    assert "faiss is not installed" in caplog.text and "musictag[ann]" in caplog.text
    assert index.search(random_set().vectors[3], 1)[0][0].index == 3
    small = TrackIndex(random_set(), backend="auto")  # small: exact, faiss or not
    assert small.backend == "exact"


def test_shard_tracks_use_the_k_crop_protocol(tmp_path):
    model = tiny_crnn()
    items = [
        AudioItem(noise_file(tmp_path / f"{i}.wav", 1.0 + i, seed=i), tags=(["a"], ["a", "b"])[i])
        for i in range(2)
    ]
    write_shards({"test": items}, tmp_path / "shards", sample_rate=SR, progress=False)
    out = list(embed_tracks(model, [str(tmp_path / "shards")], crops=3))
    assert [info["tags"] for info, _ in out] == [["a"], ["a", "b"]]
    assert out[1][0]["id"] == "1" and out[1][0]["split"] == "test"
    from musictag.inference import iter_shard_tracks

    for (info, emb), (_, wave, _) in zip(out, iter_shard_tracks(tmp_path / "shards")):
        with torch.no_grad():
            ref = model.embed(extract_crops(torch.from_numpy(wave), model.crop_samples, 3))
        np.testing.assert_allclose(emb, ref.mean(0).numpy(), atol=1e-6)
        assert len(info["predicted"]) == 4


@pytest.mark.slow
def test_embed_index_search_commands_find_a_duplicate(tmp_path, capsys):
    ckpt = save_checkpoint(tiny_crnn(), tmp_path / "m.ckpt")
    music = tmp_path / "music"
    music.mkdir()
    for i in range(4):
        noise_file(music / f"{i}.wav", 1.5 + 0.5 * i, seed=i)
    query = tmp_path / "query.wav"
    shutil.copy(music / "2.wav", query)  # an exact duplicate of music/2.wav, under another name
    common = ["--quiet", "--hop-seconds", "0.25"]
    assert main(["embed", str(ckpt), str(music), "-o", str(tmp_path / "emb"), *common]) == 0
    first = np.load(tmp_path / "emb" / "embeddings.npy")
    assert main(["embed", str(ckpt), str(music), "-o", str(tmp_path / "emb2"), *common]) == 0
    assert np.array_equal(first, np.load(tmp_path / "emb2" / "embeddings.npy"))  # deterministic
    doc = json.loads((tmp_path / "emb" / "index.json").read_text())
    assert first.shape == (4, 32) and [t["id"] for t in doc["tracks"]] == ["0", "1", "2", "3"]
    assert doc["protocol"]["hop"] == 2000
    assert main(["index", str(tmp_path / "emb"), "-o", str(tmp_path / "idx")]) == 0
    capsys.readouterr()
    assert (
        main(["search", str(tmp_path / "idx"), str(query), "--top-k", "3", "--format", "json"]) == 0
    )
    [result] = json.loads(capsys.readouterr().out)
    best = result["results"][0]
    assert best["id"] == "2" and best["score"] == pytest.approx(1.0, abs=1e-5)
    assert [r["rank"] for r in result["results"]] == [1, 2, 3]
    assert result["results"][1]["score"] < best["score"]
    # a stored embedding as the query
    np.save(tmp_path / "q.npy", first[3])
    assert main(["search", str(tmp_path / "idx"), str(tmp_path / "q.npy"), "--top-k", "1"]) == 0
    assert "  1  1.0000  3  " in capsys.readouterr().out
    # audio inputs to `index` need a checkpoint
    assert main(["index", str(music), "-o", str(tmp_path / "x")]) == 2


def test_embeddings_are_deterministic_window_means(tmp_path):
    model = tiny_crnn()
    path = noise_file(tmp_path / "a.wav", 2.6)
    wave, _ = sf.read(path, dtype="float32")
    a = embed_file(model, path, hop=2000)
    assert np.array_equal(a, embed_file(model, path, hop=2000))
    starts = window_starts(wave.size, CROP, 2000)
    with torch.no_grad():
        windows = torch.from_numpy(np.stack([wave[s : s + CROP] for s in starts]))
        ref = model.embed(windows).numpy()
    np.testing.assert_allclose(a, ref.mean(0), atol=1e-6, rtol=0)
    both = tag_file(model, path, hop=2000, embeddings="all")
    plain = tag_file(model, path, hop=2000)
    # the head reuses the embedding: same scores as a plain forward
    np.testing.assert_allclose(both.window_scores, plain.window_scores, atol=1e-6, rtol=0)
    # "all": every stage pooled (4 conv stages of 8 + GRU stage 32) then the 32-d embedding
    assert both.window_embeddings.shape[0] == len(starts)
    np.testing.assert_allclose(both.embedding[-32:], a, atol=1e-6, rtol=0)
    assert both.embedding.shape == model.embed(windows[:1], "all").shape[1:]
