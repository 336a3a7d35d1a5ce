"""The final prompt of a segment: a style's parts, the section's own words, one tempo, one key.

MusicGen follows what the text says, so the text must not contradict itself. The arrangement's
tempo and key are the only ones a prompt names: a style writes ``{bpm}`` and ``{key}`` where they
belong, and any other tempo or key a style, prompt or extra text mentions is replaced by the
arrangement's. A style whose ``tempo`` is ``free`` (beatless ambient, tape collage) names no tempo at
all. Every piece is written as a sentence: capitalised, ending in a full stop.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

PROMPT_MAX_CHARS = 6000  # a final prompt (style + prompt + extra) at most this long: T5's memory grows with its square

__all__ = ["PROMPT_MAX_CHARS", "compose", "conform", "key_phrase", "sentence"]

# "128 BPM", "120-124 BPM", "around 70 bpm", "90 to 110 BPM", "85.5 BPM", "1000 bpm", "128 beats per
# minute" (the number or range, with its unit: any number, so a typo is conformed rather than left in)
_NUMBER = r"\d+(?:[.,]\d+)?"
TEMPO = re.compile(
    rf"(?<![\w.])(?:around |about |roughly |~)?{_NUMBER}(?:\s*(?:-|–|to)\s*{_NUMBER})?\s*"
    r"(?:bpm|beats (?:per|a) minute)\b",
    re.IGNORECASE,
)
_LEAD_IN = r"(?:(?:and|or|at|around|about|roughly)\s+)*"
# "A minor", "F# major", "Bb minor", "in C major" (a named key; "minor-key" alone is a colour, not a key)
KEY = re.compile(r"\b[A-G](?:#|b|♯|♭)?\s+(?:major|minor)\b")


def sentence(text: str) -> str:
    """``text`` as one sentence: stripped, first letter capitalised, ending in a full stop."""
    text = " ".join(text.split())
    if not text:
        return ""
    text = text[:1].upper() + text[1:]
    return text if text[-1] in ".!?" else text + "."


def key_phrase(key: str) -> str:
    """'Am' -> 'A minor', 'F#m' -> 'F# minor', 'C' -> 'C major', 'A minor' stays."""
    key = " ".join(key.split())
    match = re.fullmatch(r"([A-Ga-g])([#b]?)\s*(major|minor|maj|min|m)?", key, re.IGNORECASE)
    if not match:
        return key
    note, accidental, mode = match.groups()
    mode = (mode or "major").lower()
    return f"{note.upper()}{accidental} {'minor' if mode in ('minor', 'min', 'm') else 'major'}"


def conform(text: str, bpm: float | None, key: str | None) -> str:
    """Fill ``{bpm}``/``{key}`` and replace any other tempo or key by the arrangement's.

    ``bpm`` None (a free-tempo style) removes tempo mentions instead, with the words that lead into
    them ("at", "around"), so nothing in the text promises a pulse.
    """
    tempo = f"{bpm:g} BPM" if bpm is not None else ""
    text = text.replace("{bpm}", tempo if tempo else "")
    if key is not None:
        text = text.replace("{key}", key_phrase(key))
        text = KEY.sub(key_phrase(key), text)
    else:
        text = text.replace("{key}", "its key")
    text = TEMPO.sub(tempo, text)
    if bpm is None:  # tidy what a removed tempo leaves behind: "at , " / ", ," / "( )"
        text = re.sub(r"\b(?:at|around|about)\s*(?=[,.;]|$)", "", text)
        text = re.sub(r"\s+([,.;])", r"\1", text)
        text = re.sub(r",\s*,", ",", text)
        text = re.sub(r"^\s*,\s*|\s*,\s*$", "", text)
    return " ".join(text.split())


def compose(parts: Iterable[str], bpm: float, key: str | None, free_tempo: bool = False) -> str:
    """The final prompt from its parts (style sentences, then the section's prompt and extra).

    The tempo and key are named once: in the text where a part mentions them (conformed to the
    arrangement), else in a closing sentence. A free-tempo prompt names no tempo.
    """
    tempo = None if free_tempo else bpm
    named = [False]
    sentences = [sentence(_once(conform(p, tempo, key), tempo, named)) for p in parts if p and p.strip()]
    sentences = [s for s in sentences if s]
    text = " ".join(sentences)
    tail = []
    if tempo is not None and not TEMPO.search(text):
        tail.append(f"{tempo:g} BPM")
    if key is not None and key_phrase(key) not in text:
        tail.append(f"in {key_phrase(key)}")
    if tail:
        text = f"{text} {sentence(', '.join(tail))}".strip()
    return text


def _once(text: str, bpm: float | None, named: list[bool]) -> str:
    """``text`` with the tempo named at most once across the prompt: the first mention stays, every
    later one goes with the words that lead into it ("and", "at", a comma)."""
    if bpm is None:
        return text
    phrase = re.escape(f"{bpm:g} BPM")
    found = re.search(phrase, text)
    if found is None:
        return text
    keep = 0 if named[0] else found.end()
    named[0] = True
    rest = re.sub(rf"(?:^|\s*,\s*|\s+){_LEAD_IN}{phrase}", "", text[keep:], flags=re.IGNORECASE)
    text = (text[:keep] + rest).strip()
    text = re.sub(r"^\s*[,;]\s*", "", text)
    return " ".join(text.split())
