"""composer's Python API: everything ``compose`` does, as typed functions (the CLI is one client).

    from composer import api

    settings = api.settings_from_env(models="tiny")    # $COMPOSER_* and the folders, as the CLI reads them
    arrangement = api.load("arrangements/ebm_set.yaml", settings=settings)
    result = api.render("arrangements/ebm_set.yaml", settings=settings, takes=2)
    api.regen("arrangements/ebm_set.yaml", "drive", seed=7, settings=settings)
    api.pick("arrangements/ebm_set.yaml", "drive", 1, settings=settings)
    done = api.open_render(result.folder)              # manifest, state and takes as typed values
    print(done.mix, done.loudness.integrated_lufs, [t.file for t in done.takes])

The file (or files) and the section are positional; every other argument is keyword-only. Errors are
:class:`composer.errors.ComposerError` subclasses whose message is one line per problem and whose
``exit_code`` is the one ``compose`` exits with. See docs/api.md.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from composer.arrangement import Arrangement, load_arrangement
from composer.arrangement.styles import StyleLibrary
from composer.errors import ComposerError
from composer.job import clip
from composer.job.audition import Audition
from composer.job.audition import audition as _audition
from composer.job.clip import ClipError, ClipProgress, ClipRequest, ClipResult
from composer.job.cluster import ClusterEvents, ClusterReport, render_many
from composer.job.local import Cancelled, RenderResult, TooLargeError
from composer.job.local import render as _render
from composer.job.loops import export_loops as _export_loops
from composer.job.options import Pick, Regen, RenderOptions, Reroll
from composer.job.prepare import NotRenderedError, prepare
from composer.job.view import FinishedRender, NoRenderError, open_render
from composer.plan import Plan
from composer.render.run import KeptEngine, NoEvents, RenderEvents
from composer.settings import ENGINES, MODEL_SOURCES, Settings, device_problem, load_settings

__all__ = [
    "Arrangement", "Audition", "Cancelled", "ClipError", "ClipProgress", "ClipRequest", "ClipResult", "ClusterEvents",
    "ClusterReport", "ComposerError", "FinishedRender", "KeptEngine", "NoEvents", "NoRenderError", "NotRenderedError",
    "Plan", "Regen", "RenderEvents", "RenderResult", "Reroll", "Settings", "SettingsError", "TooLargeError",
    "audition", "export_loops", "export_stems", "generate_clip", "load", "open_render", "pick", "plan", "regen",
    "render", "render_cluster", "settings_from_env",
]  # fmt: skip


class SettingsError(ComposerError):
    """A setting (an argument, or a ``COMPOSER_*`` variable) composer does not accept."""

    exit_code = 2


def settings_from_env(
    *, models: str | None = None, device: str | None = None, styles: Path | None = None, engine: str | None = None
) -> Settings:
    """The settings ``compose`` would use here (environment, nearest model cache and styles), with the
    CLI's ``--models``, ``--device``, ``--styles`` and ``--engine`` applied.

    Raises:
        SettingsError: a bad value (the message names the variable or argument).
    """
    try:
        found = load_settings()
    except ValueError as exc:
        raise SettingsError(str(exc)) from None
    if device is not None and (problem := device_problem(device.strip().lower())):
        raise SettingsError(f"device {problem}")
    if models is not None and models not in MODEL_SOURCES:
        raise SettingsError(f"models {models!r}: expected one of {', '.join(MODEL_SOURCES)}")
    if engine is not None and engine not in ENGINES:
        raise SettingsError(f"engine {engine!r}: expected one of {', '.join(ENGINES)}")
    return found.with_(model_source=models, device=device.strip().lower() if device else None, styles_dir=styles,
                       engine=engine)  # fmt: skip


def load(file: Path | str, *, settings: Settings | None = None) -> Arrangement:
    """Read and validate an arrangement (its styles from the settings' library).

    Raises:
        ArrangementError: every problem found, each with file, line and field.
    """
    s = settings or settings_from_env()
    return load_arrangement(Path(file), StyleLibrary.load(s.styles_dir))


def plan(file: Path | str, *, out: Path | str | None = None, settings: Settings | None = None) -> Plan:
    """The render plan (segments, cache keys, timeline) with the output folder's regen and pick choices."""
    s = settings or settings_from_env()
    return prepare(Path(file), s, Path(out) if out is not None else s.output_dir).plan()


def render(
    file: Path | str,
    *,
    out: Path | str | None = None,
    takes: int = 1,
    reroll: Reroll | None = None,
    allow_large: bool = False,
    settings: Settings | None = None,
    events: RenderEvents | None = None,
    cancel: threading.Event | None = None,
    engines: KeptEngine | None = None,
) -> RenderResult:
    """``compose render``: generate what the cache lacks, assemble, master, write ``<out>/<name>/``.

    Args:
        takes: takes per section to keep (stems/takes/), 1 = only the picked one.
        reroll: re-roll transitions whose joins score badly.
        events: progress callbacks (see :class:`composer.render.run.RenderEvents`).
        cancel: set it from another thread or a callback to stop at the next segment or decoding step
            (raises :class:`Cancelled`; what finished stays cached, the same call resumes).
        engines: a :class:`KeptEngine` keeps the last model loaded for the next call (``close()`` it);
            default: the models are loaded for this call and released after it.
    """
    options = RenderOptions(takes=takes, reroll=reroll, allow_large=allow_large)
    return _run(file, out, options, settings, events, cancel, engines=engines)


def regen(
    file: Path | str,
    section: str,
    *,
    seed: int | None = None,
    reset: bool = False,
    add_take: bool = False,
    takes: int = 1,
    reroll: Reroll | None = None,
    allow_large: bool = False,
    out: Path | str | None = None,
    settings: Settings | None = None,
    events: RenderEvents | None = None,
    cancel: threading.Event | None = None,
    engines: KeptEngine | None = None,
) -> RenderResult:
    """``compose regen``: a new seed for ``section`` (``seed``, else a random one, recorded), or with
    ``reset`` back to the arrangement's, or with ``add_take`` one more take of its seed (the others
    kept); then what depends on it, and the mix."""
    regen = Regen(section=section, seed=seed, reset=reset, add_take=add_take)
    options = RenderOptions(takes=takes, regen=regen, reroll=reroll, allow_large=allow_large)
    return _run(file, out, options, settings, events, cancel, engines=engines)


def pick(
    file: Path | str,
    section: str,
    take: int,
    *,
    out: Path | str | None = None,
    settings: Settings | None = None,
    events: RenderEvents | None = None,
    cancel: threading.Event | None = None,
    engines: KeptEngine | None = None,
) -> RenderResult:
    """``compose pick``: use take ``take`` of ``section`` (rendered with ``takes``) from now on (what
    depends on it, such as the transitions continuing it, is generated now)."""
    options = RenderOptions(pick=Pick(section=section, take=take))
    return _run(file, out, options, settings, events, cancel, engines=engines)


def audition(
    file: Path | str, section: str, take: int, *, out: Path | str | None = None, settings: Settings | None = None
) -> Audition:
    """The mix as it would be with take ``take`` of ``section`` (assembled from the cache at the mix's
    loudness; nothing is generated): a WAV in ``<out>/cache/auditions/``. Segments made from the picked
    take's audio (a transition continuing it) are heard as in the current mix until ``pick``; the result
    names them in ``borrowed``.

    Raises:
        NotRenderedError: that take was never rendered (``render(..., takes=take + 1)`` first).
    """
    s = settings or settings_from_env()
    root = Path(out) if out is not None else s.output_dir
    return _audition(Path(file), section, take, s, root)


def export_loops(
    file: Path | str, *, out: Path | str | None = None, settings: Settings | None = None
) -> dict[str, Any]:
    """``compose export-loops``: each section of the render as a bar-exact loop in ``<out>/<name>/loops/``,
    from the cache (nothing generated); returns what ``loops.json`` says (per loop its bars, length and
    wrap score; the sections too short to loop).

    Raises:
        NotRenderedError: the render is not in the cache yet.
    """
    s = settings or settings_from_env()
    return _export_loops(Path(file), s, Path(out) if out is not None else s.output_dir)


def export_stems(
    file: Path | str, *, out: Path | str | None = None, settings: Settings | None = None,
    events: RenderEvents | None = None,
) -> RenderResult:  # fmt: skip
    """``compose export-stems``: write the mix, stems, manifest and markers again from the cache only."""
    return _run(file, out, RenderOptions(generate=False), settings, events, None)


def render_cluster(
    files: list[Path],
    *,
    out: Path | str | None = None,
    takes: int = 1,
    regen: Regen | None = None,
    reroll: Reroll | None = None,
    address: str | None = None,
    actors: int | None = None,
    settings: Settings | None = None,
    events: ClusterEvents | None = None,
) -> ClusterReport:
    """``compose render --ray`` (and ``regen --ray``: one file and ``regen``): every arrangement on a Ray
    cluster (``address``, or a local one)."""
    s = settings or settings_from_env()
    options = RenderOptions(takes=takes, regen=regen, reroll=reroll)
    root = Path(out) if out is not None else s.output_dir
    return render_many([Path(f) for f in files], s, root, options, address=address, actors=actors, events=events)


def _run(
    file: Path | str, out: Path | str | None, options: RenderOptions, settings: Settings | None,
    events: RenderEvents | None, cancel: threading.Event | None, *, engines: KeptEngine | None = None,
) -> RenderResult:  # fmt: skip
    s = settings or settings_from_env()
    root = Path(out) if out is not None else s.output_dir
    return _render(Path(file), s, root, options, events=events, cancel=cancel, engines=engines)


def generate_clip(
    request: ClipRequest, *, settings: Settings | None = None, progress: ClipProgress | None = None
) -> ClipResult:
    """``compose generate``: one clip from a prompt or a style, written with its record (``<output>.json``).

    Raises:
        ClipError: a bad request, named by the ``compose generate`` option it comes from.
    """
    return clip.generate_clip(request, settings or settings_from_env(), progress)
