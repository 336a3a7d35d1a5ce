"""transformers plumbing shared by the model loader and the synthetic-model builder."""

from __future__ import annotations


def quiet_transformers() -> None:
    """Silence transformers' progress bars and expected warnings (pad/bos id 2048 is the special token)."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
