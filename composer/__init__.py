"""composer: turn MusicGen into a long-form track composer.

Data flow, one subpackage per stage:
arrangement (YAML -> validated model) -> plan -> engine (MusicGen) -> assembly -> export.
"""

__version__ = "0.1.0"
