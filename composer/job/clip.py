"""One clip from a prompt or a style, without an arrangement (``compose generate``): a quick sketch,
a continuation of an audio file, or a melody-conditioned take."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from composer import __version__
from composer.arrangement.schema import key_problem
from composer.arrangement.styles import StyleLibrary
from composer.engine.catalog import COMFORTABLE_S, LONG_FORM_MAX_S, info_of
from composer.engine.types import Sampling
from composer.errors import ComposerError
from composer.fsutil import atomic_write_text, filesystem_errors, json_text
from composer.prompt import PROMPT_MAX_CHARS, compose
from composer.settings import Settings

ClipProgress = Callable[[str, int, int], None]  # (model repo id, frames done, frames wanted)


class ClipError(ComposerError):
    """A clip request that cannot be made (the message names the option, as ``compose generate`` spells it)."""

    exit_code = 2


@dataclass(frozen=True, kw_only=True)
class ClipRequest:
    """What ``compose generate`` is asked for. Exactly one of ``prompt`` and ``style``."""

    output: Path  # .wav or .flac; the record goes beside it as <name>.json
    duration_s: float
    prompt: str | None = None
    style: str | None = None
    bpm: float | None = None  # fills a style's tempo (default 120), or is added to a prompt
    key: str | None = None
    model: str = "small"
    seed: int | None = None  # None: a random one, recorded
    sampling: Sampling = field(default_factory=Sampling)
    continue_from: Path | None = None  # audio whose last ``prompt_seconds`` prime the model
    prompt_seconds: float = 10.0
    melody: Path | None = None  # a melody model's reference
    allow_long: bool = False  # up to 300 s by windowed continuation (else 60 s)
    bit_depth: str = "16"  # 16, 24 or float (WAV only)
    sample_rate: int = 32000  # 32000, 44100 or 48000


@dataclass(frozen=True)
class ClipResult:
    path: Path
    seed: int
    length_s: float  # of the file written
    seconds: float  # generation time
    record: dict[str, Any]  # what <output>.json holds


def clip_problem(request: ClipRequest) -> str | None:
    """Why the request cannot be made, checked without settings, files or models (None when fine)."""
    if (request.prompt is None) == (request.style is None):
        return "give exactly one of --prompt or --style"
    limit = LONG_FORM_MAX_S if request.allow_long else COMFORTABLE_S
    if not 0 < request.duration_s <= limit:
        hint = "" if request.allow_long else " (use --allow-long for windowed generation up to 300 s)"
        return f"--duration must be in (0, {limit:g}] seconds{hint}"
    output = request.output
    if output.suffix.lower() not in (".wav", ".flac"):
        return f"--output {output}: use a .wav or .flac file name"
    if problem := _output_problem(output):  # before generating: minutes of work must not be lost to a typo
        return f"--output {output}: {problem}"
    if problem := key_option_problem(request.key):
        return problem
    return _format_problem(request)


def key_option_problem(key: str | None) -> str | None:
    """Why ``--key`` is refused (the arrangement's rule, said of the option), or None."""
    if key is not None and (problem := key_problem(key)):
        return f"--key {key!r}: {problem.split('; ', 1)[1]}"
    return None


def _format_problem(request: ClipRequest) -> str | None:
    s = request.sampling
    problem = sampling_problem(s.cfg, s.top_k, s.top_p, s.temperature)
    depth, suffix = request.bit_depth, request.output.suffix.lower()
    if depth not in ("16", "24", "float") or (depth == "float" and suffix == ".flac"):
        problem = problem or f"--bit-depth {depth}: use 16 or 24 (or float for a .wav)"
    if request.sample_rate not in (32000, 44100, 48000):
        problem = problem or f"--sample-rate {request.sample_rate}: use 32000, 44100 or 48000"
    seconds = request.prompt_seconds
    if problem is None and not (math.isfinite(seconds) and 0 < seconds <= 29.0):
        problem = f"--prompt-seconds must be in (0, 29] seconds (got {seconds})"
    return problem


def sampling_problem(cfg: float, top_k: int, top_p: float, temperature: float) -> str | None:
    """The arrangement schema's ranges for sampling options, as one line (None when all are fine)."""
    from pydantic import ValidationError

    from composer.arrangement.schema import Sampling as SamplingFields

    try:
        SamplingFields(cfg=cfg, top_k=top_k, top_p=top_p, temperature=temperature)
    except ValidationError as exc:
        err = exc.errors()[0]
        name = str(err["loc"][0]).replace("_", "-")
        return f"--{name} {err['msg'].replace('Input should be', 'must be')} (got {err.get('input')!r})"
    return None


def _output_problem(output: Path) -> str | None:
    """Why ``output`` cannot be written as a file (a folder there, a file above it), or None."""
    if output.is_dir():
        return "is a folder; give a file name like clip.wav"
    for parent in output.absolute().parents:
        if parent.exists():
            return None if parent.is_dir() else f"{parent} is a file, not a folder"
    return None


def prompt_text(request: ClipRequest, settings: Settings) -> str:
    """The text the model is given: the style as a render sends it (its tempo and key filled in), or
    the prompt with the tempo and key asked for."""
    bpm, key = request.bpm, request.key
    if request.style is not None:
        text = StyleLibrary.load(settings.styles_dir).get(request.style).render(bpm if bpm is not None else 120.0, key)
    else:
        assert request.prompt is not None
        text = request.prompt
        if bpm is not None or key is not None:
            text = compose([text], bpm, key) if bpm is not None else compose([text], 0.0, key, free_tempo=True)
    if len(text) > PROMPT_MAX_CHARS:  # T5's memory grows with the square of the text
        raise ClipError(f"--prompt: {len(text)} characters (limit {PROMPT_MAX_CHARS}); shorten it")
    return text


def generate_clip(request: ClipRequest, settings: Settings, progress: ClipProgress | None = None) -> ClipResult:
    """Generate the clip and write it with its record (``<output>.json``).

    Raises:
        ClipError: a bad request (see :func:`clip_problem`), a prompt over the limit, a melody for a
            model without melody conditioning.
        AudioInputError / ModelLoadingError / EngineError / CannotWriteError: from reading, loading,
            generating, writing.
    """
    from composer.audio.io import read_audio
    from composer.engine.factory import open_engine

    if problem := clip_problem(request):
        raise ClipError(problem)
    text = prompt_text(request, settings)
    seed = request.seed if request.seed is not None else random.SystemRandom().randrange(2**31)
    info = info_of(request.model)
    if request.melody is not None and info is not None and not info.melody:
        raise ClipError(f"--melody needs a melody model (melody, stereo-melody...), not {request.model!r}")
    # read every input before loading a model: a bad file fails in a second, not after the load
    reference = read_audio(request.melody, max_seconds=request.duration_s + 30.0) if request.melody else None
    continued = None
    if request.continue_from is not None:
        continued = read_audio(request.continue_from, max_seconds=request.prompt_seconds, tail=True)
    runner = open_engine(settings.engine, request.model, settings)
    started = time.perf_counter()
    result = _generate(runner, request, text, seed, inputs=(reference, continued), progress=progress)
    elapsed = time.perf_counter() - started
    return _write(request, settings, runner.lm, result, text=text, seed=seed, elapsed=elapsed)


def _generate(
    runner: Any, request: ClipRequest, text: str, seed: int, *,
    inputs: tuple[tuple[Any, int] | None, tuple[Any, int] | None], progress: ClipProgress | None,
) -> Any:  # fmt: skip
    """The engine's take for the request; ``inputs``: the melody reference and the audio to continue, as read."""
    reference, continued = inputs
    from composer.engine.codec import encode_audio
    from composer.engine.types import Request

    lm = runner.lm
    prompt_tokens = None
    if continued is not None:
        audio, rate = continued
        tail = audio[:, max(0, audio.shape[1] - int(request.prompt_seconds * rate)) :]
        prompt_tokens = encode_audio(lm, tail, rate)
    engine_request = Request(
        text=text, duration_s=request.duration_s, seed=seed, prompt_tokens=prompt_tokens, sampling=request.sampling,
        melody=reference[0] if reference else None, melody_rate=reference[1] if reference else 0,
    )  # fmt: skip

    def report(_i: int, done: int, total: int) -> None:
        if progress is not None:
            progress(lm.repo_id, done, total)

    return runner.generate([engine_request], progress=report)[0]


def _write(
    request: ClipRequest, settings: Settings, lm: Any, result: Any, *, text: str, seed: int, elapsed: float
) -> ClipResult:
    from composer.audio.dsp import resample
    from composer.audio.io import write_audio

    output, s = request.output, request.sampling
    record = {
        "output": output.name, "model": lm.repo_id, "revision": lm.revision, "source": lm.source,
        "prompt": text, "style": request.style, "seed": seed, "duration_s": request.duration_s,
        "sampling": {"cfg": s.cfg, "top_k": s.top_k, "top_p": s.top_p, "temperature": s.temperature},
        "continue_from": str(request.continue_from) if request.continue_from else None,
        "prompt_seconds": request.prompt_seconds if request.continue_from else None,
        "melody": str(request.melody) if request.melody else None,
        "sample_rate": request.sample_rate, "bit_depth": request.bit_depth, "channels": result.channels,
        "frames": int(result.new_tokens.shape[1]),
        "device": str(lm.device), "dtype": result.provenance["dtype"], "engine": settings.engine,
        "kernel": lm.kernel, "numerics": lm.numerics, "kernel_choice": lm.kernel_choice,
        "seconds_taken": round(elapsed, 3), "versions": versions(),
    }  # fmt: skip
    depth: int | str = int(request.bit_depth) if request.bit_depth != "float" else "float"
    audio = resample(result.new_audio, result.sample_rate, request.sample_rate)
    with filesystem_errors(output, "run it again"):
        write_audio(output, audio, request.sample_rate, bit_depth=depth)
        atomic_write_text(output.with_name(output.name + ".json"), json_text(record) + "\n")
    return ClipResult(output, seed, audio.shape[1] / request.sample_rate, elapsed, record)


def versions() -> dict[str, str]:
    """composer's, torch's and transformers' versions (recorded with every clip)."""
    import torch
    import transformers

    return {"composer": __version__, "torch": torch.__version__, "transformers": transformers.__version__}
