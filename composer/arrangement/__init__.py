"""Arrangement YAML -> validated model (stage 1 of the data flow)."""

from composer.arrangement.loader import load_arrangement
from composer.arrangement.schema import Arrangement, Section

__all__ = ["Arrangement", "Section", "load_arrangement"]
