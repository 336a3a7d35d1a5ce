"""The style library: long, reusable MusicGen prompts kept as YAML files in ``styles/``.

A style is written the way experienced MusicGen users write prompts, in parts: ``genre``, ``feel``
(tempo and rhythm, with ``{bpm}`` where the tempo goes), ``instruments``, ``mood``, ``mix``, then free
``prompt`` text, ``modifiers`` and what to ``exclude``. A style may ``extends`` another: each part it
gives *replaces* the parent's (a beatless drone's ``feel`` becomes a slow pulse), its ``prompt`` and
``modifiers`` are added after the parent's, and its ``exclude`` items join the parent's.
"""

from __future__ import annotations

import difflib
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from composer.arrangement.schema import NAME_PATTERN
from composer.arrangement.yamlfile import locate, read_yaml, validate
from composer.errors import ArrangementError, Problem, StyleError
from composer.prompt import PROMPT_MAX_CHARS, compose, sentence

Phrase = Annotated[str, Field(max_length=300)]


class StyleFile(BaseModel):
    """One file in the style library."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=NAME_PATTERN, description="Style name; must equal the file name without .yaml.")
    description: str = Field(min_length=1, max_length=300, description="One line for `compose styles list`.")
    family: str = Field("other", max_length=40, description="Genre family, for grouping in listings.")
    extends: str | None = Field(
        None, pattern=NAME_PATTERN, description="Parent style (a name in the same folder) whose text comes first."
    )
    tempo: Literal["pulse", "free"] | None = Field(
        None,
        description="pulse: the prompt names the arrangement's tempo; free: no tempo at all (beatless). "
        "Inherited; default pulse.",
    )
    genre: str | None = Field(None, max_length=1000, description="Genre and tradition (replaces the parent's).")
    feel: str | None = Field(
        None, max_length=1000, description="Tempo and rhythm; write {bpm} where the tempo goes (replaces the parent's)."
    )
    instruments: str | None = Field(None, max_length=2000, description="Instrumentation (replaces the parent's).")
    mood: str | None = Field(None, max_length=1000, description="Mood and character (replaces the parent's).")
    mix: str | None = Field(None, max_length=1000, description="Sound and mix (replaces the parent's).")
    prompt: str | None = Field(None, max_length=4000, description="Free text after the parts (added to the parent's).")
    modifiers: list[Phrase] = Field(
        default_factory=list, max_length=50, description="Short phrases appended after the prompt."
    )
    exclude: list[Phrase] = Field(
        default_factory=list, max_length=50, description="Things to leave out, rendered as 'No x, no y.'"
    )


PARTS = ("genre", "feel", "instruments", "mood", "mix")
MAX_EXTENDS = 32  # a style may extend a chain this deep (deeper is a mistake, and would exhaust the stack)


@dataclass(frozen=True)
class Style:
    """A style with its inheritance chain resolved."""

    name: str
    description: str
    family: str
    chain: tuple[str, ...]  # root first, this style last
    parts: dict[str, str]  # genre, feel, instruments, mood, mix: the nearest style's in the chain
    body: tuple[str, ...]  # free prompt text, root first
    modifiers: tuple[str, ...]
    exclude: tuple[str, ...]
    path: Path
    free_tempo: bool = False

    def sentences(self, then: Sequence[str] = ()) -> list[str]:
        """The style's pieces in prompt order, placeholders unfilled (see :mod:`composer.prompt`).

        ``then``: more text (a section's prompt and extra) to go after the style's own words and before
        its modifiers and exclusions, which close the prompt.
        """
        pieces = [self.parts[p] for p in PARTS if self.parts.get(p)]
        pieces += [p for p in (*self.body, *then) if p and p.strip()]
        if self.modifiers:
            pieces.append(", ".join(m.strip() for m in self.modifiers).rstrip("."))
        if self.exclude:
            pieces.append("No " + ", no ".join(e.strip() for e in self.exclude))
        return pieces

    def render(self, bpm: float, key: str | None) -> str:
        """The style's prompt for a tempo and key (what `compose styles show --bpm --key` prints)."""
        return compose(self.sentences(), bpm, key, self.free_tempo)

    @property
    def text(self) -> str:
        """The prompt text with placeholders as written (no tempo or key filled in)."""
        return " ".join(sentence(p) for p in self.sentences())


class StyleLibrary:
    """All styles in one folder, validated and resolved on load."""

    def __init__(self, folder: Path, files: dict[str, tuple[StyleFile, Path]]):
        self.folder = folder
        self._files = files
        self._resolved: dict[str, Style] = {}
        for name in files:
            self._resolved[name] = self._resolve(name, ())

    @classmethod
    def load(cls, folder: Path) -> StyleLibrary:
        """Load and check every ``*.yaml`` in ``folder``.

        Raises:
            StyleError: the folder is missing.
            ArrangementError: a style file is invalid (located problems).
        """
        if not folder.is_dir():
            raise StyleError(f"{folder}: style library folder not found (set COMPOSER_STYLES_DIR or --styles)")
        files: dict[str, tuple[StyleFile, Path]] = {}
        data_of: dict[str, Any] = {}
        problems: list[Problem] = []
        for path in sorted(p for pattern in ("*.yaml", "*.yml") for p in folder.glob(pattern)):
            mode = os.lstat(path).st_mode
            if stat.S_ISLNK(mode):  # never read (or quote in an error) what a link points to
                problems.append(Problem(str(path), None, "", "a symbolic link; copy the style file into the folder"))
                continue
            if not stat.S_ISREG(mode):
                problems.append(Problem(str(path), None, "", "not a regular file; a style is a .yaml file"))
                continue
            try:
                data = read_yaml(path, kind="style")
                style = validate(data, StyleFile, str(path))
            except ArrangementError as exc:
                problems += exc.problems
                continue
            if style.name != path.stem:
                problems += locate(data, str(path), [(("name",), f"must equal the file name {path.stem!r}")])
            elif style.name in files:
                other = files[style.name][1].name
                problems += locate(data, str(path), [(("name",), f"style {style.name!r} is also defined by {other}")])
            else:
                files[style.name] = (style, path)
                data_of[style.name] = data
        for name, (style, path) in files.items():  # parents may be .yaml or .yml, but must be in the folder
            if style.extends is not None and style.extends not in files:
                problems += locate(data_of[name], str(path), [(("extends",), f"unknown style {style.extends!r}")])
        if problems:
            raise ArrangementError(sorted(problems, key=lambda p: (p.file, p.line or 0)))
        return cls(folder, files)

    def _resolve(self, name: str, seen: tuple[str, ...]) -> Style:
        if name in self._resolved:
            return self._resolved[name]
        if name in seen:
            raise StyleError(f"{self._files[name][1]}: extends: style inheritance loops: {' -> '.join(seen + (name,))}")
        if len(seen) >= MAX_EXTENDS:
            raise StyleError(f"{self._files[name][1]}: extends: more than {MAX_EXTENDS} styles deep "
                             f"({' -> '.join(seen[:3])} -> ... -> {name})")  # fmt: skip
        spec, path = self._files[name]
        style = self._build(name, spec, path, seen)
        if len(style.text) > PROMPT_MAX_CHARS:  # checked per style: a chain adds up its parents' text
            raise StyleError(f"{path}: prompt: the style's prompt is {len(style.text)} characters with what it "
                             f"extends (limit {PROMPT_MAX_CHARS}); shorten it or a style it extends")  # fmt: skip
        return style

    def _build(self, name: str, spec: StyleFile, path: Path, seen: tuple[str, ...]) -> Style:
        own_parts = {p: getattr(spec, p) for p in PARTS if getattr(spec, p)}
        if spec.extends is None:
            if not spec.prompt and not own_parts:
                raise StyleError(f"{path}: prompt: a style without 'extends' needs a prompt or parts (genre, feel...)")
            parent = Style(name, "", "", (), {}, (), (), (), path)
        else:
            parent = self._resolve(spec.extends, seen + (name,))
        return Style(
            name=name,
            description=spec.description,
            family=spec.family,
            chain=parent.chain + (name,),
            parts=parent.parts | own_parts,
            body=parent.body + ((spec.prompt,) if spec.prompt else ()),
            modifiers=parent.modifiers + tuple(spec.modifiers),
            exclude=tuple(dict.fromkeys(parent.exclude + tuple(spec.exclude))),
            path=path,
            free_tempo=spec.tempo == "free" if spec.tempo is not None else parent.free_tempo,
        )

    def names(self) -> list[str]:
        """Style names, sorted by family then name."""
        return sorted(self._resolved, key=lambda n: (self._resolved[n].family, n))

    def __contains__(self, name: object) -> bool:
        return name in self._resolved

    def get(self, name: str) -> Style:
        """The resolved style.

        Raises:
            StyleError: unknown name (with the closest names as suggestions).
        """
        try:
            return self._resolved[name]
        except KeyError:
            raise StyleError(self.unknown_message(name)) from None

    def unknown_message(self, name: str) -> str:
        """'unknown style ...; did you mean ...' for error messages."""
        guess = difflib.get_close_matches(name, list(self._resolved), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(guess)}?" if guess else "; see `compose styles list`"
        return f"unknown style {name!r}{hint}"
