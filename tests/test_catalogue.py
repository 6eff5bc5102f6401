"""Catalogue runs (``predict/embed --db``): the SQLite results database and its journal, resume
after ``kill -9``, and a 2-process DDP run that tags every file exactly once."""

from __future__ import annotations

import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import numpy as np
import pytest

from musictag.catalogue import read_results
from musictag.cli import main
from musictag.search import EmbeddingSet
from tests.recipes.miniature import one_torch_thread  # noqa: F401 (autouse fixture)
from tests.test_inference import noise_file, save_checkpoint, tiny_crnn

REPO = Path(__file__).resolve().parents[1]
N_FILES = 13  # odd: two ranks get 7 and 6 files


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory) -> tuple[Path, list[Path]]:
    """A tiny checkpoint and 13 files of 0.5-1.5 s (1 to 3 windows of the model)."""
    root = tmp_path_factory.mktemp("catalogue")
    ckpt = save_checkpoint(tiny_crnn(), root / "tiny.ckpt")
    (root / "audio" / "sub").mkdir(parents=True)
    files = [
        noise_file(
            root / "audio" / ("sub" if i % 4 == 0 else "") / f"{i:02d}.wav",
            0.5 + 0.25 * (i % 5),
            seed=i,
        )
        for i in range(N_FILES)
    ]
    return ckpt, sorted(files)


def _tracks(db: Path) -> list[tuple]:
    with closing(sqlite3.connect(db)) as con:
        return con.execute("SELECT path, run, rank, finished FROM tracks ORDER BY path").fetchall()


def _scores(db: Path, files) -> dict[str, np.ndarray]:
    return {str(p): r.scores for p, r in read_results(db, files)}


def _env() -> dict[str, str]:
    # one thread per process: several musictag processes share a small machine
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def test_db_run_equals_plain_predict_resumes_and_keeps_failures(
    catalogue, tmp_path, caplog, capsys
):
    ckpt, files = catalogue
    audio = files[0].parent
    bad = tmp_path / "bad.wav"
    bad.write_text("not audio")
    listing = tmp_path / "list.txt"
    listing.write_text("\n".join(map(str, [*files[:5], bad, *files[5:]])) + "\n")
    db = tmp_path / "out" / "tags.sqlite"
    base = ["predict", str(ckpt), f"@{listing}", "--quiet", "--format", "json", "--top-k", "3"]
    assert main([*base, "-o", str(tmp_path / "plain.json")]) == 0
    run = [*base, "--db", str(db), "--files-per-step", "3"]
    assert main([*run, "-o", str(tmp_path / "db.json")]) == 0

    plain = json.loads((tmp_path / "plain.json").read_text())
    stored = json.loads((tmp_path / "db.json").read_text())
    assert [d["file"] for d in stored] == [d["file"] for d in plain] == list(map(str, files))
    for a, b in zip(stored, plain):
        assert [t["tag"] for t in a["tags"]] == [t["tag"] for t in b["tags"]]
        assert np.allclose(
            [t["score"] for t in a["tags"]], [t["score"] for t in b["tags"]], atol=2e-6
        )
    first = _tracks(db)
    assert len(first) == N_FILES and {r[1] for r in first} == {1}
    assert not (db.parent / "tags.sqlite.parts").exists()  # merged and removed

    # a rerun redoes nothing but the failed file, which is retried and counted again
    caplog.clear()
    caplog.set_level(logging.INFO)
    assert main([*run, "--format", "csv", "-o", str(tmp_path / "db.csv")]) == 0
    assert f"{db}: run 2, {N_FILES} of {N_FILES + 1} files already done, 1 to do" in caplog.text
    assert _tracks(db) == first
    with closing(sqlite3.connect(db)) as con:
        [(path, error, attempts)] = con.execute("SELECT path, error, attempts FROM failures")
        assert con.execute("SELECT run, files, pending FROM runs").fetchall() == [
            (1, N_FILES + 1, N_FILES + 1),
            (2, N_FILES + 1, 1),
        ]
        labels = con.execute("SELECT path, rank, tag FROM labels ORDER BY path, rank").fetchall()
    assert path == str(bad) and str(bad) in error and attempts == 2
    assert len(labels) == 3 * N_FILES
    csv_rows = (tmp_path / "db.csv").read_text().splitlines()
    assert len(csv_rows) == 1 + 3 * N_FILES and csv_rows[1].startswith(f"{files[0]},1,")

    # the database only resumes with the settings it was made with
    assert main([*run, "--hop-seconds", "0.25"]) == 2
    err = capsys.readouterr().err
    assert f"{db}: results made with other settings (hop: 4000 there, 2000 now)" in err
    # a folder adds no new file: its files are the listed ones, already done
    again = ["predict", str(ckpt), str(audio), f"@{listing}", "--quiet", "--db", str(db)]
    assert main([*again, "--top-k", "3", "--format", "json", "-o", str(tmp_path / "a.json")]) == 0
    assert json.loads((tmp_path / "a.json").read_text()) == stored
    assert _tracks(db) == first


def test_embed_db_equals_plain_embed(catalogue, tmp_path):
    ckpt, files = catalogue
    audio = str(files[0].parent)
    assert main(["embed", str(ckpt), audio, "-o", str(tmp_path / "plain"), "--quiet"]) == 0
    db = tmp_path / "emb.sqlite"
    args = ["embed", str(ckpt), audio, "-o", str(tmp_path / "db"), "--db", str(db), "--quiet"]
    assert main(args) == 0
    plain, stored = EmbeddingSet.load(tmp_path / "plain"), EmbeddingSet.load(tmp_path / "db")

    def without_scores(tracks):
        return [{**t, "predicted": [tag for tag, _ in t["predicted"]]} for t in tracks]

    assert without_scores(stored.tracks) == without_scores(plain.tracks)
    assert len(stored.tracks[0]["predicted"]) == 4  # top 5 of the 4 tags
    assert stored.vectors.shape == (N_FILES, plain.dim)
    np.testing.assert_allclose(stored.vectors, plain.vectors, atol=1e-6)
    assert stored.meta == plain.meta


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs a named pipe (POSIX)")
@pytest.mark.parametrize("command", ["predict", "embed"])
def test_kill_9_then_rerun_redoes_nothing_finished(catalogue, tmp_path, command):
    ckpt, files = catalogue
    # file 8 is a named pipe: opening it blocks, like a stalled network mount, and the job is
    # killed there; files 0-5 at least (3 steps of 2) are journaled by then
    stalled = tmp_path / "stalled.wav"
    os.mkfifo(stalled)
    inputs = [*files[:8], stalled, *files[8:]]
    listing = tmp_path / "list.txt"
    listing.write_text("\n".join(map(str, inputs)) + "\n")
    db = tmp_path / "tags.sqlite"
    out = tmp_path / ("out.json" if command == "predict" else "out")
    options = ["--quiet", "--format", "json"] if command == "predict" else ["--quiet"]
    cmd = [
        sys.executable, "-m", "musictag", command, str(ckpt), f"@{listing}", "--db", str(db),
        "--files-per-step", "2", *options, "-o", str(out),
    ]  # fmt: skip
    job = subprocess.Popen(cmd, cwd=REPO, env=_env(), stderr=subprocess.PIPE, text=True)
    part = tmp_path / "tags.sqlite.parts" / "run0001-rank00000.sqlite"
    deadline = time.monotonic() + 180
    try:
        while time.monotonic() < deadline and job.poll() is None:
            try:
                if part.is_file() and len(_tracks(part)) >= 6:
                    break
            except sqlite3.OperationalError:
                pass  # the part is being created
            time.sleep(0.2)
        assert job.poll() is None, f"the job ended before it was killed: {job.stderr.read()}"
    finally:
        job.send_signal(signal.SIGKILL)
        job.wait(timeout=30)
    assert job.returncode == -signal.SIGKILL
    assert not out.exists()
    journaled = _tracks(part)  # what survived the kill
    assert 6 <= len(journaled) < len(inputs)
    assert {r[0] for r in journaled} <= {str(f) for f in files[:8]}

    stalled.unlink()
    noise_file(stalled, 1.25, seed=99)  # the mount is back
    rerun = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    done = len(journaled)
    assert f"recovered {done} results journaled by an interrupted run" in rerun.stderr
    assert f"run 2, {done} of {len(inputs)} files already done, {len(inputs) - done} to do" in (
        rerun.stderr
    )
    final = _tracks(db)
    assert [r[0] for r in final] == sorted({str(f) for f in inputs})  # each file once
    assert [r for r in final if r[1] == 1] == journaled  # finished files were not redone
    assert not part.exists()

    # the same results as an uninterrupted run
    ref = tmp_path / "ref.sqlite"
    ref_out = tmp_path / ("ref.json" if command == "predict" else "ref")
    args = [command, str(ckpt), f"@{listing}", "--db", str(ref), *options, "-o", str(ref_out)]
    assert main(args) == 0
    if command == "predict":
        assert [d["file"] for d in json.loads(out.read_text())] == list(map(str, inputs))
        assert [d["file"] for d in json.loads(ref_out.read_text())] == list(map(str, inputs))
        got, want = _scores(db, inputs), _scores(ref, inputs)
        assert got.keys() == want.keys() and len(got) == len(inputs)
        for k in want:
            np.testing.assert_allclose(got[k], want[k], atol=1e-6)
    else:
        got, want = EmbeddingSet.load(out), EmbeddingSet.load(ref_out)
        assert [t["path"] for t in got.tracks] == [t["path"] for t in want.tracks]
        assert [t["path"] for t in got.tracks] == list(map(str, inputs))
        np.testing.assert_allclose(got.vectors, want.vectors, atol=1e-6)


def test_two_process_ddp_tags_every_file_exactly_once(catalogue, tmp_path):
    ckpt, files = catalogue
    audio = str(files[0].parent)
    db = tmp_path / "ddp.sqlite"
    cmd = [
        sys.executable, "-m", "musictag", "predict", str(ckpt), audio, "--db", str(db),
        "--accelerator", "cpu", "--devices", "2", "--strategy", "ddp", "--files-per-step", "2",
        "--quiet", "--format", "json", "-o", str(tmp_path / "ddp.json"),
    ]  # fmt: skip
    ddp = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300)
    assert ddp.returncode == 0, ddp.stderr
    assert "13 to do on 2 process(es)" in ddp.stderr

    rows = _tracks(db)
    # every file exactly once (the sampler does not pad), split 7 / 6 between the two ranks
    assert [r[0] for r in rows] == sorted(map(str, files))
    per_rank = sorted(sum(r[2] == rank for r in rows) for rank in (0, 1))
    assert per_rank == [6, 7]
    assert [d["file"] for d in json.loads((tmp_path / "ddp.json").read_text())] == list(
        map(str, files)
    )

    # the catalogue grows by one file: one rank has nothing to do, the other tags just that file
    new = noise_file(tmp_path / "new.wav", 1.0, seed=50)
    listing = tmp_path / "list.txt"
    listing.write_text("\n".join(map(str, [*files, new])) + "\n")
    cmd[cmd.index(audio)] = f"@{listing}"
    grown = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300)
    assert grown.returncode == 0, grown.stderr
    assert f"run 2, {N_FILES} of {N_FILES + 1} files already done, 1 to do on 2" in grown.stderr
    after = _tracks(db)
    assert [r for r in after if r[1] == 1] == rows
    assert [r[:2] for r in after if r[1] == 2] == [(str(new), 2)]

    single = tmp_path / "single.sqlite"
    assert (
        main(["predict", str(ckpt), audio, "--db", str(single), "--quiet", "-o", os.devnull]) == 0
    )
    got, want = _scores(db, files), _scores(single, files)
    assert got.keys() == want.keys() and len(want) == N_FILES
    for k in want:
        np.testing.assert_allclose(got[k], want[k], atol=1e-6)


def test_parts_killed_before_their_schema_or_damaged_do_not_block_a_resume(tmp_path, caplog):
    from musictag.catalogue import _connect, _merge_parts

    parts = tmp_path / "tags.sqlite.parts"
    parts.mkdir()
    with closing(sqlite3.connect(parts / "run0001-rank00000.sqlite")) as con:
        con.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        con.commit()  # killed here: the part has no tracks table yet
    (parts / "run0001-rank00001.sqlite").write_bytes(b"\x00not a database" * 100)
    with closing(_connect(parts / "run0001-rank00002.sqlite", wal=True)) as con:
        args = ("/a.wav", "a.wav", "a", 1, b"", b"", b"", None, 1, 2, 0.0)
        con.execute("INSERT INTO tracks VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", args)
        con.commit()
    with closing(_connect(tmp_path / "tags.sqlite")) as con:
        assert _merge_parts(con, tmp_path / "tags.sqlite") == 1
        assert con.execute("SELECT path, rank FROM tracks").fetchall() == [("/a.wav", 2)]
    assert sorted(p.name for p in parts.iterdir()) == ["run0001-rank00001.damaged"]
    assert "run0001-rank00001.sqlite: unreadable part database" in caplog.text
