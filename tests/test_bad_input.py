"""Bad input files: what the messages say, truncation reported by the shard writer and by
`predict` (refused with strict), decode failures after a readable header in worker processes,
and `predict`'s exit status for inputs that name nothing."""

from __future__ import annotations

import io
import json
import logging
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from musictag.audio import (
    AudioReader,
    AudioReadError,
    TruncatedAudioError,
    load_audio,
    read_audio,
)
from musictag.cli import main
from musictag.data.shards import AudioItem, load_manifest, write_shards
from tests.test_inference import save_checkpoint, tiny_crnn

SR = 8000


def _audio(seconds: float = 2.0, channels: int = 1, seed: int = 0) -> np.ndarray:
    n = int(seconds * SR)
    return np.random.default_rng(seed).uniform(-0.5, 0.5, (n, channels)).astype(np.float32)


@pytest.fixture(scope="module")
def bad(tmp_path_factory) -> dict[str, Path]:
    """Good and broken files: truncated WAV / FLAC / MP3, a FLAC damaged in the middle, text
    renamed .mp3, an empty file, a dangling link."""
    d = tmp_path_factory.mktemp("bad")
    files = {}
    for fmt, ext in (("WAV", "wav"), ("FLAC", "flac"), ("MP3", "mp3")):
        buf = io.BytesIO()
        sf.write(buf, _audio(), SR, format=fmt)
        data = buf.getvalue()
        (d / f"good.{ext}").write_bytes(data)
        (d / f"truncated.{ext}").write_bytes(data[: len(data) // 2])
        files[f"good.{ext}"] = d / f"good.{ext}"
        files[f"truncated.{ext}"] = d / f"truncated.{ext}"
    flac = bytearray(files["good.flac"].read_bytes())
    middle = len(flac) // 2
    flac[middle : middle + 3000] = np.random.default_rng(1).bytes(3000)
    files["damaged.flac"] = d / "damaged.flac"
    files["damaged.flac"].write_bytes(bytes(flac))
    files["text.mp3"] = d / "text.mp3"
    files["text.mp3"].write_text("this is not audio\n" * 20)
    files["empty.wav"] = d / "empty.wav"
    files["empty.wav"].write_bytes(b"")
    files["dangling.wav"] = d / "dangling.wav"
    os.symlink(d / "nowhere.wav", files["dangling.wav"])
    return files


def test_messages_say_what_is_wrong_with_an_existing_file(bad):
    cases = {
        "text.mp3": "not decodable audio: the format is not recognised or the file is damaged",
        "empty.wav": "empty file (0 bytes)",
        "dangling.wav": "dangling symbolic link",
    }
    for name, words in cases.items():
        with pytest.raises(AudioReadError) as err:
            load_audio(bad[name], SR)
        message = str(err.value)
        assert message.startswith(f"{bad[name]}: {words}"), message
    # libsndfile's own text stays as detail
    with pytest.raises(AudioReadError, match=r"\(libsndfile: .*possibly a pipe"):
        load_audio(bad["text.mp3"], SR)


@pytest.mark.parametrize(
    "name", ["truncated.wav", "truncated.flac", "truncated.mp3", "damaged.flac"]
)
def test_truncation_is_noticed_with_decoded_and_expected_duration(bad, name, caplog):
    with caplog.at_level(logging.WARNING, logger="musictag"):
        x, truncation = read_audio(bad[name], SR)
    assert truncation is not None and truncation.expected_s == pytest.approx(2.0, abs=0.1)
    assert len(x) == truncation.decoded_frames and truncation.decoded_s < 1.9
    text = str(truncation)
    assert f"decoded {truncation.decoded_s:.2f} s of the 2.00 s its header promises" in text
    assert str(bad[name]) in caplog.text
    with pytest.raises(TruncatedAudioError, match="its header promises"):
        load_audio(bad[name], SR, strict=True)
    for good in ("good.wav", "good.flac", "good.mp3"):
        with AudioReader(bad[good]) as reader:
            reader.read()
            assert reader.truncation is None, good


@pytest.mark.parametrize("strict", [False, True])
def test_shard_writer_reports_truncation_and_decode_failures_with_two_workers(
    bad, tmp_path, strict, caplog
):
    """Files whose header reads but whose audio does not decode (fully), in worker processes."""
    names = ["good.wav", "truncated.wav", "damaged.flac", "truncated.mp3", "text.mp3", "good.flac"]
    items = [AudioItem(bad[n], tags=("x",), track_id=n.replace(".", "_")) for n in names]
    out = tmp_path / "shards"
    with caplog.at_level(logging.WARNING):
        report = write_shards(
            items, out, sample_rate=SR, max_samples_per_shard=2, workers=2, progress=False,
            strict=strict,
        )  # fmt: skip
    cut = ["truncated_wav", "damaged_flac", "truncated_mp3"]
    reasons = {f.track_id: f.reason for f in report.failures}
    assert reasons["text_mp3"].startswith("unreadable header: not decodable audio")
    manifest = load_manifest(out)
    rows = (out / "truncated.tsv").read_text().splitlines()
    assert rows[0] == "split\ttrack_id\tpath\tdecoded_s\texpected_s"
    if strict:  # refused: failures with the durations as reason
        assert report.n_written == 2 and not report.truncated and len(rows) == 1
        for key in cut:
            assert "its header promises" in reasons[key] and "decoded" in reasons[key]
    else:  # written with a warning, and listed
        assert report.n_written == 5 and [t.track_id for t in report.truncated] == cut
        assert manifest["splits"]["train"]["n_truncated"] == 3
        assert [r.split("\t")[1] for r in rows[1:]] == cut
        for t in report.truncated:
            assert t.decoded_s < t.expected_s == pytest.approx(2.0, abs=0.1)
            assert f"{t.path} (train) is truncated: decoded {t.decoded_s:.2f} s" in caplog.text
        assert "lost sync" in caplog.text or "damaged_flac" not in reasons


def test_predict_reports_truncation_and_refuses_it_with_strict(bad, tmp_path, capsys, caplog):
    ckpt = save_checkpoint(tiny_crnn(), tmp_path / "m.ckpt")
    files = [str(bad["good.wav"]), str(bad["truncated.wav"])]
    with caplog.at_level(logging.WARNING, logger="musictag"):
        assert main(["predict", str(ckpt), *files, "--quiet", "--format", "json"]) == 0
    docs = json.loads(capsys.readouterr().out)
    assert len(docs) == 2
    assert "1 of 2 files decoded to less audio than their headers promise" in caplog.text
    assert f"{bad['truncated.wav']} (1.00 s of 2.00 s)" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="musictag"):
        assert main(["predict", str(ckpt), *files, "--quiet", "--format", "json", "--strict"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 1
    assert "1 of 2 files could not be tagged" in caplog.text
    assert main(["predict", str(ckpt), files[1], "--quiet", "--strict"]) == 1


def test_predict_exit_status_2_when_the_inputs_name_nothing(tmp_path, capsys):
    ckpt = save_checkpoint(tiny_crnn(), tmp_path / "m.ckpt")
    (tmp_path / "empty").mkdir()
    assert main(["predict", str(ckpt), f"@{tmp_path / 'missing.txt'}", "--quiet"]) == 2
    assert "file list not found" in capsys.readouterr().err
    assert main(["predict", str(ckpt), str(tmp_path / "empty"), "--quiet"]) == 2
    assert "no audio files in" in capsys.readouterr().err
