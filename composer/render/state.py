"""Choices made after an arrangement was written: a regenerated section's seed, a picked take.

They live in ``<out>/<name>/state.json`` and are recorded in the manifest.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from composer.errors import ComposerError
from composer.fsutil import atomic_write_text, json_text

MAX_STATE_BYTES = 1 << 20  # seeds and takes of a few hundred sections fit in far less


class StateError(ComposerError):
    """state.json is damaged or holds values composer does not accept."""

    exit_code = 2


@dataclass
class State:
    """Choices made with regen/pick, per section."""

    seeds: dict[str, int] = field(default_factory=dict)
    takes: dict[str, int] = field(default_factory=dict)
    arrangement: str | None = None  # the arrangement file (resolved) this output folder belongs to
    seed_from: dict[str, int | None] = field(default_factory=dict)  # a section's YAML seed when regen chose one
    take_counts: dict[str, int] = field(default_factory=dict)  # takes kept in stems/takes/ per section (--takes N)


def _whole(value: object, low: int, high: int) -> bool:
    """Is ``value`` a whole number (not a bool) in ``low..high``?"""
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def load_state(folder: Path) -> State:
    path = folder / "state.json"
    if not path.is_file():
        return State()
    try:
        if path.stat().st_size > MAX_STATE_BYTES:
            raise ValueError(f"{path.stat().st_size} bytes; a render's state is a few hundred")
        data = json.loads(path.read_text())
        seeds, takes = data.get("seeds", {}), data.get("takes", {})
        if not isinstance(seeds, dict) or not isinstance(takes, dict):
            raise ValueError("seeds and takes must be mappings")
        for section, seed in seeds.items():  # one range everywhere: the arrangement's 0 .. 2**31-1
            if not _whole(seed, 0, 2**31 - 1):
                raise ValueError(f"seed of {section!r} must be a whole number in 0..2147483647, got {seed!r}")
        for section, take in takes.items():
            if not _whole(take, 0, 63):
                raise ValueError(f"take of {section!r} must be a whole number in 0..63, got {take!r}")
        owner = data.get("arrangement")
        if owner is not None and (not isinstance(owner, str) or len(owner) > 4096 or "\x00" in owner):
            raise ValueError("arrangement must be a path")
        seed_from = data.get("seed_from", {})
        if not isinstance(seed_from, dict) or not all(
            v is None or (isinstance(v, int) and not isinstance(v, bool)) for v in seed_from.values()
        ):
            raise ValueError("seed_from must map sections to seeds or null")
        counts = data.get("take_counts", {})
        if not isinstance(counts, dict) or not all(_whole(v, 1, 64) for v in counts.values()):
            raise ValueError("take_counts must map sections to whole numbers in 1..64")
        return State(dict(seeds), dict(takes), owner, dict(seed_from), dict(counts))
    except (ValueError, AttributeError, TypeError, OverflowError, RecursionError, OSError) as exc:
        raise StateError(f"{path}: unreadable render state ({exc}); fix or delete it to start over") from None


def save_state(folder: Path, state: State) -> None:
    atomic_write_text(folder / "state.json", json_text(asdict(state), sort_keys=True) + "\n")
