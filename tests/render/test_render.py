"""End-to-end renders with the tiny models: outputs, loudness, cache reuse, regen, takes, export."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from composer.assembly.loudness import integrated_lufs
from composer.job.local import RenderResult, render
from composer.job.options import Pick, Regen, RenderOptions
from composer.job.prepare import NotRenderedError
from composer.settings import Settings
from tests.meters import true_peak_db

DATA = Path(__file__).resolve().parent.parent / "data"
SHORT = DATA / "short.yaml"


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def hashes(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): sha(p) for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def first(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> RenderResult:
    return render(SHORT, settings, tmp_path_factory.mktemp("out"))


@pytest.fixture
def copy_of_first(first: RenderResult, tmp_path: Path) -> Path:
    """A private copy of the first render's output root (cache included)."""
    root = tmp_path / "out"
    shutil.copytree(first.folder.parent, root)
    return root


def test_outputs_exist(first: RenderResult) -> None:
    folder = first.folder
    assert folder.name == "short"
    for name in ("mix.wav", "manifest.json", "markers.txt", "markers.cue", "timeline.png", "state.json"):
        assert (folder / name).is_file(), name
    ids = ["intro", "intro--drive", "drive", "coda"]
    assert sorted(p.stem for p in (folder / "stems" / "raw").iterdir()) == sorted(ids)
    assert [p.name for p in sorted((folder / "stems" / "aligned").iterdir())] == [
        f"{i:02d}-{name}.wav" for i, name in enumerate(ids, start=1)
    ]
    from PIL import Image

    with Image.open(folder / "timeline.png") as image:
        assert image.size == (1600, 470)
    assert not list(folder.rglob("*.tmp")), "no temp files left behind"


def test_mix_length_loudness_and_peak(first: RenderResult) -> None:
    info = sf.info(str(first.folder / "mix.wav"))
    assert info.samplerate == 44100 and info.subtype == "PCM_24"
    assert abs(info.frames - first.plan.length_s * 44100) <= 882  # one codec frame at 44.1 kHz
    audio, rate = sf.read(str(first.folder / "mix.wav"), always_2d=True)
    assert integrated_lufs(audio.T, rate) == pytest.approx(-16.0, abs=0.5)
    assert true_peak_db(audio.T.astype(np.float32)) <= -1.0 + 0.05  # 24-bit rounding
    assert np.isfinite(audio).all()


def test_manifest_records_everything(first: RenderResult) -> None:
    manifest = json.loads((first.folder / "manifest.json").read_text())
    assert manifest == first.manifest
    assert manifest["loudness"]["target_lufs"] == -16 and abs(manifest["loudness"]["integrated_lufs"] + 16) <= 0.5
    segments = {s["id"]: s for s in manifest["segments"]}
    assert list(segments) == ["intro", "intro--drive", "drive", "coda"]
    drive = segments["drive"]
    assert drive["repo_id"] == "composer-tiny/musicgen-small" and len(drive["revision"]) == 40
    assert drive["parameters"]["top_k"] == 250 and drive["parameters"]["cfg"] == 3.0
    assert drive["prompt"] == "Driving techno. 120 BPM, in A minor.", "the prompt as sent, one tempo and key"
    assert segments["coda"]["continues"] == "drive" and segments["coda"]["join"] == "seam"
    assert segments["intro--drive"]["repo_id"] == "composer-tiny/musicgen-medium"
    assert all(s["cache_hit"] is False and s["generate_seconds"] > 0 for s in segments.values())
    assert all(len(s["cache_key"]) == 32 for s in segments.values())
    assert manifest["choices"] == {"seeds": {}, "takes": {}}


def test_stems_are_aligned_to_the_timeline(first: RenderResult) -> None:
    mix, rate = sf.read(str(first.folder / "mix.wav"), always_2d=True)
    total = np.zeros_like(mix)
    for place, path in zip(first.plan.timeline, sorted((first.folder / "stems" / "aligned").iterdir()), strict=True):
        stem, stem_rate = sf.read(str(path), always_2d=True)
        assert stem_rate == rate and stem.shape == mix.shape, "every aligned stem spans the whole track"
        before = int(place.start_s * rate) - int(0.1 * rate)
        assert np.abs(stem[: max(before, 0)]).max(initial=0) == 0, f"{path.name} is silent before it starts"
        total += stem
    gain = 10 ** ((first.manifest["loudness"]["master_gain_db"] + first.manifest["loudness"]["stem_headroom_db"]) / 20)
    # summed and raised to mix level the stems give the mix, up to what the limiter took off
    assert np.corrcoef(total[:, 0] * gain, mix[:, 0])[0, 1] > 0.99


def test_second_render_generates_nothing_and_is_identical(first: RenderResult, copy_of_first: Path,
                                                          settings: Settings) -> None:  # fmt: skip
    before = hashes(copy_of_first / "short")
    again = render(SHORT, settings, copy_of_first)
    assert again.stats.generated == [] and len(again.stats.cached) == 4
    after = hashes(copy_of_first / "short")
    assert {k: v for k, v in after.items() if k != "manifest.json"} == {
        k: v for k, v in before.items() if k != "manifest.json"
    }


def test_regen_changes_only_dependent_files(first: RenderResult, copy_of_first: Path, settings: Settings) -> None:
    before = hashes(copy_of_first / "short")
    result = render(SHORT, settings, copy_of_first, RenderOptions(regen=Regen(section="intro", seed=12345)))
    assert sorted(result.stats.generated) == ["intro", "intro--drive"]
    after = hashes(copy_of_first / "short")
    changed = {k for k in before if before[k] != after[k]}
    assert changed == {
        "stems/raw/intro.wav", "stems/raw/intro--drive.wav", "stems/aligned/01-intro.wav",
        "stems/aligned/02-intro--drive.wav", "mix.wav", "manifest.json", "state.json", "timeline.png",
    }  # fmt: skip
    assert result.manifest["choices"]["seeds"] == {"intro": 12345}
    assert result.plan.segment("intro").seed == 12345
    # the choice persists: a plain render afterwards keeps the new seed and generates nothing
    assert render(SHORT, settings, copy_of_first).stats.generated == []


def test_regen_of_chained_parent_regenerates_the_chain(copy_of_first: Path, settings: Settings) -> None:
    result = render(SHORT, settings, copy_of_first, RenderOptions(regen=Regen(section="drive", seed=7)))
    assert sorted(result.stats.generated) == ["coda", "drive"]


def test_takes_and_pick(copy_of_first: Path, settings: Settings) -> None:
    result = render(SHORT, settings, copy_of_first, RenderOptions(takes=2))
    assert sorted(result.stats.generated) == ["coda.take1", "drive.take1", "intro.take1"]
    takes = copy_of_first / "short" / "stems" / "takes"
    assert sorted(p.name for p in takes.iterdir()) == ["coda.take1.wav", "drive.take1.wav", "intro.take1.wav"]
    raw_take0, rate = sf.read(copy_of_first / "short" / "stems" / "raw" / "intro.wav", dtype="float64")
    picked = render(SHORT, settings, copy_of_first, RenderOptions(pick=Pick(section="intro", take=1)))
    assert picked.stats.generated == ["intro--drive"], "only what depends on the new take is generated"
    assert picked.manifest["choices"]["takes"] == {"intro": 1}
    # the other takes stay listed and on disk: take 0 of intro is now an alternative, take 1 is the pick
    listed = {t["file"]: t for t in picked.manifest["takes"]}
    assert sorted(listed) == [f"stems/takes/{n}.take{k}.wav" for n, k in (("coda", 1), ("drive", 1), ("intro", 0))]
    assert sorted(p.name for p in takes.iterdir()) == sorted(Path(f).name for f in listed)
    # at the level of their section's aligned stem: matched to the section's target, 6 dB of headroom
    import pyloudnorm

    take0, _ = sf.read(takes / "intro.take0.wav", dtype="float64")
    gain = listed["stems/takes/intro.take0.wav"]["gain_db"]
    np.testing.assert_allclose(take0, raw_take0 * 10 ** (gain / 20), atol=2e-4)  # the same audio, raised
    target = picked.manifest["loudness"]["target_lufs"] - 3.0  # short.yaml: intro's loudness_offset_lu
    level = pyloudnorm.Meter(rate).integrated_loudness(take0)
    assert abs(level - (target - 6.0)) < 0.5, f"take at {level:.1f} LUFS; its section's level is {target} LUFS"
    # export-stems in another format writes the takes in it (and only those)
    song = copy_of_first.parent / "short.yaml"  # the same arrangement, its output format edited
    song.write_text(SHORT.read_text().replace("format: wav", "format: flac"))
    state_file = copy_of_first / "short" / "state.json"
    state_file.write_text(state_file.read_text().replace(str(SHORT.resolve()), str(song.resolve())))
    flac = render(song, settings, copy_of_first, RenderOptions(generate=False))
    assert sorted(p.name for p in takes.iterdir()) == ["coda.take1.flac", "drive.take1.flac", "intro.take0.flac"]
    assert [t["file"] for t in flac.manifest["takes"]] == [f.replace(".wav", ".flac") for f in listed]
    with pytest.raises(NotRenderedError, match="take 5 of 'drive' was never rendered"):
        render(song, settings, copy_of_first, RenderOptions(pick=Pick(section="drive", take=5)))


def test_export_stems_generates_nothing(copy_of_first: Path, settings: Settings, tmp_path: Path) -> None:
    shutil.rmtree(copy_of_first / "short" / "stems")
    result = render(SHORT, settings, copy_of_first, RenderOptions(generate=False))
    assert result.stats.generated == []
    assert len(list((copy_of_first / "short" / "stems" / "aligned").iterdir())) == 4
    with pytest.raises(NotRenderedError, match="not rendered yet"):
        render(SHORT, settings, tmp_path / "empty", RenderOptions(generate=False))


def test_unknown_section_for_regen(copy_of_first: Path, settings: Settings) -> None:
    from composer.errors import ArrangementError

    with pytest.raises(ArrangementError, match="no section named 'drvie'; did you mean 'drive'"):
        render(SHORT, settings, copy_of_first, RenderOptions(regen=Regen(section="drvie")))


def test_damaged_cache_entry_is_regenerated(copy_of_first: Path, settings: Settings) -> None:
    cache = copy_of_first / "cache" / "segments"
    victim = next(cache.rglob("*.npz"))
    victim.write_bytes(victim.read_bytes()[:100])
    result = render(SHORT, settings, copy_of_first)
    assert len(result.stats.generated) == 1


def test_batch_size_does_not_change_the_result(first: RenderResult, settings: Settings, tmp_path: Path) -> None:
    one_at_a_time = render(SHORT, settings.with_(batch_size=1), tmp_path)
    assert one_at_a_time.stats.generated  # a fresh cache: everything generated again
    assert sha(tmp_path / "short" / "mix.wav") == sha(first.folder / "mix.wav")


def test_reference_engine_is_selectable_and_keyed_separately(settings: Settings, tmp_path: Path) -> None:
    fast = render(SHORT, settings, tmp_path)
    reference = render(SHORT, settings.with_(engine="transformers"), tmp_path)
    assert len(reference.stats.generated) == 4, "other engine, other cache keys"
    assert {s["engine"] for s in reference.manifest["segments"]} == {"transformers"}
    assert {s["engine"] for s in fast.manifest["segments"]} == {"fast"}


def test_batch_size_follows_free_gpu_memory(tiny_small, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """The engine sizes a batch from the checkpoint's shape: KV cache and cross-attention per segment."""
    from types import SimpleNamespace

    import torch

    from composer.engine.base import EngineBase
    from composer.engine.factory import wrap
    from composer.engine.types import ModelSpec, Request

    small = ModelSpec("text", 4, 2048, 2048, 1, 32000, 50, layers=24, hidden=1024, heads=16, max_positions=2048)
    fake = SimpleNamespace(spec=small, itemsize=2, device=torch.device("cuda"), weight_bytes=lambda: 10**9)
    engine = EngineBase(fake)  # type: ignore[arg-type]
    need = engine.memory([Request("t", 30.0, 1)])
    # musicgen-small, 30 s, fp16, CFG: about 0.3 GB of KV cache per segment (MUSICGEN_NOTES)
    assert need.kv_cache / 1e9 == pytest.approx(0.3, abs=0.01)
    assert engine.memory([Request("t", 30.0, 1)] * 4).kv_cache == 4 * need.kv_cache
    assert need.weights == 10**9 and need.total == 10**9 + need.working
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (2_000_000_000, 10_000_000_000))
    # 60% of 2 GB, less one decode chunk, over (KV + cross) per segment
    expected = int((1.2e9 - need.decode) // (need.kv_cache + need.cross))
    assert expected == 2 and engine.max_batch([Request("t", 30.0, 1)] * 8, 8) == expected
    assert wrap("fast", tiny_small).max_batch([Request("t", 30.0, 1)], 8) == 8  # CPU: COMPOSER_BATCH
    assert wrap("transformers", tiny_small).max_batch([Request("t", 30.0, 1)], 8) == 1


def test_stereo_stems_give_a_stereo_mix_at_target_loudness(settings: Settings, tmp_path: Path) -> None:
    """Stereo and mono models in one arrangement: the channel rule both ways, a 2-channel mix."""
    result = render(DATA / "stereo.yaml", settings, tmp_path)
    folder = result.folder
    channels = {s["id"]: s["channels"] for s in result.manifest["segments"]}
    assert channels == {"intro": 2, "intro--drive": 1, "drive": 1, "drive--coda": 2, "coda": 2}
    mix, rate = sf.read(str(folder / "mix.wav"), always_2d=True)
    assert mix.shape[1] == 2 and not np.allclose(mix[:, 0], mix[:, 1]), "a real stereo mix"
    assert abs((integrated_lufs(mix.T, rate) or 0) + 16) <= 0.2
    assert true_peak_db(mix.T.astype(np.float32)) <= -1.0 + 0.05
    raw, _ = sf.read(str(folder / "stems" / "raw" / "drive.wav"), always_2d=True)
    assert raw.shape[1] == 1, "a raw stem keeps the channels it was generated with"
    for aligned in (folder / "stems" / "aligned").iterdir():
        assert sf.info(str(aligned)).channels == 2, "aligned stems share the mix's channels"


def test_mono_segments_in_a_stereo_mix_are_measured_as_they_sound(settings: Settings, tmp_path: Path) -> None:
    """BS.1770 sums channels: a mono segment up-mixed to stereo is 3 LU louder than measured alone."""
    result = render(DATA / "stereo.yaml", settings, tmp_path)
    drive = next(s for s in result.manifest["segments"] if s["id"] == "drive")
    raw, rate = sf.read(str(result.folder / "stems" / "raw" / "drive.wav"), always_2d=True)
    as_mono = integrated_lufs(raw.T, rate)
    as_stereo = integrated_lufs(np.repeat(raw.T, 2, axis=0), rate)
    assert as_mono is not None and as_stereo is not None
    assert abs(drive["measured_lufs"] - as_stereo) < 0.5 < abs(drive["measured_lufs"] - as_mono)


MELODY_ARRANGEMENT = """
title: Melody
bpm: 120
seed: 5
transitions: {model: medium, duration_s: 1.5, prompt_s: 0.6, crossfade_s: 0.5}
sections:
  - {name: intro, prompt: soft pads, duration_s: 2}
  - {name: theme, prompt: a lead line, duration_s: 2, model: melody, melody: refs/theme.wav, transition: none}
  - {name: outro, prompt: calm drone, duration_s: 2}
"""


def write_tone(path: Path, hz: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(2 * 44100) / 44100
    sf.write(str(path), 0.3 * np.sin(2 * np.pi * hz * t), 44100)


def test_changing_the_melody_file_regenerates_only_its_section(settings: Settings, tmp_path: Path) -> None:
    song = tmp_path / "song" / "melody.yaml"
    song.parent.mkdir()
    song.write_text(MELODY_ARRANGEMENT)
    write_tone(song.parent / "refs" / "theme.wav", 440.0)
    first = render(song, settings, tmp_path / "out")
    theme = next(s for s in first.manifest["segments"] if s["id"] == "theme")
    assert theme["repo_id"] == "composer-tiny/musicgen-melody" and theme["melody_sha256"]
    assert render(song, settings, tmp_path / "out").stats.generated == [], "unchanged: all from the cache"
    write_tone(song.parent / "refs" / "theme.wav", 261.63)
    again = render(song, settings, tmp_path / "out")
    assert again.stats.generated == ["theme"]
    song.write_text(MELODY_ARRANGEMENT.replace("refs/theme.wav", "refs/../refs/theme.wav"))
    assert render(song, settings, tmp_path / "out").stats.generated == [], "the path is not in the key, the content is"


def test_only_the_models_the_plan_uses_are_needed(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An arrangement without generated transitions never asks for the transition model."""
    import composer.engine.models as models

    asked: list[str] = []
    real = models.ensure_available

    def recording(name: str, settings: Settings) -> str:
        asked.append(name)
        return real(name, settings)

    monkeypatch.setattr(models, "ensure_available", recording)
    song = tmp_path / "ambient.yaml"
    song.write_text(
        SHORT.read_text().replace("    loudness_offset_lu: -3\n", "    loudness_offset_lu: -3\n    transition: none\n")
    )
    render(song, settings, tmp_path / "out")
    assert set(asked) == {"small"}, asked


def test_a_format_change_leaves_only_the_new_files(settings: Settings, tmp_path: Path) -> None:
    from composer.job.local import render as run

    song = tmp_path / "short.yaml"
    song.write_text(SHORT.read_text())
    wav = run(song, settings, tmp_path / "out", RenderOptions(takes=2))
    assert (wav.folder / "mix.wav").exists() and list((wav.folder / "stems" / "takes").glob("*.wav"))
    song.write_text(SHORT.read_text().replace("format: wav", "format: flac"))
    flac = run(song, settings, tmp_path / "out", RenderOptions(generate=False))
    files = sorted(p.relative_to(flac.folder).as_posix() for p in flac.folder.rglob("*") if p.is_file())
    assert "mix.flac" in files and not [f for f in files if f.endswith(".wav")], files
    assert 'FILE "mix.flac" WAVE' in (flac.folder / "markers.cue").read_text()


def test_a_yaml_seed_edit_wins_over_a_regen_seed_and_reset_forgets(settings: Settings, tmp_path: Path) -> None:
    song = tmp_path / "short.yaml"
    song.write_text(SHORT.read_text())
    out = tmp_path / "out"
    first = render(song, settings, out)
    regen = render(song, settings, out, RenderOptions(regen=Regen(section="drive", seed=4242)))
    assert regen.plan.segment("drive").seed == 4242
    song.write_text(
        SHORT.read_text().replace("    prompt: driving techno\n", "    prompt: driving techno\n    seed: 7\n")
    )
    edited = render(song, settings, out)
    assert edited.plan.segment("drive").seed == 7, "the later YAML edit wins"
    assert "drive" not in json.loads((out / "short" / "state.json").read_text())["seeds"]
    song.write_text(SHORT.read_text())
    render(song, settings, out, RenderOptions(regen=Regen(section="drive", seed=99)))
    back = render(song, settings, out, RenderOptions(regen=Regen(section="drive", reset=True)))
    assert back.plan.segment("drive").seed == first.plan.segment("drive").seed
    assert back.stats.generated == [], "the arrangement's own seed: everything is in the cache"


def test_every_segment_of_a_batch_reports_its_own_progress(settings: Settings, tmp_path: Path) -> None:
    from composer.render.run import NoEvents

    seen: dict[str, list[tuple[int, int]]] = {}

    class Spy(NoEvents):
        def segment_progress(self, segment, done, total):  # type: ignore[no-untyped-def]
            seen.setdefault(segment.id, []).append((done, total))

    result = render(SHORT, settings, tmp_path, events=Spy())
    batch = json.loads((tmp_path / "short" / "manifest.json").read_text())["segments"]
    for seg in result.plan.segments:
        reports = seen[seg.id]
        assert reports[-1] == (seg.frames, seg.frames) and {t for _, t in reports} == {seg.frames}, seg.id
        assert [d for d, _ in reports] == sorted(d for d, _ in reports)
    assert all(s["generate_seconds"] > 0 for s in batch)
