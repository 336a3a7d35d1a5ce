"""Load an arrangement file: parse YAML, validate, check references, report located problems."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from composer.arrangement.schema import Arrangement, semantic_problems
from composer.arrangement.yamlfile import line_of, locate, read_yaml, validate
from composer.errors import ArrangementError

if TYPE_CHECKING:
    from composer.styles import StyleLibrary


def load_arrangement(path: Path, styles: StyleLibrary | None = None) -> Arrangement:
    """Read and fully validate an arrangement.

    Args:
        path: the YAML file.
        styles: the style library to resolve ``style:`` references against; None skips that check.

    Returns:
        The validated arrangement.

    Raises:
        ArrangementError: every problem found, each as ``FILE:LINE: field: message``.
    """
    file = str(path)
    data = read_yaml(path)
    arrangement = validate(data, Arrangement, file)
    issues = semantic_problems(arrangement)
    if styles is not None:
        for i, section in enumerate(arrangement.sections):
            if section.style is not None and section.style not in styles:
                issues.append((("sections", i, "style"), styles.unknown_message(section.style)))
    for i, section in enumerate(arrangement.sections):
        if section.melody is not None and (problem := melody_problem(path, section.melody)):
            issues.append((("sections", i, "melody"), problem))
    if issues:
        issues.sort(key=lambda item: line_of(data, item[0]) or 0)
        raise ArrangementError(locate(data, file, issues))
    return arrangement


def melody_problem(arrangement: Path, melody: str) -> str | None:
    """Why a section's melody reference cannot be used, or None.

    It must name an existing audio file inside the arrangement's folder (after following links).
    """
    if Path(melody).is_absolute():
        return f"{melody!r} is an absolute path; give a path relative to the arrangement file"
    folder = arrangement.parent.resolve()
    target = (arrangement.parent / melody).resolve()
    if not target.is_relative_to(folder):
        return f"{melody!r} leads outside the arrangement's folder ({folder}); copy the reference into it"
    if not target.is_file():
        return (
            f"{melody!r}: no such file next to the arrangement" if not target.exists() else f"{melody!r} is not a file"
        )
    return None
