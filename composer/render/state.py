"""Choices made after an arrangement was written: a regenerated section's seed, a picked take.

They live in ``<out>/<name>/state.json`` and are recorded in the manifest.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from composer.errors import ComposerError
from composer.fsutil import atomic_write_text


@dataclass
class State:
    """Choices made with regen/pick, per section."""

    seeds: dict[str, int] = field(default_factory=dict)
    takes: dict[str, int] = field(default_factory=dict)


def load_state(folder: Path) -> State:
    path = folder / "state.json"
    if not path.is_file():
        return State()
    try:
        data = json.loads(path.read_text())
        return State(
            {k: int(v) for k, v in data.get("seeds", {}).items()}, {k: int(v) for k, v in data.get("takes", {}).items()}
        )
    except (ValueError, AttributeError, TypeError) as exc:
        raise ComposerError(f"{path}: unreadable render state ({exc}); delete it to start over") from None


def save_state(folder: Path, state: State) -> None:
    atomic_write_text(folder / "state.json", json.dumps(asdict(state), indent=2, sort_keys=True) + "\n")
