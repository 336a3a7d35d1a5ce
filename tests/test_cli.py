"""The compose CLI end to end (typer's CliRunner): exit codes, output, files written."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from composer.cli import PADDING_NOTES, app
from composer.engine.kernels import KERNEL_VERSION
from composer.engine.tune import isa_tag, machine
from tests.conftest import REPO

runner = CliRunner()


def sidecar(audio: Path) -> Path:
    """compose generate's record of a clip: OUT.json beside OUT (k.wav -> k.wav.json)."""
    return audio.with_name(audio.name + ".json")


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_help_lists_commands() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("validate", "schema", "generate", "styles", "models"):
        assert command in result.output


COMMANDS = [[], ["render"], ["plan"], ["validate"], ["schema"], ["generate"], ["regen"], ["pick"],
            ["export-stems"], ["styles", "list"], ["styles", "show"], ["models", "pull"], ["models", "list"],
            ["models", "tune"], ["studio"]]  # fmt: skip


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "compose")
def test_help_names_values_plainly(command: list[str]) -> None:
    """#19 item 28: help showed Python type labels (<bool>, <str>, <list[Path]>, <int range>)."""
    import re

    result = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "200"}, terminal_width=200)
    assert result.exit_code == 0, result.output
    assert not re.search(r"<[a-z]", result.output), result.output
    options = {line.split()[1]: line for line in result.output.splitlines() if line.startswith("│ ") and " --" in line}
    assert options, result.output
    for line in result.output.splitlines():  # a flag: no value name at all
        assert not re.search(r"--(help|allow-large|ray|reset|version|no-browser|add-take)\s+([A-Z]{2,}|N)\b", line), (
            line
        )
    if command == ["generate"]:
        text = result.output
        assert re.search(r"--duration\s+-d\s+SECONDS", text) and re.search(r"--output\s+-o\s+FILE", text), text
        assert re.search(r"--seed\s+N ", text) and re.search(r"--prompt\s+TEXT", text), text
    if command == ["render"]:
        assert "compose render [OPTIONS] {FILES}..." in result.output and re.search(r"\*\s+FILES\s+Arr", result.output)


def test_cli_import_stays_light() -> None:
    """`compose --help` must not import torch or transformers (that is what keeps it instant)."""
    code = "import sys, composer.cli; print('torch' in sys.modules, 'transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_python_dash_m_works() -> None:
    out = subprocess.run([sys.executable, "-m", "composer", "--help"], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0 and "generate" in out.stdout


def test_generate_writes_requested_length_and_is_repeatable(tiny_env: Path, tmp_path: Path) -> None:
    out = tmp_path / "clip.wav"
    args = ["generate", "--model", "small", "--style", "industrial-ebm", "--duration", "2", "--seed", "42",
            "--output", str(out)]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    info = sf.info(str(out))
    assert info.samplerate == 32000 and info.channels == 1 and info.frames == 2 * 32000
    assert info.subtype == "PCM_16"
    audio, _ = sf.read(str(out))
    assert np.abs(audio).max() > 0
    record = json.loads(sidecar(out).read_text())
    assert record["seed"] == 42 and record["model"] == "composer-tiny/musicgen-small"
    assert record["style"] == "industrial-ebm" and "Electronic Body Music" in record["prompt"]
    assert "at 120 BPM" in record["prompt"] and "{bpm}" not in record["prompt"], "a style's tempo is filled in"
    assert record["sampling"] == {"cfg": 3.0, "top_k": 250, "top_p": 0.0, "temperature": 1.0}
    first = sha(out)
    again = runner.invoke(app, args)
    assert again.exit_code == 0 and sha(out) == first, "same seed must give byte-identical audio"
    other = runner.invoke(app, args[:-3] + ["43", "--output", str(out)])
    assert other.exit_code == 0 and sha(out) != first


def test_generate_medium_with_prompt_and_continuation(tiny_env: Path, tmp_path: Path) -> None:
    first = tmp_path / "a.wav"
    assert runner.invoke(app, ["generate", "--prompt", "ambient drone", "-d", "1", "-o", str(first)]).exit_code == 0
    record = json.loads(sidecar(first).read_text())
    assert isinstance(record["seed"], int), "a random seed is chosen and recorded"
    cont = tmp_path / "b.flac"
    result = runner.invoke(
        app,
        ["generate", "--model", "medium", "--prompt", "ambient drone", "-d", "1.5", "-o", str(cont),
         "--continue-from", str(first), "--prompt-seconds", "0.5", "--seed", "1"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert sf.info(str(cont)).frames == int(1.5 * 32000)
    assert json.loads(sidecar(cont).read_text())["model"] == "composer-tiny/musicgen-medium"


def test_generate_stereo_model_writes_two_channels(tiny_env: Path, tmp_path: Path) -> None:
    mono = tmp_path / "mono.wav"
    assert runner.invoke(app, ["generate", "--prompt", "ambient drone", "-d", "1", "-o", str(mono)]).exit_code == 0
    out = tmp_path / "wide.wav"
    args = ["generate", "--model", "stereo-small", "--prompt", "wide pads", "-d", "1", "-o", str(out),
            "--continue-from", str(mono), "--prompt-seconds", "0.5"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    info = sf.info(str(out))
    assert info.channels == 2 and info.frames == 32000
    record = json.loads(sidecar(out).read_text())
    assert record["model"] == "composer-tiny/musicgen-stereo-small" and record["channels"] == 2


def test_generate_with_a_melody(tiny_env: Path, tmp_path: Path) -> None:
    ref = tmp_path / "ref.wav"
    t = np.arange(44100) / 44100
    sf.write(str(ref), 0.3 * np.sin(2 * np.pi * 440 * t), 44100)
    out = tmp_path / "m.wav"
    args = ["generate", "--model", "melody", "--prompt", "a lead", "-d", "1", "-o", str(out), "--melody", str(ref)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert sf.info(str(out)).frames == 32000
    assert json.loads(sidecar(out).read_text())["melody"] == str(ref)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--model", "small", "--melody", "REF"], "--melody needs a melody model"),
        (["--model", "melody", "--melody", "NOTAUDIO"], "not a readable audio file"),
        (["--continue-from", "NOTAUDIO"], "not a readable audio file"),
        (["--continue-from", "MISSING"], "not a readable audio file"),
    ],
)
def test_generate_checks_input_files_before_loading_a_model(
    tiny_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, extra: list[str], message: str
) -> None:
    import composer.engine.factory as base

    def no_loading(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("a model was loaded before the inputs were checked")

    monkeypatch.setattr(base, "open_engine", no_loading)
    ref, junk = tmp_path / "ref.wav", tmp_path / "junk.wav"
    sf.write(str(ref), np.zeros(4410), 44100)
    junk.write_text("not audio")
    names = {"REF": str(ref), "NOTAUDIO": str(junk), "MISSING": str(tmp_path / "missing.wav")}
    args = ["generate", "--prompt", "p", "-d", "1", "-o", str(tmp_path / "x.wav")] + [names.get(a, a) for a in extra]
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and message in result.output, result.output
    assert "Traceback" not in result.output and not (tmp_path / "x.wav").exists()


def test_generate_refuses_bad_requests(tiny_env: Path, tmp_path: Path) -> None:
    out = tmp_path / "x.wav"
    both = runner.invoke(app, ["generate", "--prompt", "p", "--style", "industrial-ebm", "-d", "1", "-o", str(out)])
    assert both.exit_code == 2 and "exactly one of --prompt or --style" in both.output
    long = runner.invoke(app, ["generate", "--prompt", "p", "-d", "90", "-o", str(out)])
    assert long.exit_code == 2 and "--allow-long" in long.output
    style = runner.invoke(app, ["generate", "--style", "nope", "-d", "1", "-o", str(out)])
    assert style.exit_code == 2 and "unknown style 'nope'" in style.output
    source = runner.invoke(app, ["generate", "--prompt", "p", "-d", "1", "-o", str(out), "--models", "huge"])
    assert source.exit_code == 2
    assert not out.exists()


def test_generate_offline_without_weights(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("COMPOSER_CACHE_DIR", str(tmp_path / "empty"))
    monkeypatch.setenv("COMPOSER_DEVICE", "cpu")
    result = runner.invoke(app, ["generate", "--prompt", "p", "-d", "1", "-o", str(tmp_path / "x.wav")])
    assert result.exit_code == 3
    assert "compose models pull small" in result.output
    assert "Traceback" not in result.output


def test_validate_ok_and_broken(tmp_path: Path) -> None:
    ok = runner.invoke(app, ["validate", str(REPO / "arrangements" / "ebm_set.yaml")])
    assert ok.exit_code == 0 and "ok (" in ok.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("title: t\nbpm: 120\nsections:\n  - name: a\n    prompt: p\n    duration_s: -4\n")
    result = runner.invoke(app, ["validate", str(bad)])
    assert result.exit_code == 2
    assert f"{bad}:6: sections[0].duration_s: must be greater than or equal to 0.1" in result.output


def test_schema_is_json() -> None:
    result = runner.invoke(app, ["schema"])
    assert result.exit_code == 0
    assert json.loads(result.output)["title"] == "composer arrangement"


def test_styles_list_and_show() -> None:
    listing = runner.invoke(app, ["styles", "list"])
    assert listing.exit_code == 0 and "industrial-ebm" in listing.output
    shown = runner.invoke(app, ["styles", "show", "dub-techno"])
    assert shown.exit_code == 0 and "minimal-techno -> dub-techno" in shown.output
    missing = runner.invoke(app, ["styles", "show", "dub-tekno"])
    assert missing.exit_code == 2 and "did you mean dub-techno" in missing.output


def test_models_pull_and_list_tiny(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("COMPOSER_CACHE_DIR", str(tmp_path))
    empty = runner.invoke(app, ["models", "list"])
    assert empty.exit_code == 0 and "no models" in empty.output
    pulled = runner.invoke(app, ["models", "pull", "small", "--models", "tiny"])
    assert pulled.exit_code == 0, pulled.output
    listed = runner.invoke(app, ["models", "list"])
    assert "composer-tiny/musicgen-small" in listed.output and "GB" in listed.output
    tuned = runner.invoke(app, ["models", "tune", "small", "--models", "tiny"])
    assert tuned.exit_code == 0, tuned.output
    lines = tuned.output.splitlines()
    assert lines[0].startswith(machine()["cpu"]) and lines[0].endswith("composer-tuning.json")
    entry = next(iter(json.loads((tmp_path / "composer-tuning.json").read_text())["entries"].values()))
    chunks = f"{entry['rows']}-row chunks{PADDING_NOTES[entry['pad']]}"
    assert lines[1].startswith(f"composer-tiny/musicgen-small: {entry['kernel']}, {chunks} (cpu-")
    assert len([line for line in lines if " ms  per segment " in line or "not available" in line]) == 6
    monkeypatch.setenv("COMPOSER_CPU_DTYPE", "float16")
    overridden = runner.invoke(app, ["models", "tune", "small", "--models", "tiny"])
    assert "COMPOSER_CPU_DTYPE=float16 is set: renders use float16" in overridden.output
    missing = runner.invoke(app, ["models", "tune", "large", "--models", "tiny"])
    assert missing.exit_code != 0 and "run `compose models pull large`" in missing.output.strip().splitlines()[-1]


def test_models_pull_offline_is_one_line(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("COMPOSER_CACHE_DIR", str(tmp_path))
    result = runner.invoke(app, ["models", "pull", "small"])
    assert result.exit_code == 3
    assert result.output.strip() == "cannot download facebook/musicgen-small: HF_HUB_OFFLINE is set"


def test_generate_with_reference_engine(tiny_env: Path, tmp_path: Path) -> None:
    fast, ref = tmp_path / "fast.wav", tmp_path / "ref.wav"
    base = ["generate", "--prompt", "ambient drone", "-d", "1", "--seed", "4"]
    assert runner.invoke(app, [*base, "-o", str(fast)]).exit_code == 0
    result = runner.invoke(app, [*base, "-o", str(ref), "--engine", "transformers"])
    assert result.exit_code == 0, result.output
    assert json.loads(sidecar(ref).read_text())["engine"] == "transformers"
    assert sha(fast) != sha(ref), "the engines sample from different random streams"
    bad = runner.invoke(app, [*base, "-o", str(ref), "--engine", "warp"])
    assert bad.exit_code == 2 and "--engine" in bad.output


def test_generate_format_options(tiny_env: Path, tmp_path: Path) -> None:
    out = tmp_path / "clip.wav"
    args = ["generate", "--prompt", "p", "-d", "1", "-o", str(out), "--bit-depth", "24", "--sample-rate", "48000"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    info = sf.info(str(out))
    assert info.samplerate == 48000 and info.subtype == "PCM_24" and info.frames == 48000
    record = json.loads(sidecar(out).read_text())
    assert record["sample_rate"] == 48000 and record["bit_depth"] == "24"
    assert set(record["versions"]) == {"composer", "torch", "transformers"}
    assert record["kernel"] in ("float32", "bfloat16", "float16") and record["dtype"] == record["kernel"]
    rows = record["kernel_choice"]["rows"]
    build = f"{isa_tag()}-dnnl{machine()['onednn']}"
    assert rows in (2, 16) and record["numerics"] == f"cpu-{record['kernel']}-r{rows}-k{KERNEL_VERSION}-{build}"
    assert record["kernel_choice"]["chosen"] in ("tuned", "cached")
    flac = runner.invoke(app, ["generate", "--prompt", "p", "-d", "1", "-o", str(tmp_path / "c.flac"),
                               "--bit-depth", "float"])  # fmt: skip
    assert flac.exit_code == 2 and "--bit-depth float" in flac.output


def test_generate_refuses_a_fifo_rather_than_wait_on_it(tiny_env: Path, tmp_path: Path) -> None:
    """#19 item 21: --melody FIFO and --continue-from FIFO blocked forever."""
    import os

    fifo = tmp_path / "in.wav"
    os.mkfifo(fifo)
    for flag, model in (("--continue-from", "small"), ("--melody", "melody")):
        out = str(tmp_path / "o.wav")
        args = ["generate", "--prompt", "p", "-d", "1", "--model", model, flag, str(fifo), "-o", out]
        result = runner.invoke(app, args)
        assert result.exit_code == 2 and f"{fifo}: a FIFO, not an audio file" in result.output, result.output
    assert not (tmp_path / "o.wav").exists()


def test_a_failed_download_says_what_to_do(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """#19 item 26: the first command offline said only `could not download ... ConnectError`."""
    import huggingface_hub

    def unreachable(*args: object, **kwargs: object) -> None:
        raise OSError("ConnectError: [Errno -3] Temporary failure in name resolution")

    monkeypatch.setenv("COMPOSER_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(huggingface_hub, "snapshot_download", unreachable)
    result = runner.invoke(app, ["generate", "--prompt", "p", "-d", "1", "-o", str(tmp_path / "x.wav")])
    assert result.exit_code == 3, result.output
    line = result.output.strip().splitlines()[-1]
    assert line.startswith("could not download facebook/musicgen-small into ") and "ConnectError" in line
    assert "`compose models pull small`" in line and "--models tiny" in line


def test_generate_refuses_a_prompt_too_long_for_t5(tiny_env: Path, tmp_path: Path) -> None:
    """#19 item 15: a 20 kB prompt took 7.3 GB of memory in T5; refused before any model loads."""
    out = tmp_path / "a.wav"
    result = runner.invoke(app, ["generate", "--prompt", "drone " * 2000, "-d", "1", "-o", str(out)])
    assert result.exit_code == 2 and "--prompt: 12000 characters (limit 6000)" in result.output, result.output
    assert not out.exists()
