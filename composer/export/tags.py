"""Tags a DAW and a player read: title, artist, tempo, key, section and composer's version in every file.

- WAV: a RIFF ``LIST/INFO`` chunk (INAM title, IART artist, ICMT tempo/key/section, ISFT software, IGNR
  unused), a Broadcast Wave ``bext`` chunk (description, originator, loudness of the mix) and an
  ``acid`` chunk (tempo, beats, meter, root note) so Ableton Live and Acid-type hosts play stems and
  loops in time without warping them;
- FLAC and Ogg Vorbis: Vorbis comments ``TITLE``, ``ARTIST``, ``BPM``, ``KEY``, ``SUBTITLE`` (the
  section), ``ENCODER``;
- MP3: ID3v2.4 ``TIT2``, ``TPE1``, ``TBPM``, ``TKEY``, ``TIT3`` (the section), ``TSSE``.

Nothing time-dependent goes in (no dates): the same render writes the same bytes.
"""

from __future__ import annotations

import math
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mutagen import id3
from mutagen.flac import FLAC
from mutagen.oggvorbis import OggVorbis

from composer import __version__

NOTES = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
ACID_ROOT_C = 48  # the ACID chunk's root note numbers C as 48 (0x30)
UNKNOWN_LOUDNESS = 0x7FFF  # bext: a loudness value not given


@dataclass(frozen=True)
class Tags:
    """What every file of a render says about itself."""

    title: str
    bpm: float
    beats_per_bar: int = 4
    key: str | None = None  # as the arrangement writes it: "A minor", "F#m"
    artist: str | None = None
    section: str | None = None  # a stem's or take's section (None: the whole mix)
    loudness_lufs: float | None = None  # the mix's, for bext
    true_peak_dbtp: float | None = None

    @property
    def name(self) -> str:
        """The title, and the section of a stem or take."""
        return f"{self.title}: {self.section}" if self.section else self.title

    @property
    def software(self) -> str:
        return f"composer {__version__}"

    def comment(self) -> str:
        parts = [f"BPM {self.bpm:g}"] + ([f"key {self.key}"] if self.key else [])
        return "; ".join(parts + ([f"section {self.section}"] if self.section else []))


def short_key(key: str | None) -> str | None:
    """``A minor`` -> ``Am``, ``F# major`` -> ``F#`` (the ID3 TKEY form, also used for Vorbis KEY)."""
    if not key:
        return None
    found = re.match(r"^\s*([A-Ga-g])([#b]?)\s*(.*)$", key)
    if not found:
        return None
    mode = found.group(3).lower()
    return found.group(1).upper() + found.group(2) + ("m" if mode in ("m", "min", "minor") else "")


def root_note(key: str | None) -> int | None:
    """The key's root as the ACID chunk numbers it (C = 48), or None without a key."""
    short = short_key(key)
    if short is None:
        return None
    pitch = NOTES[short[0]] + (1 if "#" in short else -1 if short[1:2] == "b" else 0)
    return ACID_ROOT_C + pitch % 12


def tagger(tags: Tags) -> Callable[[Path, str], None]:
    """``tags`` as the hook :func:`composer.audio.io.write_audio` calls on the file it wrote."""

    def tag(path: Path, fmt: str) -> None:
        write_tags(path, fmt, tags)

    return tag


def write_tags(path: Path, fmt: str, tags: Tags) -> None:
    """Add ``tags`` to the audio file at ``path`` (written by soundfile as ``fmt``), in place."""
    fmt = fmt.upper()
    if fmt == "WAV":
        _wav(path, tags)
    elif fmt in ("FLAC", "OGG"):
        _vorbis(path, fmt, tags)
    elif fmt == "MP3":
        _id3(path, tags)


def _wav(path: Path, tags: Tags) -> None:
    """Append INFO, bext and acid chunks to a RIFF/WAVE file and fix the RIFF size."""
    import soundfile as sf

    info = sf.info(str(path))
    seconds = info.frames / info.samplerate
    chunks = _info_chunk(tags) + _bext_chunk(tags) + _acid_chunk(tags, seconds)
    with open(path, "r+b") as fh:
        head = fh.read(12)
        if head[:4] != b"RIFF" or head[8:12] != b"WAVE":  # RF64 (files over 4 GB): left as they are
            return
        fh.seek(0, 2)
        if fh.tell() % 2:
            fh.write(b"\0")
        fh.write(chunks)
        size = fh.tell()
        fh.seek(4)
        fh.write(struct.pack("<I", size - 8))


def _chunk(name: bytes, body: bytes) -> bytes:
    return name + struct.pack("<I", len(body)) + body + (b"\0" if len(body) % 2 else b"")


def _text(value: str, size: int | None = None) -> bytes:
    raw = value.encode("utf-8", "replace")
    if size is None:
        return raw + b"\0"
    return raw[:size].ljust(size, b"\0")


def _info_chunk(tags: Tags) -> bytes:
    fields = [(b"INAM", tags.name), (b"ICMT", tags.comment()), (b"ISFT", tags.software)]
    if tags.artist:
        fields.insert(1, (b"IART", tags.artist))
    return _chunk(b"LIST", b"INFO" + b"".join(_chunk(k, _text(v)) for k, v in fields))


def _bext_chunk(tags: Tags) -> bytes:
    """Broadcast Wave (EBU Tech 3285) version 2: its loudness fields hold the mix's (x 100)."""

    def hundredths(value: float | None) -> int:
        if value is None or not math.isfinite(value):  # a silent mix has no loudness and a true peak of -inf
            return UNKNOWN_LOUDNESS
        return max(-32768, min(32767, round(value * 100)))

    description = f"{tags.name} ({tags.comment()})"  # FFmpeg shows it as the comment (over ICMT)
    body = (
        _text(description, 256) + _text("composer", 32) + _text(tags.software, 32) + _text("", 10) + _text("", 8)
        + struct.pack("<IIH", 0, 0, 2) + b"\0" * 64
        + struct.pack("<hhhhh", hundredths(tags.loudness_lufs), UNKNOWN_LOUDNESS, hundredths(tags.true_peak_dbtp),
                      UNKNOWN_LOUDNESS, UNKNOWN_LOUDNESS)
        + b"\0" * 180 + _text(f"A=PCM,T={tags.software}\r\n")
    )  # fmt: skip
    return _chunk(b"bext", body)


def _acid_chunk(tags: Tags, seconds: float) -> bytes:
    """The ACID loop chunk: stretch on, root note when the key is known, beats in the file, meter, tempo."""
    root = root_note(tags.key)
    flags = 0x04 | (0x02 if root is not None else 0)  # 0x04: stretch (a loop, not a one-shot); 0x02: root set
    beats = max(1, round(seconds * tags.bpm / 60.0))
    body = struct.pack("<IHHfIHHf", flags, root if root is not None else ACID_ROOT_C, 0x8000, 0.0, beats, 4,
                       tags.beats_per_bar, float(tags.bpm))  # fmt: skip
    return _chunk(b"acid", body)


def _vorbis(path: Path, fmt: str, tags: Tags) -> None:
    audio = FLAC(path) if fmt == "FLAC" else OggVorbis(path)
    fields = {"TITLE": tags.title, "BPM": f"{tags.bpm:g}", "ENCODER": tags.software, "COMMENT": tags.comment()}
    fields |= {k: v for k, v in (("ARTIST", tags.artist), ("KEY", short_key(tags.key)), ("SUBTITLE", tags.section))
               if v}  # fmt: skip
    for name, value in fields.items():
        audio[name] = value
    audio.save()


def _id3(path: Path, tags: Tags) -> None:
    try:
        frames = id3.ID3(path)
    except id3.ID3NoHeaderError:
        frames = id3.ID3()
    frames.add(id3.TIT2(encoding=3, text=tags.title))
    frames.add(id3.TBPM(encoding=3, text=str(round(tags.bpm))))
    frames.add(id3.TSSE(encoding=3, text=tags.software))
    frames.add(id3.COMM(encoding=3, lang="eng", desc="", text=tags.comment()))
    if tags.artist:
        frames.add(id3.TPE1(encoding=3, text=tags.artist))
    if (key := short_key(tags.key)) is not None:
        frames.add(id3.TKEY(encoding=3, text=key))
    if tags.section:
        frames.add(id3.TIT3(encoding=3, text=tags.section))
    frames.save(path, v2_version=4)
