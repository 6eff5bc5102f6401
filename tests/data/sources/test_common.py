"""Tests for musictag.data.sources.common: seeded stratified splits, column checks, audio paths."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import pytest

from musictag.data.shards import AudioItem
from musictag.data.sources.common import (
    SPLITS,
    check_audio_files,
    check_columns,
    resolve_audio,
    split_sizes,
    stratified_split,
)


@pytest.mark.parametrize(
    "n, fractions, expected",
    [
        (100, (0.8, 0.1, 0.1), [80, 10, 10]),
        (1000, (0.8, 0.1, 0.1), [800, 100, 100]),
        (5, (0.8, 0.1, 0.1), [4, 1, 0]),  # tie between val and test: the earlier split wins
        (7, (0.8, 0.1, 0.1), [5, 1, 1]),
        (10, (8, 1, 1), [8, 1, 1]),  # weights need not sum to 1
        (3, (1, 0, 0), [3, 0, 0]),
        (0, (0.8, 0.1, 0.1), [0, 0, 0]),
    ],
)
def test_split_sizes(n, fractions, expected):
    assert split_sizes(n, fractions) == expected


@pytest.mark.parametrize("fractions", [(), (0, 0, 0), (0.9, -0.1, 0.2), (float("nan"), 1, 1)])
def test_split_sizes_rejects_bad_fractions(fractions):
    with pytest.raises(ValueError, match="fractions"):
        split_sizes(10, fractions)


def _by_label(sizes: dict[str, int]) -> dict[str, list[str]]:
    return {label: [f"{label}.{i:05d}" for i in range(n)] for label, n in sizes.items()}


def test_stratified_split_exact_proportions_and_partition():
    items = _by_label({"blues": 100, "rock": 100, "jazz": 99})
    out = stratified_split(items, (0.8, 0.1, 0.1), seed=0)
    assert list(out) == list(SPLITS)
    per = {s: Counter(x.split(".")[0] for x in v) for s, v in out.items()}
    assert per["train"] == {"blues": 80, "rock": 80, "jazz": 79}
    assert per["val"] == {"blues": 10, "rock": 10, "jazz": 10}
    assert per["test"] == {"blues": 10, "rock": 10, "jazz": 10}
    every = [x for v in out.values() for x in v]
    assert sorted(every) == sorted(x for v in items.values() for x in v)  # each item exactly once
    # labels visited in sorted order; within a label, input order is kept
    assert out["val"] == sorted(out["val"])


def test_stratified_split_is_deterministic_and_seeded():
    items = _by_label({"a": 50, "b": 30})
    first = stratified_split(items, (0.6, 0.2, 0.2), seed=3)
    assert stratified_split(items, (0.6, 0.2, 0.2), seed=3) == first
    # the order of the labels in the mapping does not matter
    reordered = {"b": items["b"], "a": items["a"]}
    assert stratified_split(reordered, (0.6, 0.2, 0.2), seed=3) == first
    # another label does not change how "a" is split
    more = {**items, "c": [f"c{i}" for i in range(40)]}
    again = stratified_split(more, (0.6, 0.2, 0.2), seed=3)
    assert [x for x in again["test"] if x.startswith("a.")] == [
        x for x in first["test"] if x.startswith("a.")
    ]
    assert stratified_split(items, (0.6, 0.2, 0.2), seed=4) != first


def test_stratified_split_custom_names_and_errors():
    out = stratified_split({"x": list(range(10))}, (1, 1), seed=0, names=("fit", "holdout"))
    assert {k: len(v) for k, v in out.items()} == {"fit": 5, "holdout": 5}
    assert stratified_split({}, (0.8, 0.1, 0.1), seed=0) == {"train": [], "val": [], "test": []}
    with pytest.raises(ValueError, match="one fraction per split"):
        stratified_split({"x": [1]}, (0.5, 0.5), seed=0)
    with pytest.raises(ValueError, match="unique"):
        stratified_split({"x": [1]}, (0.5, 0.5), seed=0, names=("a", "a"))


def test_check_columns(tmp_path):
    path = tmp_path / "meta.tsv"
    index = check_columns(path, ["id", "path", "tags", "path"], ["path", "id"])
    assert index == {"id": 0, "path": 1, "tags": 2}
    with pytest.raises(ValueError) as e:
        check_columns(path, ["id", "tags"], ["id", "path", "split"])
    msg = str(e.value)
    assert str(path) in msg and "'path'" in msg and "'split'" in msg and "'tags'" in msg


def test_resolve_audio(tmp_path):
    assert resolve_audio(tmp_path, "f/clip-30-59.mp3") == tmp_path / "f" / "clip-30-59.mp3"
    assert resolve_audio(tmp_path, "a\\b.wav") == tmp_path / "a" / "b.wav"
    for bad in ["", "/etc/passwd", "../x.mp3", "a/../../x.mp3", "C:/x.wav"]:
        with pytest.raises(ValueError, match="relative"):
            resolve_audio(tmp_path, bad)


def test_check_audio_files(tmp_path, caplog):
    present = tmp_path / "a.wav"
    present.write_bytes(b"x")
    splits = {
        "train": [AudioItem(present), AudioItem(tmp_path / "gone1.wav")],
        "val": [AudioItem(tmp_path / "gone2.wav")],
    }
    with pytest.raises(FileNotFoundError, match=r"2 of 3 audio files are missing.*gone1\.wav"):
        check_audio_files(splits, root=tmp_path, skip_missing=False, source="demo")
    with caplog.at_level(logging.WARNING):
        assert check_audio_files(splits, root=tmp_path, skip_missing=True, source="demo") == 2
    assert "2 of 3 audio files are missing" in caplog.text
    complete = {"train": [AudioItem(present)]}
    assert check_audio_files(complete, root=tmp_path, skip_missing=False, source="d") == 0
    nothing = {"train": [AudioItem(tmp_path / "x" / "y.wav")]}
    with pytest.raises(FileNotFoundError, match="none of the 1 audio files"):
        check_audio_files(nothing, root=tmp_path, skip_missing=True, source="demo")
    assert isinstance(resolve_audio(tmp_path, "x.wav"), Path)
