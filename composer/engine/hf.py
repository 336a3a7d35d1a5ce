"""transformers plumbing shared by the model loader and the synthetic-model builder."""

from __future__ import annotations

from pathlib import Path


def repo_folder(cache: Path, repo_id: str) -> Path:
    """``repo_id``'s folder in a hub-layout cache: ``models--ORG--NAME``."""
    return cache / ("models--" + repo_id.replace("/", "--"))


def hub_snapshot(cache: Path, repo_id: str) -> Path | None:
    """The snapshot folder ``refs/main`` names for ``repo_id`` in a hub-layout cache (None without a
    ref; the folder itself may be incomplete: callers check the file they need)."""
    repo = repo_folder(cache, repo_id)
    ref = repo / "refs" / "main"
    return repo / "snapshots" / ref.read_text().strip() if ref.is_file() else None


def quiet_transformers() -> None:
    """Silence transformers' progress bars and expected warnings (pad/bos id 2048 is the special token)."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
