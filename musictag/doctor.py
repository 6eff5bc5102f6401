"""Load every native extension musictag needs and say, for each, whether it works here.

``musictag doctor`` prints the table; :func:`check_environment` returns it. Each check does a
little real work (a matmul, an encode/decode round trip, a resample, an STFT) because an import
alone can succeed while a library fails on first use: torchaudio 2.11.1 imports on torch 2.11.0
and fails only when its C++ library loads. A failing check names the package, its version and
the torch it was loaded with.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import io
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = ["Check", "check_environment", "format_checks"]


@dataclass(frozen=True)
class Check:
    """The result of loading one package.

    Attributes:
        package: Distribution name (``"soundfile"``).
        version: Installed version, ``"not installed"`` when missing.
        required: Whether musictag's core needs it (else it belongs to an extra).
        ok: Whether the check's work succeeded.
        detail: What was checked, or the error.
    """

    package: str
    version: str
    required: bool
    ok: bool
    detail: str

    def message(self, torch_version: str) -> str:
        """One line for a person: what works or what broke, and with which torch."""
        if self.ok:
            return f"ok    {self.package} {self.version}: {self.detail}"
        return (
            f"FAIL  {self.package} {self.version} (with torch {torch_version}): {self.detail}"
        )


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _torch() -> str:
    import torch

    a = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    if not torch.equal(a @ a.T, torch.from_numpy(a.numpy() @ a.numpy().T)):
        raise RuntimeError("a float32 matmul disagrees with numpy")
    if torch.version.cuda:
        cuda = f"CUDA {torch.version.cuda} build, {torch.cuda.device_count()} GPU(s) visible"
    else:
        cuda = "CPU build"
    return f"matmul ok; {cuda}; {torch.get_num_threads()} threads"


def _soundfile() -> str:
    import soundfile as sf

    sr = 16000
    tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(sr) / sr)).astype(np.float32)
    done = []
    # 16 kHz: Opus only takes 8/12/16/24/48 kHz
    formats = (("FLAC", "PCM_16"), ("OGG", "VORBIS"), ("OGG", "OPUS"), ("MP3", "MPEG_LAYER_III"))
    for fmt, subtype in formats:
        buf = io.BytesIO()
        sf.write(buf, tone, sr, format=fmt, subtype=subtype)
        buf.seek(0)
        back, back_sr = sf.read(buf, dtype="float32")
        if back_sr != sr or abs(len(back) - sr) > sr // 10:
            raise RuntimeError(f"{fmt}/{subtype} round trip: {len(back)} samples at {back_sr} Hz")
        done.append(subtype if fmt == "OGG" else fmt)
    return f"libsndfile {sf.__libsndfile_version__}: encodes and decodes {', '.join(done)}"


def _soxr() -> str:
    import soxr

    out = soxr.resample(np.zeros(44100, dtype=np.float32), 44100, 16000)
    if len(out) != 16000:
        raise RuntimeError(f"44.1 kHz -> 16 kHz gave {len(out)} samples for one second")
    return "44.1 -> 16 kHz resample"


def _xxhash() -> str:
    import xxhash

    # the published XXH3-64 test vector of the empty input
    if xxhash.xxh3_64_hexdigest(b"") != "2d06800538d394c2":
        raise RuntimeError("xxh3_64 of the empty input differs from the reference value")
    return "xxh3_64 (shard block checksums)"


def _nnaudio() -> str:
    import torch
    from nnAudio.features.mel import MelSpectrogram

    mel = MelSpectrogram(sr=16000, n_fft=512, hop_length=256, n_mels=32, verbose=False)
    out = mel(torch.randn(1, 16000))
    if out.shape[:2] != (1, 32):
        raise RuntimeError(f"MelSpectrogram gave shape {tuple(out.shape)}")
    return f"MelSpectrogram {tuple(out.shape)}"


def _torchaudio() -> str:
    import torch
    import torchaudio

    out = torchaudio.transforms.MelSpectrogram(sample_rate=16000, n_mels=32)(torch.randn(1, 16000))
    return f"MelSpectrogram {tuple(out.shape)}"


def _librosa() -> str:
    import librosa

    mel = librosa.feature.melspectrogram(y=np.zeros(16000, dtype=np.float32), sr=16000, n_mels=32)
    return f"melspectrogram {mel.shape} (numba {_version('numba')})"


def _faiss() -> str:
    import faiss

    index = faiss.IndexFlatIP(4)
    index.add(np.eye(4, dtype=np.float32))
    _, ids = index.search(np.eye(4, dtype=np.float32)[:1], 1)
    if int(ids[0, 0]) != 0:
        raise RuntimeError("nearest neighbour of a stored vector is not itself")
    return "IndexFlatIP search"


def _importable(module: str) -> Callable[[], str]:
    def check() -> str:
        importlib.import_module(module)
        return "imports"

    return check


# (distribution, core?, check); optional ones are checked only when installed
CHECKS: tuple[tuple[str, bool, Callable[[], str]], ...] = (
    ("torch", True, _torch),
    ("soundfile", True, _soundfile),
    ("soxr", True, _soxr),
    ("xxhash", True, _xxhash),
    ("nnAudio", True, _nnaudio),
    ("librosa", True, _librosa),
    ("webdataset", True, _importable("webdataset")),
    ("pytorch-lightning", True, _importable("pytorch_lightning")),
    ("torchmetrics", True, _importable("torchmetrics")),
    ("torchaudio", False, _torchaudio),
    ("faiss-cpu", False, _faiss),
    ("onnxruntime", False, _importable("onnxruntime")),
    ("uvicorn", False, _importable("uvicorn")),
)


def check_environment() -> list[Check]:
    """Run every check: core packages always, optional ones when installed.

    Returns:
        One :class:`Check` per package, in a fixed order.
    """
    results = []
    for name, required, run in CHECKS:
        version = _version(name)
        if version == "not installed" and not required:
            continue
        try:
            results.append(Check(name, version, required, True, run()))
        except Exception as err:  # noqa: BLE001 - every failure is reported, none stops the rest
            detail = f"{type(err).__name__}: {err}".strip()
            results.append(Check(name, version, required, False, detail))
    return results


def format_checks(checks: list[Check]) -> str:
    """The report ``musictag doctor`` prints: one line per package, then a verdict."""
    torch_version = _version("torch")
    lines = [c.message(torch_version) for c in checks]
    failed = [c.package for c in checks if not c.ok]
    lines.append(f"{len(failed)} failed: {', '.join(failed)}" if failed else "all packages load")
    return "\n".join(lines)
