"""The `compose` command line. It only parses arguments, calls the library and prints.

Heavy imports (torch, transformers) happen inside the commands that need them, so ``--help``,
``validate``, ``schema`` and ``styles`` answer instantly.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperCommand, TyperGroup

from composer import __version__
from composer.engine.catalog import alias_of
from composer.engine.tiny import ensure_synthetic_model
from composer.engine.tune import choose_kernel, isa_summary, machine, score
from composer.engine.types import Sampling
from composer.errors import ArrangementError, ComposerError
from composer.fsutil import filesystem_errors
from composer.job.clip import ClipError, ClipRequest, clip_problem, key_option_problem
from composer.job.options import Regen, Reroll
from composer.settings import ENGINES, MODEL_SOURCES, device_problem, load_settings
from composer.studio import serve

if TYPE_CHECKING:
    from composer.settings import Settings

# Help names a value by what it is (FILE, SECONDS, N), not by its Python type (typer shows <bool>, <str>,
# <list[Path]>); a flag shows no value at all.
VALUE_NAMES = {"files": "FILES", "file": "FILE", "output": "FILE", "melody": "FILE", "continue_from": "FILE",
               "out": "FOLDER", "styles": "FOLDER", "duration": "SECONDS", "prompt_seconds": "SECONDS",
               "names": "NAMES", "section": "SECTION", "bpm": "BPM", "key": "KEY", "model": "MODEL",
               "style": "STYLE", "models": "SOURCE", "device": "DEVICE", "engine": "ENGINE"}  # fmt: skip
# `compose models tune`: how the last row chunk is padded (composer.engine.kernels.PADDINGS)
PADDING_NOTES = {"whole": "", "pow2": ", the last padded to 2, 4, 8 or 16 rows", "none": ", unpadded"}


def _value_name(param: Any) -> str | None:
    if getattr(param, "is_flag", False):
        return None
    if param.name in VALUE_NAMES:
        return VALUE_NAMES[param.name]
    bare = param.bare_type() if hasattr(param, "bare_type") else ""
    return {"int": "N", "float": "NUMBER", "Path": "PATH"}.get(bare, "TEXT")


class _PlainValues:
    """Mixed into composer's commands: each parameter's help and usage show :func:`_value_name`."""

    def get_params(self, ctx: Any) -> list[Any]:
        params: list[Any] = super().get_params(ctx)  # type: ignore[misc]
        for param in params:
            name = _value_name(param)
            if name is not None:
                param.metavar = name  # an argument's row and the usage line show it as its name
            shown = None if getattr(param, "param_type_name", "") == "argument" else name
            param.display_type = lambda ctx, shown=shown: shown
        return params


class _Command(_PlainValues, TyperCommand):
    pass


class _Group(_PlainValues, TyperGroup):
    pass


app = typer.Typer(
    cls=_Group,
    name="compose",
    help="Compose long-form tracks with MusicGen: arrangements of sections, transitions, loudness-matched mixes.",
    epilog="Where things live, from any folder: models in the nearest model-cache/ in this folder or above it, "
    "else the Hugging Face user cache (~/.cache/huggingface), unless COMPOSER_CACHE_DIR or HF_HOME names one; "
    "styles in the nearest styles/ upwards, else the library that comes with composer (or COMPOSER_STYLES_DIR); "
    "renders in ./output (or COMPOSER_OUTPUT_DIR, --out).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
styles_app = typer.Typer(cls=_Group, help="Browse the style library (styles/).", no_args_is_help=True)
models_app = typer.Typer(
    cls=_Group, help="Download and list MusicGen weights in the model cache.", no_args_is_help=True
)
app.add_typer(styles_app, name="styles")
app.add_typer(models_app, name="models")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"compose (musicgen-composer) {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Compose long-form tracks with MusicGen: arrangements of sections, transitions, loudness-matched mixes."""


ModelsOpt = Annotated[
    str | None,
    typer.Option(
        "--models",
        help="Model source: 'hub' (real weights), 'tiny' (tiny random models: noise, for pipeline checks) or "
        "'random' (random weights at the real shapes, for benchmarks). Default: $COMPOSER_MODELS or hub.",
        show_default=False,
    ),
]
DeviceOpt = Annotated[
    str | None,
    typer.Option("--device", help="auto, cpu, cuda or cuda:N. Default: $COMPOSER_DEVICE or auto.", show_default=False),
]
EngineOpt = Annotated[
    str | None,
    typer.Option("--engine", help="Decoding loop: fast (composer's) or transformers (reference generate). "
                 "Default: $COMPOSER_ENGINE or fast.", show_default=False),
]  # fmt: skip
StylesOpt = Annotated[
    Path | None,
    typer.Option(
        "--styles",
        help="Style library folder. Default: $COMPOSER_STYLES_DIR, else the nearest styles/ upwards, "
        "else composer's own.",
        show_default=False,
    ),
]


def _err(message: str) -> None:
    typer.echo(message, err=True)


@contextlib.contextmanager
def _user_errors() -> Iterator[None]:
    """Turn ComposerError into its message (one line per problem) and its exit code."""
    try:
        yield
    except ComposerError as exc:
        _err(str(exc))
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        _err("interrupted")
        raise typer.Exit(130) from None


def _check_key(command: str, key: str | None) -> None:
    """Refuse a key an arrangement would refuse (exit 2), before anything else happens."""
    if problem := key_option_problem(key):
        _err(f"compose {command}: {problem}")
        raise typer.Exit(2)


def _settings(
    models: str | None = None, device: str | None = None, styles: Path | None = None, engine: str | None = None
) -> Settings:

    try:
        settings = load_settings()
    except ValueError as exc:
        _err(f"compose: {exc}")
        raise typer.Exit(2) from None
    if models is not None and models not in MODEL_SOURCES:
        _err(f"compose: --models {models!r}: expected one of {', '.join(MODEL_SOURCES)}")
        raise typer.Exit(2)
    if device is not None and (problem := device_problem(device.strip().lower())):
        _err(f"compose: --device {problem}")
        raise typer.Exit(2)
    if engine is not None and engine not in ENGINES:
        _err(f"compose: --engine {engine!r}: expected one of {', '.join(ENGINES)}")
        raise typer.Exit(2)
    device = device.strip().lower() if device is not None else None
    return settings.with_(model_source=models, device=device, styles_dir=styles, engine=engine)


@app.command()
def validate(
    files: Annotated[list[Path], typer.Argument(help="Arrangement YAML files.", show_default=False)],
    styles: StylesOpt = None,
) -> None:
    """Check arrangements; print every problem as FILE:LINE: field: message (exit 2 if any)."""
    from composer.arrangement import load_arrangement
    from composer.arrangement.styles import StyleLibrary

    with _user_errors():
        library = StyleLibrary.load(_settings(styles=styles).styles_dir)
        failed = False
        for file in files:
            try:
                arrangement = load_arrangement(file, library)
            except ArrangementError as exc:
                _err(str(exc))
                failed = True
                continue
            total = sum(s.duration_s for s in arrangement.sections)
            typer.echo(f"{file}: ok ({len(arrangement.sections)} sections, {total:g} s of stems)")
        if failed:
            raise typer.Exit(2)


@app.command()
def schema() -> None:
    """Print the arrangement JSON Schema (for editor autocompletion)."""
    from composer.arrangement.schema import arrangement_json_schema

    typer.echo(json.dumps(arrangement_json_schema(), indent=2))


@styles_app.command("list")
def styles_list(styles: StylesOpt = None) -> None:
    """List the styles with their one-line descriptions."""
    from composer.arrangement.styles import StyleLibrary

    with _user_errors():
        library = StyleLibrary.load(_settings(styles=styles).styles_dir)
        names = library.names()
        width = max((len(n) for n in names), default=0)
        for name in names:
            style = library.get(name)
            parent = f" (extends {style.chain[-2]})" if len(style.chain) > 1 else ""
            typer.echo(f"{name:<{width}}  [{style.family}] {style.description}{parent}")


@styles_app.command("show")
def styles_show(
    name: Annotated[str, typer.Argument(help="Style name.")],
    bpm: Annotated[
        float | None, typer.Option(min=20.0, max=300.0, help="Fill in this tempo, as a render would.")
    ] = None,
    key: Annotated[str | None, typer.Option(help="Fill in this key, e.g. 'A minor'.", show_default=False)] = None,
    styles: StylesOpt = None,
) -> None:
    """Print a style's prompt (inheritance resolved): as written, or with --bpm/--key as a render sends it."""
    from composer.arrangement.styles import StyleLibrary

    _check_key("styles show", key)
    with _user_errors():
        style = StyleLibrary.load(_settings(styles=styles).styles_dir).get(name)
        typer.echo(f"# {style.name} [{style.family}]: {style.description}")
        typer.echo(
            f"# chain: {' -> '.join(style.chain)}" + ("; tempo: free (names no tempo)" if style.free_tempo else "")
        )
        if bpm is None and key is None:
            typer.echo(style.text)
        else:
            typer.echo(style.render(bpm if bpm is not None else 120.0, key))


@app.command()
def generate(
    output: Annotated[Path, typer.Option("--output", "-o", help="WAV file to write.", show_default=False)],
    duration: Annotated[float, typer.Option("--duration", "-d", help="Seconds of audio.", show_default=False)],
    prompt: Annotated[str | None, typer.Option(help="Prompt text.", show_default=False)] = None,
    style: Annotated[str | None, typer.Option(help="Style from the library.", show_default=False)] = None,
    bpm: Annotated[
        float | None,
        typer.Option(min=20.0, max=300.0, help="Tempo for the prompt (a style's default: 120).", show_default=False),
    ] = None,
    key: Annotated[str | None, typer.Option(help="Key for the prompt, e.g. 'A minor'.", show_default=False)] = None,
    model: Annotated[
        str,
        typer.Option(
            help="small, medium, large, stereo-*, melody, a hub repo id, or a model "
            "folder (./my-finetune: audiocraft's files or save_pretrained's)."
        ),
    ] = "small",
    seed: Annotated[
        int | None, typer.Option(min=0, max=2**31 - 1, help="Seed (default: random, printed).", show_default=False)
    ] = None,
    cfg: Annotated[float, typer.Option(help="Classifier-free guidance scale.")] = 3.0,
    top_k: Annotated[int, typer.Option(help="Top-k sampling (0 = off).")] = 250,
    top_p: Annotated[float, typer.Option(help="Top-p sampling (0 = off).")] = 0.0,
    temperature: Annotated[float, typer.Option(help="Sampling temperature.")] = 1.0,
    continue_from: Annotated[
        Path | None,
        typer.Option(help="Audio file to continue; its last --prompt-seconds prime the model.", show_default=False),
    ] = None,
    prompt_seconds: Annotated[float, typer.Option(help="Seconds of --continue-from used as prompt.")] = 10.0,
    melody: Annotated[
        Path | None,
        typer.Option(help="Reference audio whose melody (chroma) conditions a melody model.", show_default=False),
    ] = None,
    allow_long: Annotated[bool, typer.Option(help="Allow more than 60 s (windowed continuation).")] = False,
    bit_depth: Annotated[str, typer.Option(help="16, 24 or float (WAV only).")] = "16",
    sample_rate: Annotated[int, typer.Option(help="32000 (MusicGen's own), 44100 or 48000 (soxr).")] = 32000,
    models: ModelsOpt = None,
    device: DeviceOpt = None,
    styles: StylesOpt = None,
    engine: EngineOpt = None,
) -> None:
    """Generate one clip from a prompt or a style (no arrangement: a quick sketch or a test)."""
    request = ClipRequest(
        output=output, duration_s=duration, prompt=prompt, style=style, bpm=bpm, key=key, model=model, seed=seed,
        sampling=Sampling(cfg=cfg, top_k=top_k, top_p=top_p, temperature=temperature), continue_from=continue_from,
        prompt_seconds=prompt_seconds, melody=melody, allow_long=allow_long, bit_depth=bit_depth,
        sample_rate=sample_rate,
    )  # fmt: skip
    from composer import api

    with _user_errors():
        try:
            if problem := clip_problem(request):
                raise ClipError(problem)
            settings = _settings(models, device, styles, engine)
            with _progress(f"generating {duration:g} s with {{}}") as update:
                result = api.generate_clip(request, settings=settings, progress=update)
        except ClipError as exc:
            _err(f"compose generate: {exc}")
            raise typer.Exit(2) from None
    typer.echo(f"wrote {result.path} ({result.length_s:.2f} s at {sample_rate} Hz, seed {result.seed}) in "
               f"{result.seconds:.1f} s")  # fmt: skip


@contextlib.contextmanager
def _progress(label: str) -> Iterator[Callable[[str, int, int], None]]:
    """A rich progress bar on an interactive terminal (``label`` with the model's name for ``{}``); silent
    otherwise."""
    if not sys.stderr.isatty():
        yield lambda model, done, total: None
        return
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), TimeRemainingColumn(), transient=True) as bar:
        tasks: list[Any] = []

        def update(model: str, done: int, total: int) -> None:
            if not tasks:
                tasks.append(bar.add_task(label.format(model), total=None))
            bar.update(tasks[0], completed=done, total=total)

        yield update


OutOpt = Annotated[
    Path | None,
    typer.Option("--out", help="Output root (render cache included). Default: $COMPOSER_OUTPUT_DIR or ./output.",
                 show_default=False),
]  # fmt: skip
FileArg = Annotated[Path, typer.Argument(help="Arrangement YAML file.", show_default=False)]
SectionArg = Annotated[str, typer.Argument(help="Section name.", show_default=False)]
AllowLargeOpt = Annotated[
    bool, typer.Option("--allow-large", help="Render even if a model will not fit the GPU's free memory.")
]
TakesOpt = Annotated[int, typer.Option("--takes", min=1, max=16, help="Takes (variations) to keep per section.")]
RerollOpt = Annotated[
    int,
    typer.Option("--reroll", min=0, max=8, help="Regenerate each transition whose joins score above --reroll-above, "
                 "up to N new seeds each, keeping the best (every try is recorded in the manifest)."),
]  # fmt: skip
RerollAboveOpt = Annotated[
    float | None,
    typer.Option("--reroll-above", min=0.5, max=50.0, show_default=False,
                 help="Seam score a join must exceed to be re-rolled (default 2.5: about 1 is a join that sounds like "
                 "the music around it)."),
]  # fmt: skip


@app.command()
def plan(file: FileArg, out: OutOpt = None, models: ModelsOpt = None, device: DeviceOpt = None,
         styles: StylesOpt = None) -> None:  # fmt: skip
    """Show the render plan (segments, timeline, estimates) without generating anything."""
    from composer.job.prepare import plan_only

    with _user_errors():
        settings = _settings(models, device, styles)
        result, device_type = plan_only(file, settings, out or settings.output_dir)
        from composer.cli_render import print_plan

        print_plan(result, settings, device_type)


FilesArg = Annotated[list[Path], typer.Argument(help="Arrangement YAML files, or folders of them.", show_default=False)]
RayOpt = Annotated[
    bool, typer.Option("--ray", help="Render on a Ray cluster (needs the 'ray' extra of musicgen-composer): a local "
                       "one, or the one at --ray-address / $RAY_ADDRESS.")
]  # fmt: skip
RayAddressOpt = Annotated[
    str | None, typer.Option("--ray-address", help="Join this Ray cluster (host:port, or 'auto').", show_default=False)
]
RayActorsOpt = Annotated[
    int | None,
    typer.Option("--ray-actors", min=1, max=256, help="Generation actors (default: one per GPU, else one).",
                 show_default=False),
]  # fmt: skip


def _reroll(tries: int, above: float | None) -> Reroll | None:
    return Reroll(tries=tries, above=above) if tries > 0 else None


@app.command()
def render(files: FilesArg, out: OutOpt = None, takes: TakesOpt = 1, models: ModelsOpt = None,
           device: DeviceOpt = None, styles: StylesOpt = None, engine: EngineOpt = None,
           allow_large: AllowLargeOpt = False, reroll: RerollOpt = 0, reroll_above: RerollAboveOpt = None,
           ray: RayOpt = False, ray_address: RayAddressOpt = None, ray_actors: RayActorsOpt = None,
           ) -> None:  # fmt: skip
    """Render arrangements: stems, transitions, loudness-matched mix, stems, manifest, markers, picture.

    Several files (or folders) render one after another, or all at once on a Ray cluster with --ray.
    """
    from composer import api
    from composer.cli_render import arrangement_files, run_cluster, run_render

    again = _reroll(reroll, reroll_above)
    with _user_errors():
        settings = _settings(models, device, styles, engine)
        root = out or settings.output_dir
        paths = arrangement_files(files)
        if ray or ray_address:
            raise typer.Exit(run_cluster(root, lambda events: api.render_cluster(
                paths, out=root, takes=takes, reroll=again, address=ray_address, actors=ray_actors, settings=settings,
                events=events)))  # fmt: skip

        def start(path: Path) -> Callable[[Any], Any]:
            return lambda events: api.render(path, out=root, takes=takes, reroll=again, allow_large=allow_large,
                                             settings=settings, events=events)  # fmt: skip

        if not paths:
            _err(f"compose render: no arrangement files (*.yaml, *.yml) in {', '.join(str(f) for f in files)}")
            raise typer.Exit(2)
        if len(paths) == 1:
            run_render(paths[0], root, start(paths[0]))
            return
        failed: list[tuple[Path, ComposerError]] = []
        for path in paths:  # one bad file does not stop the others
            try:
                run_render(path, root, start(path))
            except ComposerError as exc:
                _err(str(exc))
                failed.append((path, exc))
        if failed:
            _err(f"{len(paths) - len(failed)} of {len(paths)} arrangements rendered; failed: "
                 f"{', '.join(str(path) for path, _ in failed)}")  # fmt: skip
            raise typer.Exit(failed[0][1].exit_code)


@app.command()
def regen(
    file: FileArg,
    section: SectionArg,
    seed: Annotated[
        int | None, typer.Option(min=0, max=2**31 - 1, help="New seed (default: random, recorded).")
    ] = None,
    out: OutOpt = None, takes: TakesOpt = 1, models: ModelsOpt = None, device: DeviceOpt = None,
    styles: StylesOpt = None, engine: EngineOpt = None, allow_large: AllowLargeOpt = False,
    reset: Annotated[
        bool, typer.Option("--reset", help="Forget earlier regen seeds and picks: back to the arrangement's seed.")
    ] = False,
    add_take: Annotated[
        bool, typer.Option("--add-take", help="Keep the section's seed and takes; render one more take.")
    ] = False,
    reroll: RerollOpt = 0, reroll_above: RerollAboveOpt = None,
    ray: RayOpt = False, ray_address: RayAddressOpt = None, ray_actors: RayActorsOpt = None,
) -> None:  # fmt: skip
    """Regenerate one section (and only what depends on it), then re-assemble."""
    from composer.cli_render import run_cluster, run_render

    if sum((reset, seed is not None, add_take)) > 1 or (add_take and takes > 1):
        _err("compose regen: give one of --seed, --reset and --add-take (and --takes not with --add-take)")
        raise typer.Exit(2)
    from composer import api

    again = _reroll(reroll, reroll_above)
    with _user_errors():
        settings = _settings(models, device, styles, engine)
        root = out or settings.output_dir
        chosen = Regen(section=section, seed=seed, reset=reset, add_take=add_take)
        if ray or ray_address:
            raise typer.Exit(run_cluster(root, lambda events: api.render_cluster(
                [file], out=root, takes=takes, regen=chosen, reroll=again, address=ray_address, actors=ray_actors,
                settings=settings, events=events)))  # fmt: skip
        run_render(file, root, lambda events: api.regen(
            file, section, seed=seed, reset=reset, add_take=add_take, takes=takes, reroll=again,
            allow_large=allow_large, out=root, settings=settings, events=events), regen=section)  # fmt: skip


@app.command()
def pick(
    file: FileArg,
    section: SectionArg,
    take: Annotated[int, typer.Argument(min=0, help="Take number (0 = first).", show_default=False)],
    out: OutOpt = None, models: ModelsOpt = None, device: DeviceOpt = None, styles: StylesOpt = None,
) -> None:  # fmt: skip
    """Use another take of a section (rendered with --takes), then re-assemble."""
    from composer import api
    from composer.cli_render import run_render

    with _user_errors():
        settings = _settings(models, device, styles)
        root = out or settings.output_dir
        run_render(file, root, lambda events: api.pick(file, section, take, out=root, settings=settings, events=events))


@app.command("export-stems")
def export_stems(file: FileArg, out: OutOpt = None, models: ModelsOpt = None, styles: StylesOpt = None) -> None:
    """Re-export mix, stems, manifest and markers from the render cache, generating nothing."""
    from composer import api
    from composer.cli_render import run_render

    with _user_errors():
        settings = _settings(models, styles=styles)
        root = out or settings.output_dir
        run_render(file, root, lambda events: api.export_stems(file, out=root, settings=settings, events=events))


@app.command("export-loops")
def export_loops(file: FileArg, out: OutOpt = None, models: ModelsOpt = None, styles: StylesOpt = None) -> None:
    """Write each section of the render as a bar-exact loop (loops/), from the cache, generating nothing."""
    from composer import api
    from composer.job.prepare import output_name

    with _user_errors():
        settings = _settings(models, styles=styles)
        record = api.export_loops(file, out=out or settings.output_dir, settings=settings)
        folder = (out or settings.output_dir) / output_name(file)
        for loop in record["loops"]:
            typer.echo(f"{loop['section']}: {loop['bars']} bars ({loop['length_s']:.3f} s), wrap seam "
                       f"{loop['wrap_score']:.1f} -> {folder / loop['file']}")  # fmt: skip
        for section in record["skipped"]:
            typer.echo(f"{section}: too short to loop (needs more than {record['crossfade_bars'] + 1} bars)")


@models_app.command("pull")
def models_pull(
    names: Annotated[list[str], typer.Argument(help="small, medium, large or repo ids.", show_default=False)],
    models: ModelsOpt = None,
) -> None:
    """Download models into the model cache (tiny: build them)."""
    from composer.engine.models import pull_model, resolve_repo_id

    with _user_errors():
        settings = _settings(models)
        for name in names:
            repo_id = resolve_repo_id(name, settings)
            with filesystem_errors(settings.hub_cache, "run it again", kept="nothing half-written is used"):
                if settings.model_source in ("tiny", "random"):
                    # pulling rebuilds: the one-line error for a damaged model tells the user to run this
                    kind, alias = settings.model_source, alias_of(name) or name
                    ensure_synthetic_model(kind, alias, settings.hub_cache, rebuild=True)
                else:
                    pull_model(repo_id, settings)
            typer.echo(f"{repo_id}: in {settings.hub_cache}")


@models_app.command("list")
def models_list(models: ModelsOpt = None) -> None:
    """Show the models in the model cache: name, format (transformers or audiocraft), size, where."""
    from composer.engine.models import list_cached

    with _user_errors():
        settings = _settings(models)
        found = list_cached(settings)
        if not found:
            typer.echo(f"no models in {settings.hub_cache}; run `compose models pull small medium`")
            return
        for item in found:
            typer.echo(f"{item.repo_id:<36} {item.format:<12} {item.size_bytes / 1e9:8.3f} GB  {item.path}")


@models_app.command("tune")
def models_tune(
    names: Annotated[list[str], typer.Argument(help="small, medium, large or repo ids.", show_default=False)],
    models: ModelsOpt = None,
) -> None:
    """Measure again which CPU kernel decodes fastest here, and show every kernel's timings.

    composer measures this once per machine and model shape at first use and keeps it in the model
    cache (composer-tuning.json); run this after a torch upgrade, or to see the numbers.
    COMPOSER_CPU_DTYPE (auto by default) overrides the choice.
    """

    from composer.engine.models import model_revision, read_shape, resolve_repo_id

    with _user_errors():
        settings = _settings(models)
        cpu = machine()["cpu"]
        typer.echo(f"{cpu} ({isa_summary() or 'no AVX2'}), {settings.cache_dir / 'composer-tuning.json'}")
        for name in names:
            repo_id = resolve_repo_id(name, settings)
            shape = read_shape(repo_id, model_revision(repo_id, settings), settings)
            if shape is None:
                raise ComposerError(f"{repo_id} is not in {settings.hub_cache}; run `compose models pull {name}`")
            choice = choose_kernel(shape, replace(settings, cpu_dtype="auto"), force=True)
            typer.echo(
                f"{repo_id}: {choice.kernel}, {choice.rows}-row chunks{PADDING_NOTES[choice.pad]} ({choice.numerics})"
            )
            if settings.cpu_dtype != "auto":
                typer.echo(f"  (COMPOSER_CPU_DTYPE={settings.cpu_dtype} is set: renders use {settings.cpu_dtype})")
            for variant, m in sorted(choice.measured.items()):
                if not m.get("available"):
                    typer.echo(f"  {variant:<19} not available on this CPU/torch build")
                    continue
                label = variant + ("" if m.get("pad", "whole") == "whole" else f" {m['pad']}")
                typer.echo(f"  {label:<19} batch 1 {m['batch1_s'] * 1000:7.1f} ms  batch {m['batch']} "
                           f"{m['batch_s'] * 1000:7.1f} ms  per segment {score(m) * 1000:7.1f} ms  "
                           f"{'invariant' if m['invariant'] else 'varies with batch/threads'}")  # fmt: skip


@app.command()
def studio(
    path: Annotated[
        Path | None,
        typer.Argument(help="An arrangement, a folder of them, or an output folder. Default: ./arrangements.",
                       show_default=False),
    ] = None,
    out: OutOpt = None,
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port (0: a free one).")] = 0,
    host: Annotated[
        str, typer.Option(help="Address to listen on. Anything but 127.0.0.1 lets other machines reach it.")
    ] = "127.0.0.1",
    no_browser: Annotated[bool, typer.Option("--no-browser", help="Print the URL only.")] = False,
    models: ModelsOpt = None, device: DeviceOpt = None, styles: StylesOpt = None, engine: EngineOpt = None,
) -> None:  # fmt: skip
    """Audition, compare and steer renders in the browser (a local server; Ctrl-C stops it)."""
    try:
        from composer.studio import server
    except ImportError:
        _err("compose studio needs starlette and uvicorn (dependencies of musicgen-composer): pip install -e .")
        raise typer.Exit(2) from None
    with _user_errors():
        settings = _settings(models, device, styles, engine)
        root = out or settings.output_dir
        files, root = serve.studio_files(path, Path("arrangements"), root)
        try:
            sock = serve.bind(host, port)
        except (OSError, UnicodeError) as exc:
            _err(f"compose studio: cannot listen on {host}:{port}: {exc}")
            raise typer.Exit(2) from None
        if host not in serve.LOOPBACK | {"::1"}:
            _err(f"warning: listening on {host}: anyone who can reach this machine and has the URL can drive it")
        token = server.new_token()
        spec = server.Studio(files=files, out=root, settings=settings, token=token, hosts=serve.allowed_hosts(host))
        shown = f"[{host}]" if ":" in host else ("127.0.0.1" if host in ("0.0.0.0", "::") else host)
        url = f"http://{shown}:{sock.getsockname()[1]}/?token={token}"
        serve.serve(server.create_app(spec), sock, url, open_browser=not no_browser, echo=typer.echo)


for _typer in (app, styles_app, models_app):
    for _info in _typer.registered_commands:
        if _info.cls in (None, TyperCommand):
            _info.cls = _Command


def main(argv: list[str] | None = None) -> None:
    """Entry point for the `compose` script and `python -m composer`."""
    app(args=argv, prog_name="compose")
