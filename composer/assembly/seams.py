"""Seam scores: how much a join stands out from the music on either side of it.

For each join, four things a listener hears across it, each divided by how much the music varies
within its own segments (so a busy section's normal movement is not mistaken for a bad join):

- loudness: the step in short-term loudness (3 s windows just before and just after), LU;
- spectrum: the change of the average band spectrum (2 s either side), dB;
- tempo: the difference between the two segments' tracked tempos, percent of the arrangement's;
- harmony: the cosine distance between the average chroma vectors (2 s either side).

The score is the root mean square of the four ratios: about 1 for a join that sounds like the music
around it, and it grows with any one thing that jumps (a 6 LU step alone scores about 3).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from composer.assembly.beats import Alignment
from composer.assembly.loudness import short_term_lufs
from composer.audio.dsp import frames
from composer.plan import Placement

REROLL_ABOVE = 2.5  # a join scoring above this is worth another try
FRAME_S = 0.093  # analysis frames (4096 samples at 44.1 kHz)
SIDE_S = 2.0  # seconds either side of a join that are compared
GAP_S = 0.25  # skipped either side of the join itself (the crossfade's middle)
TEMPO_UNIT = 1.0  # percent: a tempo difference of 1% counts as much as a typical variation
FLOORS = {"loudness": 0.5, "spectrum": 0.5, "harmony": 0.02}  # smallest own variation assumed


@dataclass(frozen=True)
class Seam:
    """One join and what a listener hears across it."""

    before: str  # segment ids either side
    after: str
    at_s: float  # the join: a seam's point, a crossfade's middle
    loudness_lu: float
    spectrum_db: float
    tempo_percent: float | None  # None when either side has no clear pulse
    harmony: float
    ratios: dict[str, float]  # each of the above over its own variation
    score: float


@dataclass
class Rerolls:
    """Every try ``--reroll`` made: per transition, each seed with the worst score of its joins."""

    limit: float
    tries: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


def _features(mono: np.ndarray, rate: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Per frame: band levels in dB (24 log-spaced bands, 40 Hz-16 kHz) and a unit chroma vector."""
    size = 1 << int(np.ceil(np.log2(FRAME_S * rate)))
    hop = size // 2
    power = np.abs(np.fft.rfft(frames(mono, size, hop) * np.hanning(size), axis=1)) ** 2
    freqs = np.fft.rfftfreq(size, 1.0 / rate)
    edges = np.geomspace(40.0, min(16000.0, rate / 2 - 1), 25)
    band = np.searchsorted(edges, freqs) - 1
    bands = np.stack([power[:, band == b].sum(axis=1) for b in range(24)], axis=1)
    levels = 10 * np.log10(bands + 1e-10)
    audible = (freqs >= 55.0) & (freqs <= 4200.0)
    pitch = np.round(12 * np.log2(freqs[audible] / 440.0)).astype(np.int64) % 12  # 0 = A
    chroma = np.stack([power[:, audible][:, pitch == p].sum(axis=1) for p in range(12)], axis=1)
    chroma /= np.linalg.norm(chroma, axis=1, keepdims=True) + 1e-12
    return levels, chroma, rate / hop


def score_seams(
    audio: np.ndarray, rate: int, placements: list[Placement], alignment: Alignment | None, bpm: float
) -> list[Seam]:
    """Score every join of ``placements`` (as they landed) in ``audio``, the finished mix.

    Returns:
        One :class:`Seam` per join, in timeline order.
    """
    mono = np.ascontiguousarray(np.asarray(audio, dtype=np.float64).mean(axis=0))
    levels, chroma, frame_rate = _features(mono, rate)
    loud_t, loud = short_term_lufs(np.asarray(audio, dtype=np.float32), rate, hop_s=0.25)
    joins = [_join_at(placements[i - 1], placements[i]) for i in range(1, len(placements))]
    length = mono.shape[0] / rate

    def window(lo: float, hi: float) -> slice:
        return slice(max(0, int(lo * frame_rate)), max(0, int(hi * frame_rate)))

    def spectrum_change(t: float) -> float:
        a, b = levels[window(t - GAP_S - SIDE_S, t - GAP_S)], levels[window(t + GAP_S, t + GAP_S + SIDE_S)]
        return float(np.sqrt(np.mean((a.mean(axis=0) - b.mean(axis=0)) ** 2))) if len(a) and len(b) else 0.0

    def harmony_change(t: float) -> float:
        a, b = chroma[window(t - GAP_S - SIDE_S, t - GAP_S)], chroma[window(t + GAP_S, t + GAP_S + SIDE_S)]
        if not len(a) or not len(b):
            return 0.0
        u, v = a.mean(axis=0), b.mean(axis=0)
        return float(1.0 - u @ v / (np.linalg.norm(u) * np.linalg.norm(v) + 1e-12))

    def loudness_step(t: float) -> float:
        before = loud[np.argmin(np.abs(loud_t - (t - GAP_S - 1.5)))] if loud.size else np.nan
        after = loud[np.argmin(np.abs(loud_t - (t + GAP_S + 1.5)))] if loud.size else np.nan
        return float(abs(after - before)) if np.isfinite(before) and np.isfinite(after) else 0.0

    seams = []
    for i, at in enumerate(joins, start=1):
        before, after = placements[i - 1], placements[i]
        # the music's own variation: the same measures at points inside the two segments, away from joins
        inside = [
            t
            for t in np.arange(max(before.start_s, 0.0), min(after.end_s, length), 1.0)
            if min(abs(t - j) for j in joins) > GAP_S + SIDE_S and GAP_S + SIDE_S < t < length - GAP_S - SIDE_S
        ]
        own = {
            "loudness": np.median([loudness_step(t) for t in inside]) if inside else 0.0,
            "spectrum": np.median([spectrum_change(t) for t in inside]) if inside else 0.0,
            "harmony": np.median([harmony_change(t) for t in inside]) if inside else 0.0,
        }
        measured = {"loudness": loudness_step(at), "spectrum": spectrum_change(at), "harmony": harmony_change(at)}
        ratios = {k: measured[k] / max(float(own[k]), FLOORS[k]) for k in measured}
        tempo = _tempo_percent(alignment, before.segment, after.segment, bpm)
        ratios["tempo"] = 0.0 if tempo is None else tempo / TEMPO_UNIT
        score = float(np.sqrt(np.mean([r**2 for r in ratios.values()])))
        seams.append(Seam(before.segment, after.segment, at, measured["loudness"], measured["spectrum"], tempo,
                          measured["harmony"], {k: round(float(v), 3) for k, v in ratios.items()}, score))  # fmt: skip
    return seams


def _join_at(before: Placement, after: Placement) -> float:
    return after.start_s if after.join == "seam" else (after.start_s + before.end_s) / 2


def _tempo_percent(alignment: Alignment | None, a: str, b: str, bpm: float) -> float | None:
    if alignment is None:
        return None
    first, second = alignment.beats.get(a), alignment.beats.get(b)
    if first is None or second is None:
        return None
    return abs(first.tempo_bpm - second.tempo_bpm) / bpm * 100.0
