"""Damaged tracks in a data module's pass: skipped, logged once with shard and key, counted.

A damaged or undecodable track never stops a pass (``docs/reliability.md``). The worker that
meets it turns it into a :class:`SkippedTrack` notice, carried to the main process on the next
delivered sample (:func:`carry_notices`), where :func:`count_skips` takes it out of the batch,
logs it once and counts it in the stage's :class:`ReadReport`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "SKIPPED",
    "ReadReport",
    "SkippedTrack",
    "carry_notices",
    "count_skips",
    "note_unverified",
    "skip_reason",
]

log = logging.getLogger(__name__)

SKIPPED = "__skipped__"  # key of the notices a delivered sample or batch carries


@dataclass(frozen=True)
class SkippedTrack:
    """A track a pass could not use.

    Attributes:
        shard: The shard's path or URL.
        key: The sample key (``"-"`` when the damage hit the shard, not one track).
        reason: What is wrong, one line.
    """

    shard: str
    key: str
    reason: str


@dataclass
class ReadReport:
    """What the last pass of one stage's loader delivered (in this process).

    Attributes:
        stage: ``"train"``, ``"val"`` or ``"test"``.
        n_tracks: Tracks delivered (scored, for ``val``/``test``).
        skipped: Tracks skipped because they are damaged or undecodable (not scored).
        shard_damage: Damage found in the shards themselves (a damaged tar header, a shard
            gone), ``key`` ``"-"``; the tracks it hides are in ``skipped`` when a member of
            theirs survives, else only missing from ``n_tracks``.
        n_expected: Tracks the manifest lists for the stage's shards (one process reads them
            all; under DDP each rank reads its share), or ``None`` without a manifest.
    """

    stage: str
    n_tracks: int = 0
    skipped: list[SkippedTrack] = field(default_factory=list)
    shard_damage: list[SkippedTrack] = field(default_factory=list)
    n_expected: int | None = None

    @property
    def n_skipped(self) -> int:
        """Tracks skipped (``len(skipped)``)."""
        return len(self.skipped)

    @property
    def n_not_scored(self) -> int:
        """Tracks of the shards not delivered: ``n_expected - n_tracks`` when the manifest
        says how many there are (a single process), else ``n_skipped``."""
        if self.n_expected is not None:
            return self.n_expected - self.n_tracks
        return self.n_skipped


def skip_reason(e: BaseException) -> str:
    """One line saying why a track was skipped."""
    text = str(e) if isinstance(e, ValueError) and str(e) else f"{type(e).__name__}: {e}"
    return " ".join(text.split())


def carry_notices(items: Iterator[dict[str, Any] | SkippedTrack]) -> Iterator[dict[str, Any]]:
    """The delivered items, each carrying (under :data:`SKIPPED`) the notices met before it.

    The latest item is held back until the next one (or the end), so that notices of tracks
    skipped after it still reach the main process.
    """
    held: dict[str, Any] | None = None
    notices: list[SkippedTrack] = []
    for item in items:
        if isinstance(item, SkippedTrack):
            notices.append(item)
            continue
        if held is not None:
            yield held
        held = item
        if notices:
            held[SKIPPED], notices = notices, []
    if held is not None:
        if notices:
            held.setdefault(SKIPPED, []).extend(notices)
        yield held


def count_skips(
    batches: Iterator[dict[str, Any]], report: ReadReport, logged: set[tuple[str, str]]
) -> Iterator[dict[str, Any]]:
    """The batches, with the notices they carry taken out, logged once and counted in ``report``.

    Args:
        batches: Collated batches (``"key"``: the delivered tracks; :data:`SKIPPED`: notices).
        report: The pass's report, filled as the batches go by.
        logged: ``(shard, key)`` of the notices logged already (by any pass).
    """
    stage = report.stage
    for batch in batches:
        for skipped in batch.pop(SKIPPED, ()):
            (report.shard_damage if skipped.key == "-" else report.skipped).append(skipped)
            if (skipped.shard, skipped.key) not in logged:
                logged.add((skipped.shard, skipped.key))
                if skipped.key == "-":
                    log.warning("%s: %s: %s", stage, skipped.shard, skipped.reason)
                else:
                    log.warning(
                        "%s: skipping track %s of %s: %s",
                        stage,
                        skipped.key,
                        skipped.shard,
                        skipped.reason,
                    )
        report.n_tracks += len(batch["key"])
        yield batch
    if report.skipped:
        log.warning(
            "%s: %d tracks delivered, %d skipped as damaged or undecodable%s",
            stage,
            report.n_tracks,
            report.n_not_scored if stage != "train" else report.n_skipped,
            "" if stage == "train" else " (not scored)",
        )


def note_unverified(
    stage: str, urls: Sequence[str], checksummed: set[str], logged: set[tuple[str, str]]
) -> None:
    """Log once per stage how many of its shards carry no checksums (read unverified)."""
    unverified = len(urls) - len(checksummed)
    if unverified and (stage, "unverified") not in logged:
        logged.add((stage, "unverified"))
        log.warning(
            "%s: %d of %d shards carry no checksums (written before musictag recorded "
            "them, or not listed in a manifest): their tracks are read unverified",
            stage,
            unverified,
            len(urls),
        )
