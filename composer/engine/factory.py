"""Open an engine: load a model and put it behind the engine asked for (``fast`` or ``transformers``).

The engines' common contract is in :mod:`composer.engine.base`; this module is the one that knows
every engine, so the contract never imports its own implementations.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from composer.engine.base import Engine
from composer.engine.fast import FastEngine
from composer.engine.reference import TransformersEngine
from composer.errors import EngineError
from composer.settings import ENGINES

if TYPE_CHECKING:
    from composer.engine.models import LoadedModel
    from composer.settings import Settings


def open_engine(name: str, model: str, settings: Settings) -> Engine:
    """Load ``model`` (small, medium, large, a repo id) behind the engine ``name``.

    Raises:
        ModelLoadingError: weights missing or unreadable, or an architecture composer does not handle.
        EngineError: an unknown engine name.
    """
    from composer.engine.models import load_model

    if name not in ENGINES:  # before loading weights
        raise EngineError(f"unknown engine {name!r}; use {' or '.join(ENGINES)}")
    return wrap(name, load_model(model, settings), settings.step_mode)


def wrap(name: str, lm: LoadedModel, step_mode: str = "auto") -> Engine:
    """Put an already loaded model behind the engine ``name``."""
    if name == "fast":
        return FastEngine(lm, step_mode)
    if name == "transformers":
        return TransformersEngine(lm)
    raise EngineError(f"unknown engine {name!r}; use {' or '.join(ENGINES)}")
