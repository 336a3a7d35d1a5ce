"""Fault points: deterministic places where a test makes a render signal itself."""

from __future__ import annotations

import signal

import pytest

from composer import faults
from composer.settings import load_settings


def test_parse_point_count_and_signal() -> None:
    assert faults.parse("segment-stored#3:KILL") == faults.FaultSpec("segment-stored", 3, signal.SIGKILL)
    assert faults.parse("file-written") == faults.FaultSpec("file-written", 1, signal.SIGINT)
    assert faults.parse("file-temp#2:sigterm") == faults.FaultSpec("file-temp", 2, signal.SIGTERM)


@pytest.mark.parametrize(
    "spec",
    ["nowhere:INT", "file-written#0:INT", "file-written#x:INT", "file-written:NOPE",
     "file-written:SIG_IGN", "file-written:SIG_DFL", "file-written:STOP", "file-written:SIGTSTP"],
)  # fmt: skip
def test_bad_specs_are_refused_when_settings_load(spec: str) -> None:
    with pytest.raises(ValueError, match="COMPOSER_FAULT_AT"):
        load_settings(env={"COMPOSER_FAULT_AT": spec})


def test_signal_arrives_at_the_nth_arrival_only() -> None:
    seen: list[int] = []
    previous = signal.signal(signal.SIGUSR1, lambda *_: seen.append(faults.count("segment-stored")))
    try:
        faults.arm(faults.parse("segment-stored#2:USR1"))
        for _ in range(4):
            faults.reached("segment-stored")
        assert seen == [2]
        assert faults.count("segment-stored") == 4
    finally:
        faults.arm(None)
        signal.signal(signal.SIGUSR1, previous)
