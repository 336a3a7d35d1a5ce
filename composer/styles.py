"""The style library: long, reusable MusicGen prompts kept as YAML files in ``styles/``.

A style is a paragraph written the way experienced MusicGen users write prompts (tempo/feel,
genre and sub-genre, instrumentation, mood, what to leave out). A style may ``extends`` another
and add its own text, ``modifiers`` and ``exclude`` items; resolution walks the chain root-first.
"""

from __future__ import annotations

import difflib
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from composer.arrangement.schema import NAME_PATTERN
from composer.arrangement.yamlfile import locate, read_yaml, validate
from composer.errors import ArrangementError, Problem, StyleError


class StyleFile(BaseModel):
    """One file in the style library."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=NAME_PATTERN, description="Style name; must equal the file name without .yaml.")
    description: str = Field(min_length=1, max_length=300, description="One line for `compose styles list`.")
    family: str = Field("other", max_length=40, description="Genre family, for grouping in listings.")
    extends: str | None = Field(
        None, pattern=NAME_PATTERN, description="Parent style (a name in the same folder) whose text comes first."
    )
    prompt: str | None = Field(None, max_length=4000, description="The prompt paragraph (or addition to the parent).")
    modifiers: list[str] = Field(default_factory=list, description="Short phrases appended after the prompt.")
    exclude: list[str] = Field(default_factory=list, description="Things to leave out, rendered as 'No x, no y.'")


@dataclass(frozen=True)
class Style:
    """A style with its inheritance chain resolved."""

    name: str
    description: str
    family: str
    chain: tuple[str, ...]  # root first, this style last
    body: tuple[str, ...]
    modifiers: tuple[str, ...]
    exclude: tuple[str, ...]
    path: Path

    @property
    def text(self) -> str:
        """The full prompt text."""
        parts = [" ".join(p.strip() for p in self.body if p.strip())]
        if self.modifiers:
            phrase = ", ".join(m.strip() for m in self.modifiers).rstrip(".")
            parts.append(phrase[:1].upper() + phrase[1:] + ".")
        if self.exclude:
            parts.append("No " + ", no ".join(e.strip() for e in self.exclude) + ".")
        return " ".join(p for p in parts if p)


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
        spec, path = self._files[name]
        if spec.extends is None:
            if not spec.prompt:
                raise StyleError(f"{path}: prompt: a style without 'extends' needs a prompt")
            parent_body: tuple[str, ...] = ()
            parent_mods: tuple[str, ...] = ()
            parent_excl: tuple[str, ...] = ()
            chain: tuple[str, ...] = ()
        else:
            parent = self._resolve(spec.extends, seen + (name,))
            parent_body, parent_mods, parent_excl, chain = parent.body, parent.modifiers, parent.exclude, parent.chain
        exclude = tuple(dict.fromkeys(parent_excl + tuple(spec.exclude)))
        return Style(
            name=name,
            description=spec.description,
            family=spec.family,
            chain=chain + (name,),
            body=parent_body + ((spec.prompt,) if spec.prompt else ()),
            modifiers=parent_mods + tuple(spec.modifiers),
            exclude=exclude,
            path=path,
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
