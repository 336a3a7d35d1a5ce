"""Load an arrangement file: parse YAML, validate, check references, report located problems."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from composer.arrangement.schema import Arrangement, raw_reference_problems, raw_section_problems, semantic_problems
from composer.arrangement.yamlfile import Loc, line_of, locate, read_yaml, validate
from composer.errors import ArrangementError

if TYPE_CHECKING:
    from composer.arrangement.styles import StyleLibrary


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
    try:
        arrangement = validate(data, Arrangement, file)
    except ArrangementError as schema:  # report the references too, in the same pass
        seen = {(p.line, p.field) for p in schema.problems}
        more = [
            p for p in locate(data, file, _raw_reference_problems(path, data, styles)) if (p.line, p.field) not in seen
        ]
        raise ArrangementError(sorted(schema.problems + more, key=lambda p: p.line or 0)) from None
    issues = semantic_problems(arrangement)
    if styles is not None:
        named: list[tuple[Loc, str | None]] = [(("transitions", "style"), arrangement.transitions.style)]
        for i, section in enumerate(arrangement.sections):
            named.append((("sections", i, "style"), section.style))
            if section.transition is not None:
                named.append((("sections", i, "transition", "style"), section.transition.style))
        issues += [(at, styles.unknown_message(name)) for at, name in named if name is not None and name not in styles]
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
    if "\x00" in melody:
        return "the path contains a NUL character"
    if Path(melody).is_absolute():
        return f"{melody!r} is an absolute path; give a path relative to the arrangement file"
    try:
        folder = arrangement.parent.resolve()
        target = (arrangement.parent / melody).resolve()
        if not target.is_relative_to(folder):
            return f"{melody!r} leads outside the arrangement's folder ({folder}); copy the reference into it"
        if not target.is_file():
            missing = not target.exists()
            return f"{melody!r}: no such file next to the arrangement" if missing else f"{melody!r} is not a file"
    except (OSError, RuntimeError, ValueError) as exc:  # a name too long, a loop of links
        reason = getattr(exc, "strerror", None) or str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return f"{melody[:80]!r}{'...' if len(melody) > 80 else ''} cannot be used as a path ({reason})"
    return None


def _raw_reference_problems(path: Path, data: Any, styles: StyleLibrary | None) -> list[tuple[Loc, str]]:
    """Unknown models and styles and bad melody paths, read off the YAML when the schema check failed."""
    problems = raw_reference_problems(data) + raw_section_problems(data)
    defaults = data.get("transitions") if isinstance(data, dict) else None
    style = defaults.get("style") if isinstance(defaults, dict) else None
    if styles is not None and isinstance(style, str) and style not in styles:
        problems.append((("transitions", "style"), styles.unknown_message(style)))
    sections = data.get("sections") if isinstance(data, dict) else None
    for i, sec in enumerate(sections if isinstance(sections, list) else []):
        if not isinstance(sec, dict):
            continue
        style = sec.get("style")
        if styles is not None and isinstance(style, str) and style not in styles:
            problems.append((("sections", i, "style"), styles.unknown_message(style)))
        transition = sec.get("transition")
        style = transition.get("style") if isinstance(transition, dict) else None
        if styles is not None and isinstance(style, str) and style not in styles:
            problems.append((("sections", i, "transition", "style"), styles.unknown_message(style)))
        melody = sec.get("melody")
        if isinstance(melody, str) and melody and (problem := melody_problem(path, melody)):
            problems.append((("sections", i, "melody"), problem))
    return problems
