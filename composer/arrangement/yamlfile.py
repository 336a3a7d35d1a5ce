"""Reading user YAML with line numbers and turning validation errors into located problems.

Shared by arrangements and style files. Everything here reports :class:`Problem` objects
(``FILE:LINE: field: message``) instead of tracebacks.
"""

from __future__ import annotations

import difflib
import re
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from composer.errors import ArrangementError, Problem

MAX_FILE_BYTES = 1_000_000  # an arrangement is a few KB; anything this large is a mistake
MAX_VALUES = 100_000  # after YAML alias expansion: stops "billion laughs" documents
M = TypeVar("M", bound=BaseModel)
Loc = tuple[str | int, ...]


def read_yaml(path: Path, kind: str = "arrangement") -> Any:
    """Parse a YAML file into ruamel's round-trip objects (which remember line numbers).

    Raises:
        ArrangementError: the file is missing, not a file, too large, not UTF-8 or not valid YAML.
    """
    from ruamel.yaml import YAML
    from ruamel.yaml.error import MarkedYAMLError, YAMLError

    name = str(path)

    def fail(message: str, line: int | None = None) -> ArrangementError:
        return ArrangementError([Problem(name, line, "", message)])

    if not path.exists():
        raise fail("no such file")
    if not path.is_file():
        raise fail(f"not a file (a directory?); pass {'an' if kind[0] in 'aeiou' else 'a'} {kind} .yaml file")
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise fail(f"file is {size} bytes; {kind} files are limited to {MAX_FILE_BYTES} bytes")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad_line = raw[: exc.start].count(b"\n") + 1
        raise fail(f"not UTF-8 text (byte 0x{raw[exc.start]:02x}); save the file as UTF-8", bad_line) from None
    if not text.strip():
        raise fail("file is empty")
    yaml = YAML(typ="rt", pure=True)
    try:
        data = yaml.load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        # one line: a duplicate key's message quotes its value, which may hold line breaks (\n, U+0085)
        detail = " ".join((exc.problem or exc.context or "invalid YAML").split())
        if "\t" in text and "tab" in detail.lower() or "found character '\\t'" in detail:
            detail += " (YAML indentation must use spaces, not tabs)"
        raise fail(f"YAML syntax error: {detail}", line) from None
    except YAMLError as exc:
        raise fail(f"YAML error: {str(exc).splitlines()[0]}") from None
    except RecursionError:
        raise fail("YAML nests too deeply") from None
    if data is None:
        raise fail("file has no content (only comments?)")
    if _expanded_size(data, MAX_VALUES) > MAX_VALUES:
        raise fail(f"YAML aliases expand to more than {MAX_VALUES} values; write the values out instead")
    return data


def _expanded_size(node: Any, limit: int) -> int:
    """Values in the document with every alias expanded, counted up to just past ``limit``."""
    count = 0
    stack = [node]
    while stack and count <= limit:
        item = stack.pop()
        count += 1
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return count


def line_of(data: Any, loc: Sequence[str | int]) -> int | None:
    """The 1-based line of the deepest node on ``loc`` that exists in the parsed YAML."""
    line: int | None = _own_line(data)
    node = data
    for part in loc:
        lc = getattr(node, "lc", None)
        if isinstance(part, int) and isinstance(node, list) and 0 <= part < len(node):
            if lc is not None:
                line = lc.item(part)[0] + 1
            node = node[part]
        elif isinstance(part, str) and isinstance(node, dict) and part in node:
            if lc is not None:
                line = lc.key(part)[0] + 1
            node = node[part]
        else:
            break
    return line


def _own_line(node: Any) -> int | None:
    lc = getattr(node, "lc", None)
    return lc.line + 1 if lc is not None and lc.line is not None else 1


def field_name(loc: Sequence[str | int]) -> str:
    """``("sections", 2, "duration_s")`` -> ``sections[2].duration_s`` (indices as written, 0-based)."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _model_at(model: type[BaseModel], loc: Sequence[str | int]) -> type[BaseModel] | None:
    """The pydantic model class that owns the last element of ``loc``."""
    current: type[BaseModel] = model
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = current.model_fields.get(part)
        if field is None:
            return None
        nested = _find_model(field.annotation)
        if nested is None:
            return None
        current = nested
    return current


def _find_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _find_model(arg)
        if found is not None:
            return found
    return None


def _friendly(err: Any, model: type[BaseModel]) -> str:
    kind = err["type"]
    loc = err["loc"]
    if kind == "extra_forbidden":
        owner = _model_at(model, loc)
        allowed = sorted(owner.model_fields) if owner else []
        guess = difflib.get_close_matches(str(loc[-1]), allowed, n=1, cutoff=0.6)
        hint = f"; did you mean '{guess[0]}'?" if guess else (f"; allowed: {', '.join(allowed)}" if allowed else "")
        return f"unknown field{hint}"
    if kind == "missing":
        return "required field is missing"
    message = str(err["msg"]).replace("Input should be", "must be")
    # pydantic names its classes ("a valid dictionary or instance of TransitionSpec"): a musician needs
    # the shape of the YAML, not the class
    message = re.sub(r"a valid dictionary or instance of \w+", "a mapping of fields (key: value)", message)
    if kind == "string_pattern_mismatch":
        message = (
            "one line of text, without control characters (newlines, tabs)"
            if loc and loc[-1] == "title"
            else "use letters, digits, '-' and '_' only (max 64, starting with a letter or digit)"
        )
    value = err.get("input")
    if kind not in ("missing",) and isinstance(value, (str, int, float, bool)) and len(repr(value)) < 60:
        message += f" (got {value!r})"
    return message


def validate(data: Any, model: type[M], file: str) -> M:
    """Validate parsed YAML against ``model``.

    Raises:
        ArrangementError: with one located problem per validation error.
    """
    if not isinstance(data, dict):
        kind = "a list" if isinstance(data, list) else type(data).__name__
        raise ArrangementError(
            [Problem(file, _own_line(data), "", f"expected a mapping of fields at the top, got {kind}")]
        )
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = tuple(err["loc"])
            problems.append(Problem(file, line_of(data, loc), field_name(loc), _friendly(err, model)))
        problems.sort(key=lambda p: p.line or 0)
        raise ArrangementError(problems) from None


def locate(data: Any, file: str, issues: Sequence[tuple[Loc, str]]) -> list[Problem]:
    """Turn ``(path, message)`` pairs into located problems."""
    return [Problem(file, line_of(data, loc), field_name(loc), message) for loc, message in issues]
