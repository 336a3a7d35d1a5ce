"""Bad options and settings are refused up front with one line and exit 2, before any work."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from composer.cli import app
from tests.conftest import REPO

SHORT = REPO / "tests" / "data" / "short.yaml"
runner = CliRunner()


@pytest.mark.parametrize("device", ["banana", "mps", "meta", "cuda:x"])
def test_unknown_devices_are_refused_before_anything_is_written(tiny_env: Path, tmp_path: Path, device: str) -> None:
    for how in (["--device", device], []):
        env = {} if how else {"COMPOSER_DEVICE": device}
        result = runner.invoke(app, ["render", str(SHORT), "--out", str(tmp_path), *how], env=env)
        assert result.exit_code == 2, result.output
        assert "expected auto, cpu, cuda or cuda:N" in result.output and "Traceback" not in result.output
        assert not list(tmp_path.iterdir()), "nothing created"
    plan = runner.invoke(app, ["plan", str(SHORT), "--device", device])
    assert plan.exit_code == 2 and "estimates for" not in plan.output


def test_cuda_without_cuda_fails_before_the_output_folder(tiny_env: Path, tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    result = runner.invoke(app, ["render", str(SHORT), "--out", str(tmp_path), "--device", "cuda"])
    assert result.exit_code == 3 and "CUDA is not available" in result.output
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--temperature", "0"], "--temperature must be greater than 0"),
        (["--temperature", "-1"], "--temperature must be greater than 0"),
        (["--temperature", "nan"], "--temperature must be a finite number"),
        (["--cfg", "0"], "--cfg must be greater than or equal to 1"),
        (["--cfg", "nan"], "--cfg must be a finite number"),
        (["--top-p", "2"], "--top-p must be less than or equal to 1"),
        (["--top-k", "-1"], "--top-k must be greater than or equal to 0"),
        (["--top-k", "100000"], "--top-k must be less than or equal to 2048"),
        (["--prompt-seconds", "nan"], "--prompt-seconds must be in (0, 29]"),
        (["--seed", "18446744073709551617"], "Invalid value for '--seed'"),
        (["--seed", "-5"], "Invalid value for '--seed'"),
    ],
)
def test_generate_options_use_the_arrangement_ranges(
    tiny_env: Path, tmp_path: Path, option: list[str], message: str
) -> None:
    out = tmp_path / "x.wav"
    result = runner.invoke(app, ["generate", "--prompt", "p", "-d", "1", "-o", str(out), *option])
    assert result.exit_code == 2 and message in result.output, result.output
    assert not out.exists() and not out.with_name(out.name + ".json").exists()


def test_regen_seed_range(tiny_env: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["regen", str(SHORT), "intro", "--seed", "-5", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "Invalid value for '--seed'" in result.output


@pytest.mark.parametrize("seed", ["1e400", "-3", "2147483648", '"x"', "true", "1.5"])
def test_state_seeds_outside_the_range_are_refused(tiny_env: Path, tmp_path: Path, seed: str) -> None:
    folder = tmp_path / "short"
    folder.mkdir()
    (folder / "state.json").write_text('{"seeds": {"intro": SEED}, "takes": {}}'.replace("SEED", seed))
    result = runner.invoke(app, ["render", str(SHORT), "--out", str(tmp_path)])
    assert result.exit_code == 2, result.output
    line = result.output.strip().splitlines()[-1]
    assert "state.json: unreadable render state" in line and "Traceback" not in result.output


@pytest.mark.parametrize("state", ["deep", "long owner", "huge"])
def test_a_damaged_state_file_is_one_line(tiny_env: Path, tmp_path: Path, state: str) -> None:
    """#19 items 11 and 12: a state.json nested 100 000 deep (RecursionError) or naming an arrangement
    with a 300-character component (OSError) gave tracebacks."""
    folder = tmp_path / "short"
    folder.mkdir()
    text = {
        "deep": '{"seeds": {}, "takes": {}, "x": ' + "[" * 100_000 + "]" * 100_000 + "}",
        "long owner": '{"seeds": {}, "takes": {}, "arrangement": "/tmp/' + "a" * 300 + '.yaml"}',
        "huge": '{"seeds": {}, "takes": {}, "x": "' + "a" * (2 << 20) + '"}',
    }[state]
    (folder / "state.json").write_text(text)
    result = runner.invoke(app, ["render", str(SHORT), "--out", str(tmp_path)])
    assert "Traceback" not in result.output and result.exception is None or isinstance(result.exception, SystemExit)
    if state == "long owner":  # a path that cannot exist: the folder is adopted, as when the old file is gone
        assert result.exit_code == 0, result.output
    else:
        assert result.exit_code == 2, result.output
        assert "state.json: unreadable render state" in result.output.strip().splitlines()[-1]


def test_cue_and_labels_cannot_be_injected(tiny_env: Path, tmp_path: Path) -> None:
    """A title is one line (validation); the CUE writer also neutralises control characters and quotes."""
    from composer.export.markers import _quote

    evil = tmp_path / "evil.yaml"
    evil.write_text(SHORT.read_text().replace("title: Test Short", "title: \"x\\nFILE '/etc/passwd' WAVE\\nTRACK 99\""))
    result = runner.invoke(app, ["validate", str(evil)])
    assert result.exit_code == 2 and "title: one line of text" in result.output
    assert "\n" not in _quote('a"\nFILE b') and '"' not in _quote('a"b') and "\t" not in _quote("x\ty")
