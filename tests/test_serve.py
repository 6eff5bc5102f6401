"""``musictag serve``: the JSON API on a real server, the command, and the page in headless Chromium."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import uvicorn

from musictag.cli import main
from musictag.inference import Inference
from musictag.search import EmbeddingSet, TrackIndex
from musictag.serve import create_app, load_app
from musictag.serve.app import STATIC

from .test_inference import CROP, SR, save_checkpoint, tiny_crnn

TAGS = ["rock", "jazz", "piano", "vocals", "electronic", "calm", "drums", "guitar"]
HOP = CROP // 2  # 0.25 s at 8 kHz
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


def segments_file(path: Path, seconds: float, seed: int) -> Path:
    """16-bit PCM (every browser plays it) of four sounds in turn: hum, buzz, noise, sweep."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    sounds = [
        np.sin(2 * np.pi * 110 * t),
        0.7 * np.sign(np.sin(2 * np.pi * 440 * t)),
        rng.standard_normal(t.size),
        np.sin(2 * np.pi * (300 + 600 * t / seconds) * t),
    ]
    order = np.roll(np.arange(4), seed)
    part = np.minimum((4 * t / seconds).astype(int), 3)
    x = 0.3 * np.choose(order[part], sounds)
    sf.write(path, x.astype(np.float32), SR, subtype="PCM_16")
    return path


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict:
    """A tiny fixed-weight checkpoint, three wav files and an index of them."""
    d = tmp_path_factory.mktemp("serve")
    model = tiny_crnn(tags=TAGS)
    with torch.no_grad():  # untrained: spread the logits so the scores follow the sounds
        model.head.fc.weight.mul_(20.0)
    ckpt = save_checkpoint(model, d / "tiny.ckpt")
    music = d / "music"
    music.mkdir()
    files = [segments_file(music / f"song{i}.wav", 3.0 + i, seed=i) for i in range(3)]
    assert (
        main(
            [
                "index",
                str(music),
                "-o",
                str(d / "index"),
                "--checkpoint",
                str(ckpt),
                "--hop-seconds",
                str(HOP / SR),
                "--quiet",
            ]
        )
        == 0
    )
    return {"ckpt": ckpt, "files": files, "index": d / "index", "dir": d}


@contextlib.contextmanager
def running(app) -> Iterator[str]:
    """Serve ``app`` with uvicorn on a free port of 127.0.0.1; stop it on exit."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()
        assert not thread.is_alive(), "server did not stop"


def post(url: str, body: bytes | Iterator[bytes], timeout: float = 30) -> tuple[int, list[dict]]:
    """POST ``body``; the status and the NDJSON lines (or the one JSON error document)."""
    req = urllib.request.Request(url, data=body, method="POST")
    req.add_header("Content-Type", "application/octet-stream")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as res:
            assert res.headers["Content-Type"] == "application/x-ndjson"
            return res.status, [json.loads(x) for x in res if x.strip()]
    except urllib.error.HTTPError as e:
        assert e.headers["Content-Type"] == "application/json"
        return e.code, [json.loads(e.read())]


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as res:
        assert res.headers["Content-Type"].startswith("application/json")
        return json.loads(res.read())


@pytest.fixture(scope="module")
def server(setup) -> Iterator[tuple[str, object]]:
    app = load_app(setup["ckpt"], setup["index"], batch_size=3, top_k=5)
    with running(app) as url:
        yield url, app
    assert not app.state.upload_dir.exists(), "the upload folder outlived the server"


def test_info_page_and_assets_are_local(server, setup):
    url, _ = server
    info = get_json(f"{url}/api/info")
    assert info["model"]["tags"] == TAGS and info["model"]["class"] == "CRNNTagger"
    assert info["model"]["window_s"] == 0.5 and info["model"]["hop_s"] == 0.25  # index's hop
    assert info["index"] == {"tracks": 3, "dim": 32, "backend": "exact", "layers": "last"}
    assert info["defaults"] == {"top_k": 5, "similar": 10}
    with urllib.request.urlopen(url + "/", timeout=10) as res:
        page = res.read().decode()
    assert "/static/app.js" in page and "/static/style.css" in page
    for name in ("app.js", "style.css"):
        with urllib.request.urlopen(f"{url}/static/{name}", timeout=10) as res:
            assert res.status == 200 and res.read() == (STATIC / name).read_bytes()
    # offline: nothing is fetched from another origin
    for asset in STATIC.iterdir():
        assert not re.search(
            r"(src|href)=\"(https?:)?//|url\(\s*['\"]?(https?:)?//", asset.read_text()
        ), asset


def test_analyze_streams_window_scores_then_the_result(server, setup):
    url, app = server
    song = setup["files"][2]  # 5 s: 19 windows of 0.5 s every 0.25 s, in batches of 3
    status, events = post(f"{url}/api/analyze?filename=My%20song.wav", song.read_bytes())
    assert status == 200
    kinds = [e["type"] for e in events]
    assert kinds == ["start"] + ["windows"] * 7 + ["result"]
    start, result = events[0], events[-1]
    assert start["file"] == "My song.wav" and start["duration_s"] == 5.0
    assert start["tags"] == TAGS and start["window_s"] == 0.5 and start["hop_s"] == 0.25
    ref = Inference(app_model(setup), hop=HOP)(song)
    starts = np.concatenate([e["start_s"] for e in events[1:-1]])
    scores = np.concatenate([e["scores"] for e in events[1:-1]])
    np.testing.assert_allclose(starts, ref.times, atol=1e-4)
    np.testing.assert_allclose(scores, ref.window_scores, atol=1e-4)
    assert result["file"] == "My song.wav" and result["windows"] == 19
    assert [t["tag"] for t in result["tags"]] == [t for t, _ in ref.top(5)]
    np.testing.assert_allclose([result["scores"][t] for t in TAGS], ref.scores, atol=1e-5)
    # the song is in the index: it is its own nearest track
    assert [h["rank"] for h in result["similar"]] == [1, 2, 3]
    assert result["similar"][0]["path"] == str(song)
    assert result["similar"][0]["score"] == pytest.approx(1.0, abs=1e-4)
    status, events = post(f"{url}/api/analyze?filename=x.wav&top_k=2&similar=0", song.read_bytes())
    assert status == 200 and len(events[-1]["tags"]) == 2 and "similar" not in events[-1]
    for name in ("..", "../../up.wav"):  # a name is only a label: nothing is written beside
        status, events = post(f"{url}/api/analyze?filename={name}", song.read_bytes())
        assert status == 200 and events[-1]["type"] == "result"
        assert events[0]["file"] == Path(name).name
    assert list(app.state.upload_dir.iterdir()) == []  # each upload is removed


def app_model(setup):
    from musictag.checkpoints import load_tagger

    return load_tagger(setup["ckpt"])


def test_bad_uploads_are_refused_with_the_file_named(server, setup, tmp_path):
    url, app = server
    status, [doc] = post(f"{url}/api/analyze?filename=notes.txt", b"just some text\n" * 50)
    assert status == 415
    assert doc["file"] == "notes.txt"
    assert (
        doc["error"] == "notes.txt: not an audio file that can be decoded (Format not recognised)"
    )
    status, [doc] = post(f"{url}/api/analyze?filename=empty.wav", b"")
    assert status == 400 and doc["error"].startswith("empty.wav: the upload is empty")
    status, [doc] = post(f"{url}/api/analyze?filename=a.wav&top_k=many", b"RIFF")
    assert status == 400 and "top_k must be an integer" in doc["error"]
    header_only = setup["files"][0].read_bytes()[:44]  # a WAV header and no samples
    status, [doc] = post(f"{url}/api/analyze?filename=cut.wav", header_only)
    assert status == 415
    assert doc["error"] == "cut.wav: not an audio file that can be decoded (no audio frames)"
    # a FLAC cut in half: its header reads, the decoder stops part way; what decodes is
    # analysed (as predict does) and the result says how much was missing
    flac = tmp_path / "long.flac"
    sf.write(flac, np.random.default_rng(0).standard_normal(SR * 20).astype(np.float32) / 4, SR)
    status, events = post(f"{url}/api/analyze?filename=cut.flac", flac.read_bytes()[:150_000])
    assert status == 200 and events[0]["duration_s"] == 20.0
    result = events[-1]
    assert result["type"] == "result" and result["file"] == "cut.flac"
    cut = result["truncated"]
    assert cut["expected_s"] == 20.0 and 0 < cut["decoded_s"] < 20.0
    assert "musictag-serve" not in cut["detail"]  # no temp path
    assert list(app.state.upload_dir.iterdir()) == []
    small = create_app(app_model(setup), max_upload_bytes=10_000)
    with running(small) as small_url:
        status, [doc] = post(f"{small_url}/api/analyze?filename=big.wav", os.urandom(20_000))
        assert status == 413 and doc["error"].startswith("big.wav: larger than the upload limit")
        # without a Content-Length (chunked), the limit applies while the body arrives
        chunks = iter([os.urandom(4000)] * 5)
        status, [doc] = post(f"{small_url}/api/analyze?filename=big2.wav", chunks)
        assert status == 413 and doc["error"].startswith("big2.wav: larger than the upload limit")
        assert list(small.state.upload_dir.iterdir()) == []
        info = get_json(f"{small_url}/api/info")
        assert info["index"] is None and info["defaults"]["similar"] == 0


def test_serve_command_wiring_and_errors(setup, monkeypatch, capsys, tmp_path):
    served = {}
    monkeypatch.setattr(
        "musictag.serve.run", lambda app, host, port: served.update(app=app, port=port)
    )
    args = ["serve", str(setup["ckpt"]), "--index", str(setup["index"]), "--port", "8765"]
    assert main([*args, "--hop-seconds", "0.1", "--max-upload-mb", "1"]) == 0
    assert "http://127.0.0.1:8765/" in capsys.readouterr().out and served["port"] == 8765
    assert served["app"].state.upload_dir.is_dir()
    shutil.rmtree(served["app"].state.upload_dir)
    assert main(["serve", str(tmp_path / "missing.ckpt")]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
    assert main(["serve", str(setup["ckpt"]), "--batch-size", "0"]) == 2
    assert "batch_size must be at least 1" in capsys.readouterr().err
    # an index of other embeddings (another model) is refused at start
    tracks = [{"id": "a", "path": "a.wav", "tags": []}, {"id": "b", "path": "b.wav", "tags": []}]
    TrackIndex(EmbeddingSet(np.eye(2, 16, dtype=np.float32), tracks)).save(tmp_path / "other")
    assert main(["serve", str(setup["ckpt"]), "--index", str(tmp_path / "other")]) == 2
    assert "holds 16-d embeddings but the model makes 32-d" in capsys.readouterr().err


# ------------------------------------------------------------------------------ the browser
def _chrome():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        pytest.fail(
            f"{', '.join(map(str, missing))} missing: apt-get update && "
            "apt-get install -y chromium chromium-driver (.ci/run installs them)"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1000,1230",
        "--mute-audio",
    ):
        options.add_argument(arg)
    return webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))


@pytest.mark.slow
def test_page_in_headless_chromium(server, setup, tmp_path_factory, monkeypatch, record_artifact):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    monkeypatch.setenv("SE_OFFLINE", "true")  # selenium-manager must not download anything
    url, _ = server
    song = setup["files"][2]
    _, events = post(f"{url}/api/analyze?filename=song2.wav", song.read_bytes())
    expected = events[-1]
    driver = _chrome()
    try:
        wait = WebDriverWait(driver, 20)
        driver.get(url + "/")
        wait.until(lambda d: "CRNNTagger" in d.find_element(By.ID, "model-info").text)
        assert "index of 3 tracks" in driver.find_element(By.ID, "model-info").text
        text = tmp_path_factory.mktemp("browser") / "notes.txt"
        text.write_text("not audio\n")
        driver.find_element(By.ID, "file").send_keys(str(text))
        wait.until(
            lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-state") == "error"
        )
        assert driver.find_element(By.ID, "status").text == (
            "notes.txt: not an audio file that can be decoded (Format not recognised)"
        )
        driver.find_element(By.ID, "file").send_keys(str(song))
        wait.until(
            lambda d: (
                d.find_element(By.TAG_NAME, "body").get_attribute("data-state") in ("done", "error")
            )
        )
        status = driver.find_element(By.ID, "status").text
        assert driver.find_element(By.TAG_NAME, "body").get_attribute("data-state") == "done", (
            status
        )
        assert status.startswith("song2.wav: 19 windows scored")
        top = driver.find_elements(By.CSS_SELECTOR, "#top-tags li")
        assert [li.get_attribute("data-tag") for li in top] == [t["tag"] for t in expected["tags"]]
        rows = driver.find_elements(By.CSS_SELECTOR, "#similar tbody tr")
        assert len(rows) == 3 and str(song) in rows[0].text
        # the "Now" bars follow the playback position
        wait.until(
            lambda d: d.execute_script("return document.getElementById('player').readyState") >= 1
        )
        now = {}
        for t in (0.5, 4.0):
            driver.execute_script(f"document.getElementById('player').currentTime = {t};")
            wait.until(
                lambda d, t=t: (
                    abs(float(d.find_element(By.ID, "now-bars").get_attribute("data-time")) - t)
                    < 1e-3
                )
            )
            bars = driver.find_elements(By.CSS_SELECTOR, "#now-bars li")
            now[t] = {
                li.get_attribute("data-tag"): float(li.get_attribute("data-score")) for li in bars
            }
        assert set(now[0.5]) == set(TAGS) and now[0.5] != now[4.0]
        # 0.5 s is the centre of window 1 (0.25-0.75 s): its scores exactly
        window1 = dict(zip(TAGS, events[1]["scores"][1]))
        for tag, score in now[0.5].items():
            assert score == pytest.approx(window1[tag], abs=1e-3)
        driver.execute_script("document.getElementById('player').currentTime = 2.6;")
        time.sleep(0.3)
        out = Path(
            os.environ.get("MUSICTAG_SERVE_SCREENSHOT")
            or tmp_path_factory.mktemp("screenshots") / "serve.png"
        )
        out.parent.mkdir(parents=True, exist_ok=True)
        assert driver.save_screenshot(str(out)) and out.stat().st_size > 10_000
        record_artifact("musictag serve screenshot", out)
    finally:
        driver.quit()
