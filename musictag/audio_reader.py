"""Decoding an audio file block by block while noticing what is wrong with it.

A file that is not audio is refused in words that say why (libsndfile's own text kept as
detail); a decoder error mid-file is salvaged, decoding resumes after it; and audio that ends
before its header says is reported as a :class:`Truncation` (refused with ``strict``).
:mod:`musictag.audio` decodes every file through :class:`AudioReader`.
"""

from __future__ import annotations

import logging
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

__all__ = [
    "AudioReadError",
    "AudioReader",
    "Truncation",
    "TruncatedAudioError",
    "describe_read_error",
]

log = logging.getLogger(__name__)

# An MP3 without a Xing/VBRI header has its length estimated from the bitrate: allow two MPEG
# frames (and 0.1 %) of slack before calling a file truncated.
_LENGTH_SLACK_FRAMES = 2 * 1152
_DECODE_ERRORS = (sf.LibsndfileError, RuntimeError, OSError)
_RETRY_BLOCK_FRAMES = 1024


class AudioReadError(ValueError):
    """An audio file could not be used; the message names the file and the reason."""


class TruncatedAudioError(AudioReadError):
    """Decoding yielded less audio than the file's header promises (refused with ``strict``).

    Attributes:
        truncation: The :class:`Truncation` that was found.
    """

    def __init__(self, truncation: Truncation) -> None:
        super().__init__(f"{truncation.path}: {truncation}")
        self.truncation = truncation


@dataclass(frozen=True)
class Truncation:
    """Less audio decoded than the header promises (a cut-off download, a damaged frame).

    Attributes:
        path: The file.
        decoded_frames: Frames decoded, at ``sample_rate``.
        expected_frames: Frames the header promises.
        sample_rate: The file's sample rate.
        detail: The decoder's error when decoding stopped on one, else ``""``.
    """

    path: str
    decoded_frames: int
    expected_frames: int
    sample_rate: int
    detail: str = ""

    @property
    def decoded_s(self) -> float:
        """Seconds decoded."""
        return self.decoded_frames / self.sample_rate

    @property
    def expected_s(self) -> float:
        """Seconds the header promises."""
        return self.expected_frames / self.sample_rate

    def __str__(self) -> str:
        how = "decoding stopped early" if self.detail else "truncated"
        text = (
            f"{how}: decoded {self.decoded_s:.2f} s of the {self.expected_s:.2f} s "
            "its header promises"
        )
        return f"{text} (libsndfile: {self.detail})" if self.detail else text


def describe_read_error(path: str | Path, error: BaseException) -> str:
    """What is wrong with a file that could not be opened, in words of our own.

    libsndfile answers "File does not exist or is not a regular file" for a file that exists but
    holds no audio it recognises; this says which case it is and keeps libsndfile's text as detail.

    Args:
        path: The file.
        error: The exception opening or decoding it raised.

    Returns:
        One line, without the path.
    """
    detail = " ".join(str(error).replace(f"Error opening {str(path)!r}: ", "").split())
    p = Path(path)
    if not p.exists():
        what = "dangling symbolic link" if p.is_symlink() else "file not found"
    elif p.is_dir():
        what = "a folder, not an audio file"
    elif not p.is_file():
        what = "not a regular file"
    elif not os.access(p, os.R_OK):
        what = "no permission to read it"
    elif p.stat().st_size == 0:
        what = "empty file (0 bytes)"
    else:
        what = "not decodable audio: the format is not recognised or the file is damaged"
    return f"{what} (libsndfile: {detail})" if detail else what


def _wav_data_frames(path: Path) -> int | None:
    """Frames the ``data`` chunk of a RIFF/WAVE header declares (libsndfile trims it to the file
    size, which hides a truncated download), or ``None`` for anything else."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(4096)
    except OSError:
        return None
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    pos, block_align = 12, 0
    while pos + 8 <= len(head):
        chunk, size = struct.unpack_from("<4sI", head, pos)
        if chunk == b"fmt " and pos + 22 <= len(head):
            block_align = struct.unpack_from("<H", head, pos + 20)[0]
        elif chunk == b"data":
            # 0 and 0xFFFFFFFF mean "unknown" (streamed WAVs, RF64)
            if block_align < 1 or size in (0, 0xFFFFFFFF):
                return None
            return size // block_align
        pos += 8 + size + (size & 1)
    return None


class AudioReader:
    """An open audio file, decoded block by block, that notices when it ends early.

    Args:
        path: Any file soundfile reads (wav, flac, ogg, mp3, ...).
        strict: Raise :class:`TruncatedAudioError` when less audio decodes than the header
            promises, instead of returning what decoded (and recording it in ``truncation``).
        warn: Log a warning for a truncated file (callers that report it themselves pass False).

    Attributes:
        path: The file.
        sample_rate: Its sample rate.
        channels: Its channels.
        expected_frames: Frames the header promises.
        truncation: After :meth:`blocks` is exhausted: a :class:`Truncation` when less decoded
            than promised, else ``None``.

    Raises:
        AudioReadError: naming the file and the problem, when it can't be opened.
    """

    def __init__(self, path: str | Path, strict: bool = False, warn: bool = True) -> None:
        self.path = Path(path)
        self.strict = strict
        self.warn = warn
        try:
            self._file = sf.SoundFile(self.path)
        except (*_DECODE_ERRORS, TypeError) as e:
            raise AudioReadError(f"{self.path}: {describe_read_error(self.path, e)}") from e
        self.sample_rate = int(self._file.samplerate)
        self.channels = int(self._file.channels)
        frames = int(self._file.frames)
        if self._file.format == "WAV":
            frames = max(frames, _wav_data_frames(self.path) or 0)
        self.expected_frames = frames
        self.decoded_frames = 0
        self.truncation: Truncation | None = None

    def close(self) -> None:
        """Close the file."""
        self._file.close()

    def __enter__(self) -> AudioReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def blocks(self, block_frames: int = 1 << 16) -> Iterator[np.ndarray]:
        """Decode the file in blocks.

        Args:
            block_frames: Frames per block.

        Yields:
            float32 ``[frames, channels]`` blocks, in order.

        Raises:
            AudioReadError: when nothing decodes; :class:`TruncatedAudioError` with ``strict``.
        """
        detail = ""
        size = int(block_frames)
        while True:
            try:
                block = self._file.read(size, dtype="float32", always_2d=True)
            except _DECODE_ERRORS as e:
                if size > _RETRY_BLOCK_FRAMES and self._reopen_at(self.decoded_frames):
                    # libsndfile drops a whole block on a decoder error: salvage what decodes
                    size = _RETRY_BLOCK_FRAMES
                    continue
                detail = " ".join(str(e).split())
                if self.decoded_frames == 0:
                    raise AudioReadError(
                        f"{self.path}: not decodable audio: the audio data is damaged "
                        f"(libsndfile: {detail})"
                    ) from e
                break
            if block.shape[0] == 0:
                break
            self.decoded_frames += block.shape[0]
            yield block
        slack = max(_LENGTH_SLACK_FRAMES, self.expected_frames // 1000)
        if detail or self.decoded_frames < self.expected_frames - slack:
            self.truncation = Truncation(
                str(self.path),
                self.decoded_frames,
                max(self.expected_frames, self.decoded_frames),
                self.sample_rate,
                detail,
            )
            if self.strict:
                raise TruncatedAudioError(self.truncation)
            if self.warn:
                log.warning("%s: %s; using what decodes", self.path, self.truncation)

    def _reopen_at(self, frame: int) -> bool:
        try:
            self._file.close()
            self._file = sf.SoundFile(self.path)
            if frame:
                self._file.seek(frame)
            return True
        except (*_DECODE_ERRORS, TypeError):
            return False

    def read(self) -> np.ndarray:
        """The whole file, float32 ``[frames, channels]`` (see :meth:`blocks`)."""
        parts = list(self.blocks())
        if not parts:
            return np.zeros((0, self.channels), dtype=np.float32)
        return np.concatenate(parts) if len(parts) > 1 else parts[0]
