"""The studio's HTTP server: renders, takes and seams as JSON, audio by id, behind a per-start token.

Security, for a server that can start renders and writes into the output tree:

- it answers only requests whose ``Host`` is one it was started for (``127.0.0.1``, ``localhost``, or
  the ``--host`` given): a web page cannot reach it through DNS rebinding;
- every request carries the random token printed at start: in the URL once (``?token=``), which sets
  an HTTP-only, same-site cookie and redirects to the same page without it; without it, 401;
- a request that changes anything is a POST with the token in the ``X-Composer-Token`` header (which a
  page of another origin cannot send without a CORS preflight this server never grants), and an
  ``Origin``, when there is one, of this server; else 403;
- files are served by id only (``mix``, ``stem/<segment>``, ``take/<section>/<take>``), resolved through
  the render's own manifest, and only when the real path stays inside the output folder (a link out
  is refused); audio supports HTTP Range requests (206), so a player can seek.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from composer import api
from composer.audio.dsp import peak_columns
from composer.job.prepare import output_name
from composer.job.view import FinishedRender
from composer.settings import Settings

COOKIE = "composer_studio"
HEADER = "x-composer-token"
PEAK_COLUMNS = 2000  # waveform columns sent to the page: 2000 x 2 numbers is ~30 KB of JSON


@dataclass(frozen=True, kw_only=True)
class Studio:
    """What one studio serves: the arrangement files it shows and where their renders go."""

    files: list[Path]
    out: Path
    settings: Settings
    token: str
    hosts: frozenset[str] = frozenset({"127.0.0.1", "localhost"})


def new_token() -> str:
    return secrets.token_urlsafe(24)


def create_app(studio: Studio) -> ASGIApp:
    """The ASGI app (run it with uvicorn; test it with Starlette's TestClient)."""

    async def arrangements(request: Request) -> Response:
        return JSONResponse([_arrangement_entry(studio, f) for f in studio.files])

    async def render_view(request: Request) -> Response:
        done = _finished(studio, request.path_params["name"])
        if done is None:
            return PlainTextResponse("not rendered", status_code=404)
        return JSONResponse(_render_entry(done))

    async def peaks(request: Request) -> Response:
        done = _finished(studio, request.path_params["name"])
        if done is None:
            return PlainTextResponse("not rendered", status_code=404)
        return JSONResponse(_peaks(done.mix))

    async def audio(request: Request) -> Response:
        done = _finished(studio, request.path_params["name"])
        path = _audio_path(studio, done, request.path_params["item"]) if done is not None else None
        if path is None:
            return PlainTextResponse("no such file", status_code=404)
        return FileResponse(path, media_type="audio/flac" if path.suffix == ".flac" else "audio/wav")

    routes = [
        Route("/api/arrangements", arrangements),
        Route("/api/renders/{name}", render_view),
        Route("/api/renders/{name}/peaks", peaks),
        Route("/audio/{name}/{item:path}", audio),
    ]
    return _Guard(Starlette(routes=routes), studio)


class _Guard:
    """ASGI middleware: Host check, token (URL once, then cookie), and the POST checks; see the module notes."""

    def __init__(self, app: ASGIApp, studio: Studio):
        self.app, self.studio = app, studio

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        refusal = self.refusal(request)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        token = request.query_params.get("token")
        if token is not None:  # first visit: the token moves from the URL into a cookie
            response = RedirectResponse(request.url.remove_query_params("token"), status_code=303)
            response.set_cookie(COOKIE, token, httponly=True, samesite="strict")
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def refusal(self, request: Request) -> Response | None:
        host = (request.headers.get("host") or "").rsplit(":", 1)[0].strip("[]").lower()
        if host not in self.studio.hosts:
            return PlainTextResponse("wrong Host", status_code=403)
        offered = request.query_params.get("token") or request.cookies.get(COOKIE) or ""
        if not hmac.compare_digest(offered.encode(), self.studio.token.encode()):
            return PlainTextResponse("open the URL the studio printed (it carries the token)", status_code=401)
        if request.method not in ("GET", "HEAD"):
            header = request.headers.get(HEADER, "")
            origin = request.headers.get("origin")
            same_origin = origin is None or origin.split("://", 1)[-1].rsplit(":", 1)[0] in self.studio.hosts
            if not hmac.compare_digest(header.encode(), self.studio.token.encode()) or not same_origin:
                return PlainTextResponse("a change needs the studio's own page (token header, same origin)",
                                         status_code=403)  # fmt: skip
        return None


def _finished(studio: Studio, name: str) -> FinishedRender | None:
    """The render of the arrangement named ``name`` (its output folder name), if it is one of ours."""
    if name not in {output_name(f) for f in studio.files}:
        return None
    try:
        return api.open_render(studio.out / name)
    except api.ComposerError:
        return None


def _arrangement_entry(studio: Studio, file: Path) -> dict[str, Any]:
    """An arrangement and its state: never rendered, rendered (as planned now), or changed since."""
    name = output_name(file)
    entry: dict[str, Any] = {"name": name, "file": file.name}
    try:
        plan = api.plan(file, out=studio.out, settings=studio.settings)
    except api.ComposerError as exc:
        return entry | {"state": "invalid", "problem": str(exc)}
    done = _finished(studio, name)
    if done is None:
        return entry | {"state": "never rendered", "title": plan.title}
    rendered = {s.id: s.cache_key for s in done.segments}
    planned = {s.id: s.key for s in plan.segments}
    return entry | {"state": "rendered" if rendered == planned else "changed since", "title": plan.title}


def _render_entry(done: FinishedRender) -> dict[str, Any]:
    """The typed view as JSON, with every file as an audio id (never a path)."""
    return {
        "title": done.title, "length_s": done.length_s, "sample_rate": done.sample_rate, "complete": done.complete,
        "loudness": asdict(done.loudness), "mix": "mix",
        "segments": [{"id": s.id, "kind": s.kind, "section": s.section, "take": s.take, "seed": s.seed,
                      "start_s": s.start_s, "end_s": s.end_s, "repo_id": s.repo_id, "cache_hit": s.cache_hit,
                      "audio": f"stem/{s.id}"} for s in done.segments],
        "takes": [{"section": t.section, "take": t.take, "seed": t.seed, "gain_db": t.gain_db,
                   "audio": f"take/{t.section}/{t.take}"} for t in done.takes],
        "seams": [asdict(s) for s in done.seams],
        "picked": dict(done.state.takes), "seeds": dict(done.state.seeds),
    }  # fmt: skip


def _audio_path(studio: Studio, done: FinishedRender, item: str) -> Path | None:
    """The file an audio id names, when it is inside the output folder (links resolved)."""
    parts = item.split("/")
    path: Path | None = None
    if parts == ["mix"]:
        path = done.mix
    elif len(parts) == 2 and parts[0] == "stem":
        path = next((s.raw for s in done.segments if s.id == parts[1]), None)
    elif len(parts) == 3 and parts[0] == "take" and parts[2].isdigit():
        path = next((t.file for t in done.takes if t.section == parts[1] and t.take == int(parts[2])), None)
    if path is None:
        return None
    real, root = path.resolve(), studio.out.resolve()
    return real if real.is_relative_to(root) and real.is_file() else None


def _peaks(mix: Path) -> dict[str, Any]:
    """The mix's peak envelope in :data:`PEAK_COLUMNS` columns (max |sample| over the channels)."""
    import soundfile as sf

    audio, rate = sf.read(str(mix), dtype="float32", always_2d=True)
    mono = np.abs(audio).max(axis=1) if audio.size else np.zeros(1, np.float32)
    peaks = [round(p, 4) for p in peak_columns(mono, min(PEAK_COLUMNS, mono.size))]
    return {"sample_rate": rate, "seconds": mono.size / rate, "peaks": peaks}
