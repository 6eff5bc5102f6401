"""Expanding the command line's inputs: files, folders and ``@lists``."""

from __future__ import annotations

from pathlib import Path

import pytest

from musictag.inputs import collect_audio_files


def test_collect_audio_files(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    for name in ("a/1.wav", "a/b/2.MP3", "a/notes.txt", "a/b/3.flac"):
        (tmp_path / name).write_bytes(b"")
    lst = tmp_path / "list.txt"
    lst.write_text("# my files\n\na/notes.txt\n/abs/x.ogg\na/1.wav\n")
    got = collect_audio_files([str(tmp_path / "a"), f"@{lst}", str(tmp_path / "solo.xyz")])
    assert got == [
        tmp_path / "a/1.wav",
        tmp_path / "a/b/2.MP3",
        tmp_path / "a/b/3.flac",
        tmp_path / "a/notes.txt",
        Path("/abs/x.ogg"),
        tmp_path / "solo.xyz",
    ]
    with pytest.raises(FileNotFoundError, match="file list not found"):
        collect_audio_files(["@" + str(tmp_path / "nope.txt")])
