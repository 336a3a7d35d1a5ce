"""Stage 1-2 of a job: load and check an arrangement for its output folder, apply the folder's choices
(regenerated seeds, picked takes, kept takes) and plan it. The local and the Ray path both start here."""

from __future__ import annotations

import difflib
import importlib.util
import logging
import random
import re
from dataclasses import dataclass, replace
from pathlib import Path

from composer.arrangement import Arrangement, load_arrangement
from composer.arrangement.styles import StyleLibrary
from composer.engine.types import Take
from composer.errors import ArrangementError, ComposerError, Problem
from composer.fsutil import filesystem_errors
from composer.job.options import Regen
from composer.job.view import NoRenderError, read_json_object
from composer.plan import Plan, Segment, build_plan
from composer.render.cache import SegmentCache
from composer.render.run import RunStats
from composer.render.state import State, load_state
from composer.settings import MODEL_SOURCES, Settings

log = logging.getLogger(__name__)


class FolderTakenError(ComposerError):
    """Two arrangement files map to one output folder."""

    exit_code = 2


class NotRenderedError(ComposerError):
    """export-stems or pick needs segments that are not in the cache yet."""

    exit_code = 2


def output_name(file: Path) -> str:
    """The output folder name for an arrangement file: its stem, made file-system safe."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", file.stem).strip("._") or "arrangement"
    return name[:80]


@dataclass
class Prepared:
    """An arrangement loaded and checked for its output folder, with the folder's choices (``state``)."""

    file: Path
    arrangement: Arrangement
    styles: StyleLibrary
    folder: Path
    state: State
    settings: Settings

    @property
    def name(self) -> str:
        return self.folder.name

    def plan(self, seeds: dict[str, int] | None = None, takes: dict[str, int] | None = None) -> Plan:
        """The plan with the folder's seeds and picked takes (or ``seeds``/``takes`` instead)."""
        return build_plan(self.arrangement, self.name, self.styles, self.settings,
                          seeds=self.state.seeds if seeds is None else seeds,
                          takes=self.state.takes if takes is None else takes, file=str(self.file))  # fmt: skip

    def check_section(self, section: str) -> None:
        """Raises ArrangementError (with a close match) when the arrangement has no section ``section``."""
        names = [s.name for s in self.arrangement.sections]
        if section not in names:
            guess = difflib.get_close_matches(section, names, n=1)
            hint = f"; did you mean {guess[0]!r}?" if guess else f"; sections: {', '.join(names)}"
            raise ArrangementError([Problem(str(self.file), None, "sections", f"no section named {section!r}{hint}")])

    def choose(self, takes: int, regen: Regen | None) -> dict[str, int]:
        """Apply a regen's new seed (or its reset) to ``state``; returns the takes to keep in stems/takes/
        (section -> how many): those asked for now, and those of earlier renders (``state.take_counts``),
        so that pick, export-stems and later renders keep them. A regen drops its section's old takes."""
        state = self.state
        names = [s.name for s in self.arrangement.sections]
        if regen is None:
            if takes > 1:
                state.take_counts = {name: takes for name in names}
            return {name: n for name, n in state.take_counts.items() if name in names}
        section = regen.section
        self.check_section(section)
        if regen.add_take:  # one more take beside those kept (and the picked one), same seed
            kept = max(state.take_counts.get(section, 1), state.takes.get(section, 0) + 1)
            state.take_counts[section] = kept + 1
            return {name: n for name, n in state.take_counts.items() if name in names}
        state.take_counts.pop(section, None)  # they were takes of the old seed
        if takes > 1:
            state.take_counts[section] = takes
        if regen.reset:
            state.seeds.pop(section, None)
            state.seed_from.pop(section, None)
        else:
            state.seeds[section] = regen.seed if regen.seed is not None else random.SystemRandom().randrange(2**31)
            state.seed_from[section] = next(s.seed for s in self.arrangement.sections if s.name == section)
        state.takes.pop(section, None)
        return {name: n for name, n in state.take_counts.items() if name in names}

    def take_variants(self, takes: dict[str, int]) -> list[Segment]:
        """Stems for the extra takes asked for (section -> how many), other than the picked one."""
        variants: list[Segment] = []
        for section, count in takes.items():
            for take in range(count):
                if take == self.state.takes.get(section, 0):
                    continue
                plan = self.plan(takes=self.state.takes | {section: take})
                variants.append(replace(plan.segment(section), id=f"{section}.take{take}"))
        return variants


def ensure_models(segments: list[Segment], settings: Settings) -> None:
    """Every model the segments use is in the model cache (downloaded now where allowed), before the
    plan's cache keys are trusted: they include each model's revision.

    Raises:
        ModelLoadingError: a model is missing offline, or of an architecture composer does not run.
        CannotWriteError / DiskFullError: the model cache cannot be written.
    """
    from composer.engine.models import ensure_available

    with filesystem_errors(settings.hub_cache, "run the same command again"):
        for model in dict.fromkeys(s.model for s in segments):
            ensure_available(model, settings)


def prepare(file: Path, settings: Settings, out_root: Path) -> Prepared:
    """Load and validate everything a render needs, before anything is written.

    Raises:
        ArrangementError / StyleError: the arrangement or a style is invalid.
        FolderTakenError: another arrangement file renders into the same folder.
    """
    styles = StyleLibrary.load(settings.styles_dir)
    arr = load_arrangement(file, styles)
    folder = out_root / output_name(file)
    state = load_state(folder)
    this = str(file.resolve())
    if state.arrangement not in (None, this) and _is_file(Path(state.arrangement)):
        raise FolderTakenError(
            f"{folder} holds the render of {state.arrangement}, and {file} maps to the same folder: "
            "rename one of the two files or render this one with another --out"
        )
    state.arrangement = this  # a folder remembers its arrangement (adopted when the old file is gone)
    for section in arr.sections:  # an edit of the YAML seed after a regen wins over the regen's seed
        name = section.name
        if name in state.seeds and name in state.seed_from and state.seed_from[name] != section.seed:
            log.warning("%s: its seed was edited in %s after `regen` chose one; the arrangement's seed is used",
                        name, file.name)  # fmt: skip
            del state.seeds[name], state.seed_from[name]
    return Prepared(file, arr, styles, folder, state, settings)


def plan_only(file: Path, settings: Settings, out_root: Path) -> tuple[Plan, str]:
    """The plan as ``render`` would build it now (with regen/pick choices), without generating.

    Returns:
        The plan and the device type the estimates are for ("cpu" or "cuda").
    """
    plan = prepare(file, settings, out_root).plan()
    device = settings.device
    if device == "auto":
        device = "cuda" if importlib.util.find_spec("torch") and _cuda_available() else "cpu"
    return plan, "cpu" if device.startswith("cpu") else "cuda"


def _cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def from_cache(
    prepared: Prepared, plan: Plan, cache: SegmentCache, variants: list[Segment]
) -> tuple[dict[str, Take], RunStats]:
    """Every segment of ``plan`` and ``variants`` from the cache.

    Raises:
        NotRenderedError: some are not in the cache (saying which, or which --models rendered the folder).
    """
    found: dict[str, Take] = {}
    missing = []
    for seg in [*plan.segments, *variants]:
        hit = cache.load(seg.key, seg)
        if hit is None:
            missing.append(seg.id)
        else:
            found[seg.id] = hit
    if missing:
        file, folder = prepared.file, prepared.folder
        source = _rendered_with(folder)
        if source is not None and source != prepared.settings.model_source:  # the same arrangement, other keys
            raise NotRenderedError(f"{folder} was rendered with --models {source}; run `compose export-stems {file} "
                                   f"--models {source}` (or render it with these models first)")  # fmt: skip
        raise NotRenderedError(f"not rendered yet: {', '.join(missing)}; run `compose render {file}` first")
    return found, RunStats([], list(found), {})


def _rendered_with(folder: Path) -> str | None:
    """The model source the folder's manifest records (None when there is no readable manifest)."""
    try:
        manifest = read_json_object(folder / "manifest.json")
    except NoRenderError:  # not a regular file of at most 16 MB, or not a JSON object
        return None
    source = manifest.get("model_source") if manifest else None
    return source if source in MODEL_SOURCES else None


def _is_file(path: Path) -> bool:
    """``path.is_file()``, False where the name cannot even be looked up (a component over 255 bytes)."""
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False
