"""Named points in a render where a test can deliver a signal deterministically.

Tests of interrupts (Ctrl-C, SIGKILL) must not depend on how fast the machine is: instead of
sleeping and then signalling, a test sets ``COMPOSER_FAULT_AT=POINT[#N]:SIGNAL`` and the render
sends that signal to itself the N-th time (default: first) it reaches ``POINT``. With nothing
armed, :func:`reached` only counts.

Production code meets this module in two ways only: a point calls :func:`reached`, and a render
(or a cluster's actor) calls :func:`arm_from` with ``Settings.fault_at`` when it starts.

Points:
    ``segment-stored``: a generated segment was written to the cache.
    ``file-temp``: a file's content is in its temp file, not yet renamed into place.
    ``file-written``: a file was renamed into place (every file composer writes passes here).
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass

POINTS = ("segment-stored", "file-temp", "file-written")
# signals that end or interrupt a process (STOP would hang a test; SIG_IGN is a handler, not a signal)
SIGNALS = ("INT", "TERM", "KILL", "HUP", "QUIT", "USR1", "USR2")


@dataclass(frozen=True)
class FaultSpec:
    """Where to deliver which signal."""

    point: str
    occurrence: int  # 1-based: the N-th time the point is reached
    signal: int


_armed: FaultSpec | None = None
_counts: dict[str, int] = {}


def parse(spec: str) -> FaultSpec:
    """Parse ``POINT[#N]:SIGNAL`` (SIGNAL: one of :data:`SIGNALS`, with or without ``SIG``).

    Raises:
        ValueError: an unknown point or signal, or a bad count.
    """
    where, _, sig_name = spec.partition(":")
    point, _, count = where.partition("#")
    if point not in POINTS:
        raise ValueError(f"COMPOSER_FAULT_AT={spec!r}: unknown point {point!r}; expected one of {', '.join(POINTS)}")
    try:
        occurrence = int(count or 1)
    except ValueError:
        raise ValueError(f"COMPOSER_FAULT_AT={spec!r}: {count!r} is not a whole number") from None
    name = sig_name.strip().upper() or "INT"
    name = name.removeprefix("SIG")
    if occurrence < 1 or name not in SIGNALS:
        raise ValueError(f"COMPOSER_FAULT_AT={spec!r}: expected POINT[#N]:SIGNAL with SIGNAL one of "
                         f"{', '.join(SIGNALS)}, e.g. segment-stored#2:INT")  # fmt: skip
    return FaultSpec(point, occurrence, int(getattr(signal, "SIG" + name)))


def arm(spec: FaultSpec | None) -> None:
    """Arm one fault (None disarms) and reset the counts."""
    global _armed
    _armed = spec
    _counts.clear()


def arm_from(spec: str | None, once_marker: str | None = None) -> None:
    """Arm the fault ``COMPOSER_FAULT_AT`` names (None: disarm).

    Args:
        spec: ``POINT[#N]:SIGNAL``, already checked by :func:`composer.settings.load_settings`.
        once_marker: a file path: the fault is armed only where the file does not exist yet, and the
            file is created, so it fires once across processes (a cluster's actor that the fault
            killed is restarted by Ray and then runs clean).
    """
    if spec is not None and once_marker is not None:
        if os.path.exists(once_marker):
            spec = None
        else:
            with open(once_marker, "a"):
                pass
    arm(parse(spec) if spec else None)


def reached(point: str) -> None:
    """Count one arrival at ``point``; deliver the armed signal when it is the one."""
    _counts[point] = _counts.get(point, 0) + 1
    if _armed is not None and _armed.point == point and _armed.occurrence == _counts[point]:
        os.kill(os.getpid(), _armed.signal)


def count(point: str) -> int:
    """How often ``point`` was reached since the last :func:`arm`."""
    return _counts.get(point, 0)
