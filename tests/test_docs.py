"""The docs run: every ``python`` block of docs/api.md executes as written (tiny models, a scratch folder)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from tests.conftest import REPO

DOCS = REPO / "docs"


def python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(encoding="utf-8"), flags=re.S)


@pytest.fixture
def scratch(tiny_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working folder with the example arrangements, as a user's project would have them."""
    shutil.copytree(REPO / "arrangements", tmp_path / "arrangements")
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("index", range(len(python_blocks(DOCS / "api.md"))))
def test_api_examples_run(scratch: Path, index: int, capsys: pytest.CaptureFixture[str]) -> None:
    code = python_blocks(DOCS / "api.md")[index]
    exec(compile(code, f"docs/api.md block {index}", "exec"), {"__name__": "__docs__"})
    printed = capsys.readouterr().out
    assert printed.strip(), "the example prints what it shows"
    if index == 0:
        assert "{'drive': 7} {'tension': 1}" in printed
        assert (scratch / "output" / "ebm_set" / "stems" / "takes").is_dir()
    if index == 1:
        assert "render cancelled" in printed and "generated now" in printed
