"""The studio server through Starlette's test client: what it serves, and what it refuses."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from composer.settings import Settings
from composer.studio.server import COOKIE, HEADER, Studio, create_app

TOKEN = "test-token-1234"
BASE = "http://127.0.0.1:8765"


def client(project: Path, settings: Settings, signed_in: bool = True) -> TestClient:
    studio = Studio(files=[project / "short.yaml"], out=project / "output", settings=settings, token=TOKEN)
    c = TestClient(create_app(studio), base_url=BASE)
    if signed_in:
        c.cookies.set(COOKIE, TOKEN)
    return c


def test_without_the_token_nothing_is_served(project: Path, settings: Settings) -> None:
    c = client(project, settings, signed_in=False)
    for path in ("/api/arrangements", "/api/renders/short", "/audio/short/mix", f"/api/arrangements?token=x{TOKEN}"):
        assert c.get(path).status_code == 401, path


def test_the_token_in_the_url_becomes_a_cookie(project: Path, settings: Settings) -> None:
    c = client(project, settings, signed_in=False)
    first = c.get(f"/api/arrangements?token={TOKEN}", follow_redirects=False)
    assert first.status_code == 303 and first.headers["location"] == f"{BASE}/api/arrangements"
    cookie = first.headers["set-cookie"].lower()
    assert f"{COOKIE}={TOKEN}".lower() in cookie and "httponly" in cookie and "samesite=strict" in cookie
    assert c.get("/api/arrangements").status_code == 200  # the client kept the cookie


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8765", "127.0.0.1.evil.example", ""])
def test_a_foreign_host_is_refused_even_with_the_token(project: Path, settings: Settings, host: str) -> None:
    """DNS rebinding: a page of evil.example resolving to 127.0.0.1 sends its own name as Host."""
    assert client(project, settings).get("/api/arrangements", headers={"host": host}).status_code == 403


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 403),  # a form post from another page: no token header
        ({HEADER: "wrong"}, 403),
        ({HEADER: TOKEN, "origin": "http://evil.example"}, 403),
        ({HEADER: TOKEN, "origin": BASE}, 405),  # past the guard: this route takes no POST
        ({HEADER: TOKEN}, 405),
    ],
)
def test_a_change_needs_the_token_header_and_the_same_origin(
    project: Path, settings: Settings, headers: dict[str, str], status: int
) -> None:
    assert client(project, settings).post("/api/arrangements", headers=headers).status_code == status


def test_arrangements_and_their_state(project: Path, settings: Settings) -> None:
    c = client(project, settings)
    [entry] = c.get("/api/arrangements").json()
    assert entry["name"] == "short" and entry["state"] == "rendered", entry
    assert entry["state"] == "rendered" and entry["title"] == "Test Short"
    text = (project / "short.yaml").read_text().replace("seed: 99", "seed: 98")
    (project / "short.yaml").write_text(text)
    assert c.get("/api/arrangements").json()[0]["state"] == "changed since"
    shutil.rmtree(project / "output" / "short")
    assert c.get("/api/arrangements").json()[0]["state"] == "never rendered"


def test_a_render_as_json_names_files_by_id_only(project: Path, settings: Settings) -> None:
    c = client(project, settings)
    view = c.get("/api/renders/short").json()
    assert [s["id"] for s in view["segments"]][:2] == ["intro", "intro--drive"]
    assert {(t["section"], t["take"]) for t in view["takes"]} == {("intro", 1), ("drive", 1), ("coda", 1)}
    assert view["seams"] and all("score" in s for s in view["seams"])
    assert str(project) not in json.dumps(view), "no path of this machine reaches the page"
    for item in ["mix", "stem/intro", "take/drive/1"]:
        assert c.get(f"/audio/short/{item}").status_code == 200, item
    assert c.get("/api/renders/nothing").status_code == 404


def test_audio_supports_range_requests(project: Path, settings: Settings) -> None:
    whole = (project / "output" / "short" / "mix.wav").read_bytes()
    got = client(project, settings).get("/audio/short/mix", headers={"range": "bytes=1000-1999"})
    assert got.status_code == 206 and got.content == whole[1000:2000]
    assert got.headers["content-range"] == f"bytes 1000-1999/{len(whole)}"
    assert (
        client(project, settings).get("/audio/short/mix", headers={"range": f"bytes={len(whole) + 5}-"}).status_code
        == 416
    )


@pytest.mark.parametrize(
    "item",
    ["../short.yaml", "../../etc/passwd", "/etc/passwd", "%2e%2e/short.yaml", "stem/../../short.yaml", "take/drive/x",
     "take/drive/9", "stem/nothing", "manifest.json"],
)  # fmt: skip
def test_no_client_path_reaches_the_filesystem(project: Path, settings: Settings, item: str) -> None:
    assert client(project, settings).get(f"/audio/short/{item}").status_code == 404


def test_a_link_out_of_the_output_tree_is_not_followed(project: Path, settings: Settings, tmp_path: Path) -> None:
    secret = tmp_path / "secret.wav"
    secret.write_bytes(b"RIFF secret")
    take = project / "output" / "short" / "stems" / "takes" / "drive.take1.wav"
    take.unlink()
    os.symlink(secret, take)
    assert client(project, settings).get("/audio/short/take/drive/1").status_code == 404


def test_peaks_are_small(project: Path, settings: Settings) -> None:
    got = client(project, settings).get("/api/renders/short/peaks")
    data = got.json()
    assert len(got.content) < 200_000 and len(data["peaks"]) == 2000 and 0 < max(data["peaks"]) <= 1.0
