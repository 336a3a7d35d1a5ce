"""What a render is asked to do, as frozen values: the CLI, the Ray path and the API build these."""

from __future__ import annotations

from dataclasses import dataclass

from composer.assembly.seams import REROLL_ABOVE, Rerolls


@dataclass(frozen=True, kw_only=True)
class Regen:
    """Regenerate one section with a new seed (``seed``, else a random one), or with ``reset`` go back
    to the arrangement's seed and first take, or with ``add_take`` keep its seed and takes and make
    one more take."""

    section: str
    seed: int | None = None
    reset: bool = False
    add_take: bool = False


@dataclass(frozen=True, kw_only=True)
class Pick:
    """Use take ``take`` of ``section`` from now on (it must have been rendered)."""

    section: str
    take: int


@dataclass(frozen=True, kw_only=True)
class Reroll:
    """Regenerate, with new seeds, each transition whose joins score above ``above`` (None: the
    default limit), up to ``tries`` times each, keeping the best."""

    tries: int
    above: float | None = None

    def record(self) -> Rerolls:
        """An empty record of the tries, with the limit in force (``above``, else the default)."""
        return Rerolls(self.above if self.above is not None else REROLL_ABOVE)


@dataclass(frozen=True, kw_only=True)
class RenderOptions:
    """One render of one arrangement.

    Attributes:
        takes: takes per section to keep (1 = just the picked one); with ``regen``, for that section only.
        regen: a section to regenerate first.
        pick: a take to use from now on.
        reroll: re-roll transitions whose joins score badly.
        generate: False: write the outputs from cached segments only (``export-stems``).
        allow_large: render even when a model will not fit the GPU's free memory.
    """

    takes: int = 1
    regen: Regen | None = None
    pick: Pick | None = None
    reroll: Reroll | None = None
    generate: bool = True
    allow_large: bool = False
