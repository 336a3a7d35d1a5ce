"""Cache entries under the right key are checked before use; anything off is regenerated, nothing crashes."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from composer.job.local import render
from composer.settings import Settings
from tests.conftest import REPO

SHORT = REPO / "tests" / "data" / "short.yaml"
Parts = dict[str, Any]


@pytest.fixture(scope="module")
def rendered(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("reference")
    render(SHORT, settings, out)
    return out


def meta_change(**changes: Any) -> Callable[[Parts], None]:
    def change(parts: Parts) -> None:
        meta = json.loads(str(parts["meta"]))
        for name, value in changes.items():
            if value is ...:
                meta.pop(name)
            else:
                meta[name] = value
        parts["meta"] = np.array(json.dumps(meta))

    return change


def set_part(name: str, make: Callable[[Parts], np.ndarray]) -> Callable[[Parts], None]:
    def change(parts: Parts) -> None:
        parts[name] = make(parts)

    return change


DAMAGE = {
    "meta a list": set_part("meta", lambda p: np.array(json.dumps([1, 2]))),
    "meta a number": set_part("meta", lambda p: np.array("3")),
    "prompt_frames missing": meta_change(prompt_frames=...),
    "prompt_frames not an integer": meta_change(prompt_frames="ten"),
    "negative prompt_frames": meta_change(prompt_frames=-4),
    "sample_rate 0": meta_change(sample_rate=0),
    "frame_rate 0": meta_change(frame_rate=0),
    "a wrong sample rate": meta_change(sample_rate=44100),
    "audio 30x too long": set_part("audio", lambda p: np.tile(p["audio"], (1, 30))),
    "stereo in a mono render": set_part("audio", lambda p: np.repeat(p["audio"], 2, axis=0)),
    "half the frames": lambda p: p.update(
        tokens=p["tokens"][:, : p["tokens"].shape[1] // 2], audio=p["audio"][:, : p["audio"].shape[1] // 2]
    ),  # fmt: skip
    "codes out of range": set_part("tokens", lambda p: p["tokens"] + 5000),
    "finite but huge samples": set_part("audio", lambda p: p["audio"] * np.float32(1e30)),  # finite: #19 item 18
}


def entry_of(out: Path, segment: str) -> Path:
    manifest = json.loads((out / "short" / "manifest.json").read_text())
    key = next(s["cache_key"] for s in manifest["segments"] if s["id"] == segment)
    return out / "cache" / "segments" / key[:2] / f"{key}.npz"


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_bad_entry_is_regenerated(settings: Settings, rendered: Path, tmp_path: Path, damage: str) -> None:
    import shutil

    shutil.copytree(rendered / "cache", tmp_path / "cache")
    entry = entry_of(rendered, "drive").relative_to(rendered)
    with np.load(tmp_path / entry) as data:
        parts = {name: data[name] for name in data.files}
    DAMAGE[damage](parts)
    buffer = io.BytesIO()
    np.savez(buffer, **parts)
    (tmp_path / entry).write_bytes(buffer.getvalue())
    result = render(SHORT, settings, tmp_path)
    assert result.stats.generated == ["drive"], damage
    digest = lambda p: hashlib.sha256(p.read_bytes()).hexdigest()  # noqa: E731
    assert digest(tmp_path / "short" / "mix.wav") == digest(rendered / "short" / "mix.wav")


def test_an_entry_that_inflates_to_gigabytes_is_not_unpacked(
    settings: Settings, rendered: Path, tmp_path: Path
) -> None:
    import shutil

    shutil.copytree(rendered / "cache", tmp_path / "cache")
    entry = tmp_path / entry_of(rendered, "intro").relative_to(rendered)
    with zipfile.ZipFile(entry, "w", zipfile.ZIP_DEFLATED) as bomb, bomb.open("audio.npy", "w", force_zip64=True) as f:
        zeros = bytes(1 << 20)
        for _ in range(600):  # 600 MB of zeros in well under 1 MB on disk
            f.write(zeros)
    assert entry.stat().st_size < 2 << 20
    assert render(SHORT, settings, tmp_path).stats.generated == ["intro"]
