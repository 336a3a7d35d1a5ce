"""The studio tests' project: short.yaml rendered once with two takes per section, and a private copy
of it for each test (tests may change it)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from composer import api
from composer.settings import Settings
from tests.render.test_render import SHORT


@pytest.fixture(scope="package")
def rendered(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project folder: short.yaml rendered with two takes per section."""
    root = tmp_path_factory.mktemp("project")
    shutil.copy(SHORT, root / "short.yaml")
    api.render(root / "short.yaml", out=root / "output", takes=2, settings=settings)
    (root / "short.yaml").unlink()  # each test's copy brings its own (the folder adopts it: the original is gone)
    return root


@pytest.fixture
def project(rendered: Path, tmp_path: Path) -> Path:
    """A private copy of the rendered project."""
    shutil.copytree(rendered, tmp_path / "p", symlinks=True)
    shutil.copy(SHORT, tmp_path / "p" / "short.yaml")
    return tmp_path / "p"
