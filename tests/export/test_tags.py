"""Tags in every file, read back with readers that are not composer's: ffprobe (FFmpeg) for every format,
and a RIFF chunk parser written here for the WAV chunks FFmpeg does not show (ACID)."""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
from pathlib import Path
from typing import Any

import pytest
import soundfile as sf

from composer import __version__, api
from composer.export.tags import root_note, short_key
from composer.settings import Settings
from tests.render.test_render import SHORT

FFPROBE = shutil.which("ffprobe")
needs_ffprobe = pytest.mark.skipif(
    FFPROBE is None, reason="no ffprobe (Debian: apt-get install ffmpeg; scripts/run_tests.sh does it as root)"
)


def arrangement(tmp_path: Path, output: str) -> Path:
    text = re.sub(r"output:\n(  .*\n)+", f"output:\n{output}", SHORT.read_text())
    text = text.replace("title: Test Short\n", "title: Test Short\nartist: The Tiny Models\n")
    path = tmp_path / "short.yaml"
    path.write_text(text)
    return path


def chunks(path: Path) -> dict[bytes, bytes]:
    """The top-level chunks of a RIFF/WAVE file, and the INFO list's fields under their own ids."""
    data = path.read_bytes()
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE" and struct.unpack("<I", data[4:8])[0] == len(data) - 8
    found: dict[bytes, bytes] = {}
    at = 12
    while at + 8 <= len(data):
        name, size = data[at : at + 4], struct.unpack("<I", data[at + 4 : at + 8])[0]
        body = data[at + 8 : at + 8 + size]
        found[name] = body
        if name == b"LIST" and body[:4] == b"INFO":
            inner = 4
            while inner + 8 <= len(body):
                key, n = body[inner : inner + 4], struct.unpack("<I", body[inner + 4 : inner + 8])[0]
                found[key] = body[inner + 8 : inner + 8 + n].rstrip(b"\0")
                inner += 8 + n + n % 2
        at += 8 + size + size % 2
    assert at == len(data), "the chunks fill the file exactly"
    return found


def probe(path: Path) -> dict[str, str]:
    """Every tag ffprobe finds (format and stream tags), keys lower-cased."""
    assert FFPROBE is not None
    got = subprocess.run([FFPROBE, "-v", "error", "-show_format", "-show_streams", "-of", "json", str(path)],
                         capture_output=True, text=True, check=True)  # fmt: skip
    data: dict[str, Any] = json.loads(got.stdout)
    tags = {k.lower(): v for k, v in data["format"].get("tags", {}).items()}
    for stream in data["streams"]:
        tags |= {k.lower(): v for k, v in stream.get("tags", {}).items()}
    return tags


def decodes_with_ffmpeg(path: Path) -> bool:
    got = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-f", "null", "-"], capture_output=True, text=True)
    return got.returncode == 0 and not got.stderr.strip()


def test_key_names() -> None:
    assert [short_key(k) for k in ("A minor", "F# major", "Eb", "c min", "Bbm", None)] == [
        "Am", "F#", "Eb", "Cm", "Bbm", None]  # fmt: skip
    assert [root_note(k) for k in ("C major", "A minor", "F#m", "Bb")] == [48, 57, 54, 58]


def test_wav_files_carry_info_bext_and_acid_chunks(settings: Settings, tmp_path: Path) -> None:
    folder = api.render(arrangement(tmp_path, "  format: wav\n  bit_depth: 24\n  sample_rate: 44100\n"),
                        out=tmp_path / "out", takes=2, settings=settings).folder  # fmt: skip
    manifest = json.loads((folder / "manifest.json").read_text())
    mix = chunks(folder / "mix.wav")
    assert mix[b"INAM"] == b"Test Short" and mix[b"IART"] == b"The Tiny Models"
    assert mix[b"ICMT"] == b"BPM 120; key A minor" and mix[b"ISFT"] == f"composer {__version__}".encode()
    bext = mix[b"bext"]
    assert bext[:256].rstrip(b"\0") == b"Test Short (BPM 120; key A minor)"
    assert bext[256:288].rstrip(b"\0") == b"composer"
    version, lufs, _, peak = struct.unpack("<H", bext[346:348])[0], *struct.unpack("<hhh", bext[412:418])
    assert version == 2 and lufs == round(manifest["loudness"]["integrated_lufs"] * 100)
    assert abs(peak / 100 - manifest["loudness"]["true_peak_dbtp"]) <= 0.011
    flags, root, _, _, beats, denominator, numerator, tempo = struct.unpack("<IHHfIHHf", mix[b"acid"])
    assert (flags & 0x02, flags & 0x01, root, denominator, numerator, tempo) == (0x02, 0, 57, 4, 4, 120.0)
    assert beats == round(manifest["length_s"] * 120 / 60)
    stem = chunks(folder / "stems" / "raw" / "drive.wav")
    assert stem[b"INAM"] == b"Test Short: drive" and b"section drive" in stem[b"ICMT"]
    take = chunks(folder / "stems" / "takes" / "drive.take1.wav")
    assert take[b"INAM"] == b"Test Short: drive take 1"
    for path in folder.rglob("*.wav"):
        assert sf.info(str(path)).frames > 0, path  # still a WAV soundfile reads
    if FFPROBE:
        tags = probe(folder / "mix.wav")
        assert tags["title"] == "Test Short" and tags["artist"] == "The Tiny Models"
        assert tags["comment"] == "Test Short (BPM 120; key A minor)" and tags["encoder"] == f"composer {__version__}"
        assert tags["encoded_by"] == "composer" and decodes_with_ffmpeg(folder / "mix.wav")


@needs_ffprobe
@pytest.mark.parametrize("fmt", ["flac", "ogg", "mp3"])
def test_flac_ogg_and_mp3_tags_read_back(settings: Settings, tmp_path: Path, fmt: str) -> None:
    output = "  format: flac\n  bit_depth: 16\n" if fmt == "flac" else f"  format: {fmt}\n"
    folder = api.render(arrangement(tmp_path, output), out=tmp_path / "out", settings=settings).folder
    tags = probe(folder / f"mix.{fmt}")
    assert tags["title"] == "Test Short" and tags["artist"] == "The Tiny Models", tags
    bpm = tags.get("bpm") or tags.get("tbpm")
    key = tags.get("key") or tags.get("tkey") or tags.get("initialkey")
    assert bpm == "120" and key == "Am", tags
    stem = probe(folder / "stems" / "raw" / f"intro--drive.{fmt}")
    assert "intro--drive" in (stem.get("subtitle") or stem.get("tit3") or ""), stem
    for path in folder.rglob(f"*.{fmt}"):
        assert decodes_with_ffmpeg(path) and sf.info(str(path)).frames > 0, path
