"""A take heard in context: the mix as it would be with another take of one section, assembled from the
segment cache and mastered to the arrangement's loudness (never generated: what is not cached is
refused, or borrowed from the current mix).

A transition that continues a section was generated from the picked take's tail; until the other take
is picked (``compose pick``, which generates what depends on it), such segments are heard as they are
in the current mix and named in :attr:`Audition.borrowed`.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from composer.assembly.mix import assemble_and_master
from composer.engine.types import Take
from composer.fsutil import atomic_path, filesystem_errors, output_tree, remove_file
from composer.job.prepare import NotRenderedError, prepare
from composer.render.cache import SegmentCache
from composer.settings import Settings

KEEP_AUDITIONS = 24  # mixes kept in <out>/cache/auditions (a 3-minute 44.1 kHz stereo one is ~32 MB)


@dataclass(frozen=True)
class Audition:
    """The mix with take ``take`` of ``section``, as a 16-bit WAV file in the output tree."""

    section: str
    take: int
    file: Path  # <out>/cache/auditions/<key>.wav
    borrowed: list[str]  # segments heard as in the current mix (not generated for this take yet)
    cached: bool  # the file was there already


def audition(file: Path, section: str, take: int, settings: Settings, out_root: Path) -> Audition:
    """The mix of ``file`` with take ``take`` of ``section`` in place of the picked one.

    Raises:
        ArrangementError: no such section (or an invalid arrangement).
        NotRenderedError: that take (or a segment of the current mix) is not in the cache.
    """
    prepared = prepare(file, settings, out_root)
    prepared.check_section(section)
    current = prepared.plan()
    wanted = prepared.plan(takes=prepared.state.takes | {section: take})
    cache = SegmentCache(out_root / "cache" / "segments")
    segments: dict[str, Take] = {}
    borrowed: list[str] = []
    used: list[str] = []
    for seg in wanted.segments:
        hit = cache.load(seg.key, seg)
        key = seg.key
        if hit is None and seg.id != section:  # made from the picked take: heard as in the current mix
            old = current.segment(seg.id)
            hit, key = cache.load(old.key, old), old.key
            borrowed.append(seg.id)
        if hit is None:
            what = f"take {take} of {section!r}" if seg.id == section else f"segment {seg.id!r}"
            raise NotRenderedError(f"{what} is not rendered; run `compose render {file} --takes {take + 1}`")
        segments[seg.id] = hit
        used.append(key)
    arrangement = prepared.arrangement
    digest = hashlib.sha256("\n".join([arrangement.model_dump_json(), *used]).encode()).hexdigest()[:32]
    path = out_root / "cache" / "auditions" / f"{digest}.wav"
    if path.is_file() and not path.is_symlink():
        with contextlib.suppress(OSError):
            os.utime(path)  # recently heard: kept longest
        return Audition(section, take, path, borrowed, cached=True)
    mastered = assemble_and_master(wanted, arrangement, segments)[1]
    with filesystem_errors(out_root), output_tree(out_root):
        with atomic_path(path) as tmp:
            tmp.write_bytes(_wav_bytes(mastered.audio, mastered.sample_rate))
        _prune(path.parent, keep=path)
    return Audition(section, take, path, borrowed, cached=False)


def _prune(folder: Path, keep: Path) -> None:
    """At most :data:`KEEP_AUDITIONS` files stay (the oldest go): they are made again on demand."""
    found = sorted((p for p in folder.glob("*.wav") if p.is_file() and not p.is_symlink() and p != keep),
                   key=lambda p: p.stat().st_mtime)  # fmt: skip
    for old in found[: max(0, len(found) + 1 - KEEP_AUDITIONS)]:
        remove_file(old)


def _wav_bytes(audio: np.ndarray, rate: int) -> bytes:
    import soundfile as sf

    buffer = io.BytesIO()
    sf.write(buffer, np.clip(audio, -1.0, 1.0).T, rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()
