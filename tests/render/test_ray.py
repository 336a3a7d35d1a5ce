"""Many arrangements on a real local Ray cluster (issue: #13): identical mixes, a killed actor, resume."""

from __future__ import annotations

import hashlib
import os
from dataclasses import replace
from pathlib import Path

import pytest

from composer.render.pipeline import render
from composer.settings import Settings
from tests.conftest import REPO

ray = pytest.importorskip("ray", reason="composer[ray] is installed by scripts/run_tests.sh")
SHORT = (REPO / "tests" / "data" / "short.yaml").read_text()


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def cluster():  # type: ignore[no-untyped-def]
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def songs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Three arrangements: the short test piece, the same with another seed, and one at another tempo."""
    folder = tmp_path_factory.mktemp("songs")
    texts = {
        "one": SHORT,
        "two": SHORT.replace("seed: 99", "seed: 7"),
        "three": SHORT.replace("bpm: 120", "bpm: 100").replace("title: Test Short", "title: Three"),
    }
    for name, text in texts.items():
        (folder / f"{name}.yaml").write_text(text)
    return [folder / f"{name}.yaml" for name in texts]


@pytest.fixture(scope="module")
def alone(songs: list[Path], settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Each arrangement rendered on its own, in this process: the reference mixes."""
    out = tmp_path_factory.mktemp("alone")
    return {song.stem: sha(render(song, settings, out).folder / "mix.wav") for song in songs}


def test_ray_renders_identical_mixes_and_a_second_run_generates_nothing(
    cluster: None, songs: list[Path], settings: Settings, alone: dict[str, str], tmp_path: Path
) -> None:
    from composer.render.cluster import render_many

    report = render_many(songs, settings, tmp_path)
    assert not report.failed
    assert {job.name: sha(job.mix) for job in report.jobs if job.mix} == alone
    assert len(report.generated) == 12, "4 segments each, none shared"
    again = render_many(songs, settings, tmp_path)
    assert again.generated == [] and {job.name: sha(job.mix) for job in again.jobs if job.mix} == alone


def test_an_actor_killed_mid_batch_still_ends_with_identical_mixes(
    cluster: None, songs: list[Path], settings: Settings, alone: dict[str, str], tmp_path: Path
) -> None:
    from composer.render.cluster import render_many

    killer = replace(settings, fault_at="segment-stored#2:KILL")  # the actor kills itself after its 2nd segment
    marker = tmp_path / "fault-fired"
    report = render_many(songs, killer, tmp_path / "out", fault_marker=marker)
    assert marker.exists(), "the fault fired"
    assert len(report.worker_pids) >= 2, "the actor was restarted (a new process served the retried call)"
    assert not report.failed and {job.name: sha(job.mix) for job in report.jobs if job.mix} == alone


def test_a_bad_arrangement_fails_alone(cluster: None, songs: list[Path], settings: Settings, tmp_path: Path) -> None:
    from composer.render.cluster import render_many

    bad = tmp_path / "bad.yaml"
    bad.write_text(SHORT.replace("bpm: 120", "bpm: 0"))
    report = render_many([bad, songs[0]], settings, tmp_path / "out")
    assert [job.name for job in report.failed] == [""] and "bpm" in (report.failed[0].error or "")
    assert report.jobs[1].mix is not None and report.jobs[1].mix.is_file()
    assert os.path.basename(str(report.jobs[1].folder)) == "one"


def test_the_cli_renders_a_folder_on_the_cluster(
    cluster: None, songs: list[Path], tiny_env: Path, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from composer.cli import app

    result = CliRunner().invoke(app, ["render", str(songs[0].parent), "--ray", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "3 of 3 arrangements rendered" in result.output
    assert sorted(p.name for p in tmp_path.glob("*/mix.wav")) == ["mix.wav"] * 3


def test_takes_on_the_cluster(
    cluster: None, songs: list[Path], settings: Settings, alone: dict[str, str], tmp_path: Path
) -> None:
    from composer.render.cluster import render_many

    report = render_many(songs[:1], settings, tmp_path, takes=2)
    job = report.jobs[0]
    assert job.mix is not None and sha(job.mix) == alone["one"], "the picked takes make the same mix"
    written = sorted(p.name for p in (job.folder / "stems" / "takes").iterdir())  # type: ignore[operator]
    assert written == ["coda.take1.wav", "drive.take1.wav", "intro.take1.wav"]
    assert len(report.generated) == 4 + 3


def test_regen_on_the_cluster_matches_regen_alone(
    cluster: None, songs: list[Path], settings: Settings, tmp_path: Path
) -> None:
    from composer.render.cluster import render_many

    solo = render(songs[0], settings, tmp_path / "solo", regen="drive", regen_seed=1234)
    report = render_many(songs[:1], settings, tmp_path / "ray", regen=("drive", 1234, False))
    job = report.jobs[0]
    assert job.mix is not None and sha(job.mix) == sha(solo.folder / "mix.wav")
    assert sorted(report.generated) == sorted(s.key for s in solo.plan.segments), "a fresh cache: all of it"
    again = render_many(songs[:1], settings, tmp_path / "ray", regen=("drive", 4321, False))
    changed = {s.id for s in again.jobs[0].segments if s.key in again.generated}
    assert changed == {"drive", "coda"}, "only the section and what continues it"


def test_reroll_on_the_cluster(cluster: None, settings: Settings, tmp_path: Path) -> None:
    """The planted-tone transition of tests/render/test_reroll.py, re-rolled through the cluster."""

    from composer.render.cluster import render_many
    from tests.render.test_reroll import SONG, plant_tone

    song = tmp_path / "two.yaml"
    song.write_text(SONG)
    out = tmp_path / "out"
    first = render_many([song], settings, out)
    transition = next(s for s in first.jobs[0].segments if s.id == "a--b")
    plant_tone(out, transition)
    import shutil

    shutil.copytree(out, tmp_path / "solo")  # the same planted state, re-rolled in one process for reference
    solo = render(song, settings, tmp_path / "solo", reroll=2)
    clustered = render_many([song], settings, out, reroll=2)
    job = clustered.jobs[0]
    assert job.error is None and job.rerolls is not None
    assert list(job.rerolls.tries) == ["a--b"] and job.rerolls.tries["a--b"][0]["score"] > 2.5
    assert job.mix is not None and sha(job.mix) == sha(solo.folder / "mix.wav"), "the same seeds, the same mix"
    manifest = (job.folder / "manifest.json").read_text()  # type: ignore[operator]
    assert '"rerolls"' in manifest and all(k != transition.key for k in clustered.generated)
