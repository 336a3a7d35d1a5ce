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

import contextlib
import hmac
import secrets
import threading
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from composer import api
from composer.assembly.seams import REROLL_ABOVE
from composer.audio.dsp import peak_columns
from composer.job.prepare import output_name
from composer.job.view import FinishedRender
from composer.plan import Segment
from composer.settings import Settings
from composer.studio.auditions import Auditions
from composer.studio.jobs import KINDS, Job, Jobs, Runner

COOKIE = "composer_studio"
HEADER = "x-composer-token"
STATIC = Path(__file__).parent / "static"
REROLL_TRIES = 2  # a seam's Re-roll button: as `compose render --reroll 2 --reroll-above <its score>`
MEDIA_TYPES = {".wav": "audio/wav", ".flac": "audio/flac", ".mp3": "audio/mpeg", ".ogg": "audio/ogg"}
SEAM_FIELDS = ("before", "after", "at_s", "score", "loudness_lu", "spectrum_db", "tempo_percent", "harmony", "ratios")
PEAK_COLUMNS = 2000  # waveform columns sent to the page: 2000 numbers is ~14 KB of JSON
SECURITY_HEADERS = [  # the page runs only its own code, in no frame
    (b"content-security-policy", b"default-src 'self'; img-src 'self' data:; media-src 'self'; "
                                 b"frame-ancestors 'none'; base-uri 'none'; form-action 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]  # fmt: skip


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


def create_app(studio: Studio, jobs: Jobs | None = None) -> ASGIApp:
    """The ASGI app (run it with uvicorn; test it with Starlette's TestClient). ``jobs``: the queue its
    POSTs go to (default: a new one with its own worker thread, closed when the app shuts down)."""
    queue = jobs or start_jobs(studio)
    auditions = Auditions(studio.out, studio.settings)

    async def page(request: Request) -> Response:
        # the page sends the token back in a header on its POSTs; other origins cannot read this page
        html = (STATIC / "index.html").read_text(encoding="utf-8").replace("{{TOKEN}}", studio.token)
        return HTMLResponse(html, headers={"cache-control": "no-store"})

    def arrangements(request: Request) -> Response:  # plans each file: in the thread pool, not the event loop
        return JSONResponse([_arrangement_entry(studio, f) for f in studio.files])

    def render_view(request: Request) -> Response:
        done = _finished(studio, request.path_params["name"])
        if done is None:
            return PlainTextResponse("not rendered", status_code=404)
        entry = _render_entry(studio, done)
        others = [(s["name"], t["take"]) for s in entry["sections"] for t in s["takes"] if not t["picked"]]
        auditions.prepare(_file(studio, done.folder.name), entry["version"], others)
        return JSONResponse(entry)

    def peaks(request: Request) -> Response:
        done = _finished(studio, request.path_params["name"])
        if done is None:
            return PlainTextResponse("not rendered", status_code=404)
        return JSONResponse(_peaks(done.mix))

    def audio(request: Request) -> Response:
        name, item = request.path_params["name"], request.path_params["item"]
        done = _finished(studio, name)
        if done is not None and item.startswith("context/"):
            return _context_audio(studio, auditions, name, item)
        path = _audio_path(studio, done, item) if done is not None else None
        if path is None:
            return PlainTextResponse("no such file", status_code=404)
        return FileResponse(path, media_type=MEDIA_TYPES.get(path.suffix, "application/octet-stream"))

    async def job_list(request: Request) -> Response:
        if request.method == "GET":
            return JSONResponse(queue.views())
        try:
            body = await request.json()
        except ValueError:
            body = None
        problem, params = _job_request(studio, body)
        if problem is not None:
            return PlainTextResponse(problem, status_code=400)
        return JSONResponse(queue.submit(**params).view(), status_code=202)

    async def job_cancel(request: Request) -> Response:
        job = queue.cancel(request.path_params["id"])
        return PlainTextResponse("no such job", status_code=404) if job is None else JSONResponse(job.view())

    routes = [
        Route("/", page),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
        Route("/api/arrangements", arrangements),
        Route("/api/renders/{name}", render_view),
        Route("/api/renders/{name}/peaks", peaks),
        Route("/api/jobs", job_list, methods=["GET", "POST"]),
        Route("/api/jobs/{id}/cancel", job_cancel, methods=["POST"]),
        Route("/audio/{name}/{item:path}", audio),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        auditions.close(timeout=60)
        if jobs is None:
            queue.close()

    return _Guard(Starlette(routes=routes, lifespan=lifespan), studio)


def start_jobs(studio: Studio) -> Jobs:
    """The studio's job queue: its operations go through :mod:`composer.api`, with one kept model."""
    engines = api.KeptEngine()

    def planned(job: Job) -> list[Segment]:
        return api.plan(_file(studio, job.name), out=studio.out, settings=studio.settings).segments

    return Jobs(make_runner(studio, engines), planned, close=engines.close)


def make_runner(studio: Studio, engines: api.KeptEngine) -> Runner:
    """What each kind of job does: the library operation the CLI runs for it (see docs/studio.md)."""

    def run(job: Job, events: Any, cancel: threading.Event) -> None:
        file = _file(studio, job.name)
        common: dict[str, Any] = dict(out=studio.out, settings=studio.settings, events=events, cancel=cancel,
                                      engines=engines)  # fmt: skip
        if job.kind == "render":  # compose render FILE
            api.render(file, **common)
        elif job.kind == "new-take":  # compose regen FILE SECTION --add-take
            api.regen(file, str(job.section), add_take=True, **common)
        elif job.kind == "pick":  # compose pick FILE SECTION TAKE
            api.pick(file, str(job.section), int(job.take or 0), **common)
        else:  # compose render FILE --reroll 2 --reroll-above ABOVE
            api.render(file, reroll=api.Reroll(tries=REROLL_TRIES, above=job.above), **common)

    return run


def _file(studio: Studio, name: str) -> Path:
    return next(f for f in studio.files if output_name(f) == name)


def _job_request(studio: Studio, body: Any) -> tuple[str | None, dict[str, Any]]:
    """A POSTed job checked: (a one-line problem, or None; the queue's arguments)."""
    if not isinstance(body, dict):
        return "a JSON object is expected", {}
    kind, name, section = body.get("kind"), body.get("name"), body.get("section")
    if kind not in KINDS:
        return f"kind: one of {', '.join(KINDS)}", {}
    if name not in {output_name(f) for f in studio.files}:
        return f"name: no arrangement {name!r} here", {}
    params: dict[str, Any] = {"kind": kind, "name": name}
    if kind in ("new-take", "pick"):
        if not isinstance(section, str) or not section:
            return "section: a section name is expected", {}
        params["section"] = section
    if kind == "pick":
        take = body.get("take")
        if not isinstance(take, int) or isinstance(take, bool) or not 0 <= take < 64:
            return "take: a take number (0-63) is expected", {}
        params["take"] = take
    if kind == "reroll":
        above = body.get("above")
        if not isinstance(above, (int, float)) or isinstance(above, bool) or not 0.5 <= above <= 50:
            return "above: a score limit between 0.5 and 50 is expected", {}
        params["above"] = float(above)
    return None, params


def _context_audio(studio: Studio, auditions: Auditions, name: str, item: str) -> Response:
    """``context/<section>/<take>``: the mix with that take (assembled from the cache on first use)."""
    parts = item.split("/")
    if len(parts) != 3 or not parts[2].isdigit():
        return PlainTextResponse("no such file", status_code=404)
    try:
        heard = auditions.get(_file(studio, name), parts[1], int(parts[2]))
    except api.ComposerError as exc:
        return PlainTextResponse(str(exc), status_code=404)
    real, root = heard.file.resolve(), studio.out.resolve()
    if not real.is_relative_to(root) or not real.is_file():
        return PlainTextResponse("no such file", status_code=404)
    response = FileResponse(real, media_type="audio/wav")
    response.headers["x-composer-borrowed"] = ",".join(heard.borrowed)
    return response


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

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = list(message["headers"]) + SECURITY_HEADERS
            await send(message)

        await self.app(scope, receive, send_with_headers)

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


def _render_entry(studio: Studio, done: FinishedRender) -> dict[str, Any]:
    """The typed view as JSON, with every file as an audio id (never a path), and per section its takes."""
    m = done.manifest
    try:
        beats_per_bar = api.load(_file(studio, done.folder.name), settings=studio.settings).beats_per_bar
    except api.ComposerError:
        beats_per_bar = 4
    stat = (done.folder / "manifest.json").stat()

    def end(seconds: float) -> float:  # in a loop, what lies past the file's end is folded over its start
        return min(seconds, done.length_s)

    sections = []
    for seg in done.segments:
        if seg.kind != "stem" or seg.section is None:
            continue
        found = [(seg.take, seg.seed, True)] + [(t.take, t.seed, False) for t in done.takes if t.section == seg.section]
        takes = [{"take": n, "seed": seed, "picked": picked, "audio": "mix" if picked else f"context/{seg.section}/{n}"}
                 for n, seed, picked in sorted(found)]  # fmt: skip
        sections.append({"name": seg.section, "segment": seg.id, "start_s": seg.start_s, "end_s": end(seg.end_s),
                         "take": seg.take, "seed": seg.seed, "takes": takes})  # fmt: skip
    return {
        "name": done.folder.name, "title": done.title, "version": f"{stat.st_mtime_ns:x}-{stat.st_size:x}",
        "length_s": done.length_s, "sample_rate": done.sample_rate, "complete": done.complete,
        "bpm": m.get("bpm"), "beats_per_bar": beats_per_bar, "key": m.get("key"),
        "loudness": asdict(done.loudness), "mix": "mix",
        "segments": [{"id": s.id, "kind": s.kind, "section": s.section, "take": s.take, "seed": s.seed,
                      "start_s": s.start_s, "end_s": end(s.end_s), "repo_id": s.repo_id, "cache_hit": s.cache_hit,
                      "audio": f"stem/{s.id}"} for s in done.segments],
        "sections": sections,
        "takes": [{"section": t.section, "take": t.take, "seed": t.seed, "gain_db": t.gain_db,
                   "audio": f"take/{t.section}/{t.take}"} for t in done.takes],
        "seams": [_seam(s) for s in m.get("seams", [])] + _wrap(m, done),
        "loop": m.get("loop") is not None,
        "seam_limit": (m.get("rerolls") or {}).get("limit", REROLL_ABOVE),
        "picked": dict(done.state.takes), "seeds": dict(done.state.seeds),
    }  # fmt: skip


def _seam(seam: dict[str, Any]) -> dict[str, Any]:
    """A manifest's seam as the page reads it (its scores and terms)."""
    return {k: v for k, v in seam.items() if k in SEAM_FIELDS}


def _wrap(manifest: dict[str, Any], done: FinishedRender) -> list[dict[str, Any]]:
    """A looping render's wrap, as a seam at the file's end (where the loop goes back to its start)."""
    seam = (manifest.get("loop") or {}).get("wrap_seam")
    return [_seam(seam) | {"at_s": done.length_s, "wrap": True}] if seam else []


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
