"""The mixes the studio plays for takes, made ahead: when a render is shown, each kept take's mix is
assembled in the background (one at a time), so switching to it only serves a file."""

from __future__ import annotations

import logging
import queue
import threading
from pathlib import Path

from composer import api

log = logging.getLogger(__name__)
PREPARE_AT_MOST = 16  # takes made ahead per render shown (the cache keeps 24 mixes)


class Auditions:
    """``api.audition`` for the studio: one at a time (a request waits for the one being made, then
    finds it made), and :meth:`prepare` to make a render's takes ahead in a thread of its own."""

    def __init__(self, out: Path, settings: api.Settings):
        self.out, self.settings = out, settings
        self._lock = threading.Lock()
        self._idle = threading.Condition()
        self._asked = 0  # requests waiting: the making-ahead waits for them
        self._queue: queue.Queue[tuple[Path, list[tuple[str, int]]] | None] = queue.Queue()
        self._seen: set[str] = set()
        self._thread = threading.Thread(target=self._work, name="composer-studio-auditions", daemon=True)
        self._thread.start()

    def get(self, file: Path, section: str, take: int) -> api.Audition:
        """The take's mix for a request: it goes before the takes still to be made ahead."""
        with self._idle:
            self._asked += 1
        try:
            return self._make(file, section, take)
        finally:
            with self._idle:
                self._asked -= 1
                self._idle.notify_all()

    def _make(self, file: Path, section: str, take: int) -> api.Audition:
        with self._lock:
            return api.audition(file, section, take, out=self.out, settings=self.settings)

    def prepare(self, file: Path, version: str, takes: list[tuple[str, int]]) -> None:
        """Make these takes' mixes ahead (once per render version)."""
        if f"{file}|{version}" not in self._seen:
            self._seen.add(f"{file}|{version}")
            self._queue.put((file, takes[:PREPARE_AT_MOST]))

    def close(self, timeout: float | None = None) -> None:
        self._queue.put(None)
        self._thread.join(timeout)

    def _work(self) -> None:
        while (item := self._queue.get()) is not None:
            file, takes = item
            for section, take in takes:
                with self._idle:
                    self._idle.wait_for(lambda: self._asked == 0)
                try:
                    self._make(file, section, take)
                except api.ComposerError as exc:  # the page's own request reports it
                    log.info("not made ahead: %s take %d: %s", section, take, exc)
