"""Fault injection: the shard writer killed with SIGKILL midway, then rerun, gives the same bytes
as an uninterrupted run (manifest, sidecars and shards)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from musictag.data.integrity import verify_shards
from musictag.data.shards import AudioItem, write_shards

SR = 8000
REPO = Path(__file__).resolve().parents[1]

# The child writes one shard of two tracks at a time, slowed down so that it is killed midway.
CHILD = """
import sys, time
from pathlib import Path
import musictag.data.shards.writer as shards

encode = shards._encode_audio
def slow(*args, **kwargs):
    time.sleep(0.15)
    return encode(*args, **kwargs)
shards._encode_audio = slow
wav = sorted(Path(sys.argv[1]).glob("*.wav"))
items = [shards.AudioItem(p, tags=("t" + p.stem[-1],)) for p in wav]
shards.write_shards({"train": items[:12], "test": items[12:]}, sys.argv[2], sample_rate=8000,
                    max_samples_per_shard=2, progress=False)
"""


def _items(wav: Path) -> dict[str, list[AudioItem]]:
    items = [AudioItem(p, tags=("t" + p.stem[-1],)) for p in sorted(wav.glob("*.wav"))]
    return {"train": items[:12], "test": items[12:]}


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
def test_shard_writer_killed_midway_then_rerun_gives_identical_bytes(tmp_path):
    wav = tmp_path / "wav"
    wav.mkdir()
    rng = np.random.default_rng(0)
    for i in range(16):
        sf.write(wav / f"track{i:02d}.wav", rng.uniform(-0.5, 0.5, 3000 + 100 * i), SR)
    reference = tmp_path / "reference"
    write_shards(_items(wav), reference, sample_rate=SR, max_samples_per_shard=2, progress=False)

    out = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(wav), str(out)], env=env)
    deadline = time.monotonic() + 60
    while len(list((out / ".parts").glob("*.json"))) < 3:  # 3 of 8 shards finished
        assert child.poll() is None, "the writer ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    os.kill(child.pid, signal.SIGKILL)
    assert child.wait() == -signal.SIGKILL
    assert not (out / "manifest.json").exists()
    finished = len(list((out / ".parts").glob("*.json")))
    assert 3 <= finished < 8

    report = write_shards(_items(wav), out, sample_rate=SR, max_samples_per_shard=2, progress=False)
    assert report.n_skipped_shards == finished  # finished shards were kept, not rewritten
    assert _files(out) == _files(reference)  # manifest, failures, sidecars, shards; no .tmp left
    assert verify_shards(out).ok
