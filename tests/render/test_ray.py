"""Many arrangements on a real local Ray cluster (issues #13, #18, #25): identical mixes, a killed actor, resume.

The mixes must equal single-process renders although the cluster batches segments of several
arrangements together (other batch sizes, other places in the batch) and its actors may run on
another thread count: the tests check that the batches really differ, so none can pass because
scheduling happened to group segments as a single render does.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import replace
from pathlib import Path

import pytest

from composer.job.local import render
from composer.job.options import Regen, RenderOptions, Reroll
from composer.render.cache import SegmentCache
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
    """Four arrangements: the short test piece, the same with another seed, one at another tempo, and
    one whose coda is a stem of its own (three stems in its first batch where the others have two)."""
    folder = tmp_path_factory.mktemp("songs")
    texts = {
        "one": SHORT,
        "two": SHORT.replace("seed: 99", "seed: 7"),
        "three": SHORT.replace("bpm: 120", "bpm: 100").replace("title: Test Short", "title: Three"),
        "four": SHORT.replace("    continue_from: previous\n", "").replace("seed: 99", "seed: 4"),
    }
    for name, text in texts.items():
        (folder / f"{name}.yaml").write_text(text)
    return [folder / f"{name}.yaml" for name in texts]


def batch_sizes(cache_root: Path, keys: list[str]) -> dict[str, int]:
    """How many segments each cached segment was generated with (from its recorded provenance)."""
    cache = SegmentCache(cache_root)
    takes = {key: cache.load(key) for key in keys}
    return {key: len(take.provenance["batch"]) for key, take in takes.items() if take is not None}


@pytest.fixture(scope="module")
def alone_batches() -> dict[str, int]:
    return {}


@pytest.fixture(scope="module")
def alone(
    songs: list[Path], settings: Settings, tmp_path_factory: pytest.TempPathFactory, alone_batches: dict[str, int]
) -> dict[str, str]:
    """Each arrangement rendered on its own, in this process: the reference mixes (and batch sizes)."""
    out = tmp_path_factory.mktemp("alone")
    mixes = {}
    for song in songs:
        result = render(song, settings, out)
        mixes[song.stem] = sha(result.folder / "mix.wav")
        alone_batches |= batch_sizes(out / "cache" / "segments", [s.key for s in result.plan.segments])
    assert "four" in mixes and sorted(set(alone_batches.values())) == [1, 2, 3]
    return mixes


def test_ray_renders_identical_mixes_and_a_second_run_generates_nothing(
    cluster: None, songs: list[Path], settings: Settings, alone: dict[str, str], alone_batches: dict[str, int],
    tmp_path: Path,
) -> None:  # fmt: skip
    import torch

    from composer.job.cluster import render_many

    other = 1 if torch.get_num_threads() > 1 else 2  # the actor on another thread count than the driver
    report = render_many(songs, settings, tmp_path, threads=other)
    assert not report.failed, [job.error for job in report.failed]
    assert {job.name: sha(job.mix) for job in report.jobs if job.mix} == alone
    assert len(report.generated) == 17, "4 or 5 segments each, none shared"
    clustered = batch_sizes(tmp_path / "cache" / "segments", report.generated)
    moved = [k for k in clustered if clustered[k] != alone_batches[k]]
    assert len(moved) >= 8, f"the cluster batched like single renders ({clustered}): the test proves nothing"
    again = render_many(songs, settings, tmp_path)
    assert again.generated == [] and {job.name: sha(job.mix) for job in again.jobs if job.mix} == alone


def test_an_actor_killed_mid_batch_still_ends_with_identical_mixes(
    cluster: None, songs: list[Path], settings: Settings, alone: dict[str, str], tmp_path: Path
) -> None:
    from composer.job.cluster import render_many

    killer = replace(settings, fault_at="segment-stored#2:KILL")  # the actor kills itself after its 2nd segment
    marker = tmp_path / "fault-fired"
    report = render_many(songs, killer, tmp_path / "out", fault_marker=marker)
    assert marker.exists(), "the fault fired"
    assert len(report.worker_pids) >= 2, "the actor was restarted (a new process served the retried call)"
    assert not report.failed and {job.name: sha(job.mix) for job in report.jobs if job.mix} == alone


def test_a_bad_arrangement_fails_alone(cluster: None, songs: list[Path], settings: Settings, tmp_path: Path) -> None:
    from composer.job.cluster import render_many

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
    assert "4 of 4 arrangements rendered" in result.output
    assert sorted(p.name for p in tmp_path.glob("*/mix.wav")) == ["mix.wav"] * 4


def test_takes_on_the_cluster(
    cluster: None, songs: list[Path], settings: Settings, alone: dict[str, str], tmp_path: Path
) -> None:
    from composer.job.cluster import render_many

    report = render_many(songs[:1], settings, tmp_path, RenderOptions(takes=2))
    job = report.jobs[0]
    assert job.mix is not None and sha(job.mix) == alone["one"], "the picked takes make the same mix"
    written = sorted(p.name for p in (job.folder / "stems" / "takes").iterdir())  # type: ignore[operator]
    assert written == ["coda.take1.wav", "drive.take1.wav", "intro.take1.wav"]
    assert len(report.generated) == 4 + 3


def test_regen_on_the_cluster_matches_regen_alone(
    cluster: None, songs: list[Path], settings: Settings, tmp_path: Path
) -> None:
    from composer.job.cluster import render_many

    solo = render(songs[0], settings, tmp_path / "solo", RenderOptions(regen=Regen(section="drive", seed=1234)))
    report = render_many(songs[:1], settings, tmp_path / "ray", RenderOptions(regen=Regen(section="drive", seed=1234)))
    job = report.jobs[0]
    assert job.mix is not None and sha(job.mix) == sha(solo.folder / "mix.wav")
    assert sorted(report.generated) == sorted(s.key for s in solo.plan.segments), "a fresh cache: all of it"
    again = render_many(songs[:1], settings, tmp_path / "ray", RenderOptions(regen=Regen(section="drive", seed=4321)))
    changed = {s.id for s in again.jobs[0].segments if s.key in again.generated}
    assert changed == {"drive", "coda"}, "only the section and what continues it"


def test_reroll_on_the_cluster(cluster: None, settings: Settings, tmp_path: Path) -> None:
    """The planted-tone transition of tests/render/test_reroll.py, re-rolled through the cluster."""

    from composer.job.cluster import render_many
    from tests.render.test_reroll import SONG, plant_tone

    song = tmp_path / "two.yaml"
    song.write_text(SONG)
    out = tmp_path / "out"
    first = render_many([song], settings, out)
    transition = next(s for s in first.jobs[0].segments if s.id == "a--b")
    plant_tone(out, transition)
    import shutil

    shutil.copytree(out, tmp_path / "solo")  # the same planted state, re-rolled in one process for reference
    solo = render(song, settings, tmp_path / "solo", RenderOptions(reroll=Reroll(tries=2)))
    clustered = render_many([song], settings, out, RenderOptions(reroll=Reroll(tries=2)))
    job = clustered.jobs[0]
    assert job.error is None and job.rerolls is not None
    assert list(job.rerolls.tries) == ["a--b"] and job.rerolls.tries["a--b"][0]["score"] > 2.5
    assert job.mix is not None and sha(job.mix) == sha(solo.folder / "mix.wav"), "the same seeds, the same mix"
    manifest = (job.folder / "manifest.json").read_text()  # type: ignore[operator]
    assert '"rerolls"' in manifest and all(k != transition.key for k in clustered.generated)


def test_numerics_that_follow_the_thread_count_are_refused_on_another(
    cluster: None, songs: list[Path], settings: Settings, tmp_path: Path
) -> None:
    """The reference engine's CPU tokens follow the thread count, so its keys name it: an actor on
    another count must refuse (one clear line, not Ray's traceback) rather than store other music."""
    import torch

    from composer.engine.tune import isa_tag
    from composer.job.cluster import render_many

    driver = torch.get_num_threads()
    other = 1 if driver > 1 else 2
    report = render_many(songs[:1], replace(settings, engine="transformers"), tmp_path, threads=other)
    [job] = report.failed
    assert job.error is not None and "\n" not in job.error and "ray::" not in job.error
    # the type is the tuned kernel's (which the machine's speed decides for the tiny shapes); the count is the point
    assert re.search(rf"planned for cpu-\w+-reference-{isa_tag()}-t{driver} ", job.error), job.error
    assert re.search(rf"runs cpu-\w+-reference-{isa_tag()}-t{other};", job.error), job.error
    assert "same thread count" in job.error
    assert report.generated == [] and not list((tmp_path / "cache" / "segments").glob("*.npz"))
