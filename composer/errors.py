"""The ComposerError family: every failure a musician can cause or fix gets one of these.

The CLI prints ``str(error)`` as one line per problem and exits with ``error.exit_code``;
no traceback reaches the user for these.
"""

from __future__ import annotations

from dataclasses import dataclass


class ComposerError(Exception):
    """Base class: a problem the user can understand and act on."""

    exit_code = 1


@dataclass(frozen=True)
class Problem:
    """One problem in a user file, located as precisely as we can."""

    file: str
    line: int | None  # 1-based; None when the problem concerns the whole file
    field: str  # dotted path, e.g. "sections[2].duration_s"; "" for the whole file
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        return f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"


class ArrangementError(ComposerError):
    """An arrangement (or style) file is invalid; carries every problem found."""

    exit_code = 2

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class StyleError(ComposerError):
    """A style name does not resolve, or the style library itself is broken."""

    exit_code = 2


class ModelLoadingError(ComposerError):
    """Weights are missing or unreadable (e.g. offline and not in model-cache)."""

    exit_code = 3


class EngineError(ComposerError):
    """Generation failed for a reason the user can act on (bad request, out of memory)."""

    exit_code = 4
