"""The docs run: every ``python`` block of docs/api.md executes as written (tiny models, a scratch folder)."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

DOCS = REPO / "docs"


def python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(encoding="utf-8"), flags=re.S)


@pytest.fixture
def scratch(tiny_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working folder with the example arrangements and the README's first.yaml, as a user's would be."""
    shutil.copytree(REPO / "arrangements", tmp_path / "arrangements")
    first = re.search(r"<!-- file: first.yaml -->\n```yaml\n(.*?)```", (REPO / "README.md").read_text(), flags=re.S)
    assert first is not None, "the README's walkthrough writes first.yaml"
    (tmp_path / "first.yaml").write_text(first.group(1), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("index", range(len(python_blocks(DOCS / "api.md"))))
def test_api_examples_run(scratch: Path, index: int, capsys: pytest.CaptureFixture[str]) -> None:
    code = python_blocks(DOCS / "api.md")[index]
    exec(compile(code, f"docs/api.md block {index}", "exec"), {"__name__": "__docs__"})
    printed = capsys.readouterr().out
    assert printed.strip(), "the example prints what it shows"
    if index == 0:
        assert "{'drive': 7} {'outro': 1}" in printed
        assert (scratch / "output" / "first" / "stems" / "takes").is_dir()
    if "api.audition" in code:
        wav = printed.split()[0]
        assert (scratch / wav).is_file() and "cache/auditions" in wav and "borrowed: []" in printed
    if "cancel" in code:
        assert "render cancelled" in printed and "generated now" in printed


# -- the README and docs name only commands and options that exist, and their walkthroughs run ---------
PAGES = [REPO / "README.md", *sorted(DOCS.glob("*.md"))]
TOOL_PAGES = ("benchmarks.md", "development.md", "gpu-check.md")  # their options are the benchmark's and scripts'
OTHER_TOOLS = ("docker", "python", "pytest", "pip", "scripts/", "bench/", ".venv/bin/pip", "hadolint", "ray ", "git")


def _commands() -> dict[str, set[str]]:
    """Every ``compose`` command path ("render", "models pull") -> its options (long and short)."""
    import click
    import typer.main

    from composer.cli import app

    found: dict[str, set[str]] = {}

    def walk(command: click.Command, path: str) -> None:
        found[path] = {opt for p in command.params for opt in [*p.opts, *p.secondary_opts] if opt.startswith("-")}
        found[path] |= {"--help"}
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, f"{path} {name}".strip())

    walk(typer.main.get_command(app), "")
    return found


def _snippets(page: Path) -> list[str]:
    """The page's code: every line of its fenced blocks and every inline code span."""
    text = page.read_text(encoding="utf-8")
    blocks = re.findall(r"```[\w-]*\n(.*?)```", text, flags=re.S)
    inline = re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", text, flags=re.S))
    return [line for block in blocks for line in block.splitlines()] + inline


def _invocations(snippet: str, commands: dict[str, set[str]]) -> list[tuple[str, list[str]]]:
    """(command path, options after it) for each ``compose ...`` in a snippet; ("?", words) for an unknown one."""
    found = []
    for match in re.finditer(
        r"(?:^|[\s/(])compose(?![\w-])((?: [a-z][a-z-]*)*)(.*?)(?=(?:[;&|]|$| compose ))", snippet
    ):
        words = match.group(1).split()
        path = ""
        for word in words:
            if f"{path} {word}".strip() in commands:
                path = f"{path} {word}".strip()
            else:
                break
        rest = " ".join(words[len(path.split()) if path else 0 :]) + match.group(2)
        options = re.findall(r"(?<![\w-])(--?[a-zA-Z][\w-]*)", rest.split("#")[0])
        if not path and words and words[0] not in ("FILE", "COMMAND", "..."):
            found.append(("?", words))
        found.append((path, options))
    return found


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_command_and_option_named_exists(page: Path) -> None:
    commands = _commands()
    every_option = {opt for opts in commands.values() for opt in opts}
    wrong = []
    for snippet in _snippets(page):
        calls = _invocations(snippet, commands)
        for path, options in calls:
            if path == "?":
                wrong.append(f"no command `compose {' '.join(options)}`")
                continue
            wrong += [f"`compose {path}` has no {opt}" for opt in options
                      if opt not in commands[path] and opt not in ("-h",)]  # fmt: skip
        if not calls and page.name not in TOOL_PAGES and not snippet.lstrip().startswith(OTHER_TOOLS):
            # an option named on its own (a table cell, "`--takes N` on render/regen"): some command has it
            wrong += [f"no command has {opt}" for opt in re.findall(r"^(--[a-z][\w-]*)", snippet.strip())
                      if opt not in every_option]  # fmt: skip
    assert wrong == []


def _runnable(page: Path) -> list[tuple[str, str, str]]:
    """(marker, language, code) of the blocks marked ``<!-- runnable -->`` or ``<!-- file: NAME -->``, in order."""
    pattern = r"<!-- (runnable|file: [\w./-]+) -->\n```([\w-]*)\n(.*?)```"
    return re.findall(pattern, page.read_text(encoding="utf-8"), flags=re.S)


@pytest.mark.parametrize("page", [p for p in PAGES if _runnable(p)], ids=lambda p: p.name)
def test_runnable_blocks_run(page: Path, scratch: Path) -> None:
    """Each page's walkthrough as a user would follow it, in a fresh folder: files written, then every
    marked block run in order. A ``compose`` line runs in this process (typer's runner: the same
    command without a new interpreter's start-up); any other line, and Python blocks, run as written."""
    from typer.testing import CliRunner

    from composer.cli import app

    env = os.environ | {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    for marker, language, code in _runnable(page):
        if marker.startswith("file: "):
            (scratch / marker.removeprefix("file: ")).write_text(code, encoding="utf-8")
            continue
        if language == "python":
            done = subprocess.run([sys.executable, "-c", code], cwd=scratch, env=env, capture_output=True, text=True)
            assert done.returncode == 0, f"{page.name}: {code}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
            continue
        for line in code.splitlines():
            words = shlex.split(line, comments=True)
            if not words:
                continue
            if words[0] == "compose":
                result = CliRunner().invoke(app, words[1:])
                assert result.exit_code == 0, f"{page.name}: {line}\n{result.output[-2000:]}"
            else:
                done = subprocess.run(["bash", "-e", "-c", line], cwd=scratch, env=env, capture_output=True, text=True)
                assert done.returncode == 0, f"{page.name}: {line}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
