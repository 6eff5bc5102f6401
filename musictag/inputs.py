"""What a command's inputs name: audio files (files, folders, ``@list`` files) and shard sets."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from .audio import AUDIO_EXTENSIONS
from .data.shards import MANIFEST_NAME

__all__ = ["collect_audio_files", "is_shard_folder"]


def collect_audio_files(
    inputs: Iterable[str | Path], extensions: Sequence[str] = AUDIO_EXTENSIONS
) -> list[Path]:
    """Expand inputs into audio files: files as given, folders recursively, ``@list.txt`` lists.

    A list file holds one path per line (blank lines and ``#`` comments skipped); relative paths
    are relative to the list file's folder. Files named directly are kept whatever their
    extension (and even if missing, so that the caller reports them); folders contribute files
    whose extension is in ``extensions`` (case-insensitive), sorted.

    Args:
        inputs: Paths, folders and ``@list`` files.
        extensions: Extensions collected from folders, without the dot.

    Returns:
        The files, in input order, without duplicates.

    Raises:
        FileNotFoundError: for a missing ``@list`` file.
    """
    exts = {e.lower().lstrip(".") for e in extensions}
    out: list[Path] = []
    seen: set[Path] = set()

    def add(p: Path) -> None:
        if p not in seen:
            seen.add(p)
            out.append(p)

    for raw in inputs:
        s = str(raw)
        if s.startswith("@"):
            list_path = Path(s[1:])
            if not list_path.is_file():
                raise FileNotFoundError(f"file list not found: {list_path} (from argument {s!r})")
            for line in list_path.read_text(encoding="utf-8").splitlines():
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                p = Path(line)
                add(p if p.is_absolute() else list_path.parent / p)
        elif Path(s).is_dir():
            found = [
                p
                for p in Path(s).rglob("*")
                if p.is_file() and p.suffix.lower().lstrip(".") in exts
            ]
            for p in sorted(found):
                add(p)
        else:
            add(Path(s))
    return out


def is_shard_folder(path: str | Path) -> bool:
    """Whether ``path`` is a folder of musictag shards (it holds ``manifest.json``)."""
    return Path(path).is_dir() and (Path(path) / MANIFEST_NAME).is_file()
