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
    if issues:
        issues.sort(key=lambda item: line_of(data, item[0]) or 0)
        raise ArrangementError(locate(data, file, issues))
    return arrangement
