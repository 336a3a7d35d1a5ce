"""`compose studio`: what PATH shows, which Host names it answers, and a real start and Ctrl-C."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from composer.studio.serve import LOOPBACK, StudioPathError, allowed_hosts, studio_files
from tests.conftest import REPO
from tests.render.test_render import SHORT


def test_what_a_path_shows(tmp_path: Path) -> None:
    arrangements, out = tmp_path / "arrangements", tmp_path / "output"
    arrangements.mkdir()
    for name in ("b.yaml", "a.yml"):
        shutil.copy(SHORT, arrangements / name)
    assert studio_files(arrangements / "b.yaml", arrangements, out) == ([arrangements / "b.yaml"], out)
    assert studio_files(arrangements, arrangements, out) == ([arrangements / "a.yml", arrangements / "b.yaml"], out)
    assert studio_files(None, arrangements, out)[0] == [arrangements / "a.yml", arrangements / "b.yaml"]
    render = out / "b"  # an output folder: the arrangements its renders were made from
    render.mkdir(parents=True)
    (render / "state.json").write_text(json.dumps({"arrangement": str(arrangements / "b.yaml")}))
    (out / "gone").mkdir()
    (out / "gone" / "state.json").write_text(json.dumps({"arrangement": str(tmp_path / "deleted.yaml")}))
    assert studio_files(out, tmp_path / "none", tmp_path / "elsewhere") == ([arrangements / "b.yaml"], out)
    assert studio_files(render, tmp_path / "none", tmp_path / "elsewhere") == ([arrangements / "b.yaml"], out)
    assert studio_files(None, tmp_path / "none", out) == ([arrangements / "b.yaml"], out)
    with pytest.raises(StudioPathError, match="no such file"):
        studio_files(tmp_path / "missing", arrangements, out)
    (tmp_path / "empty").mkdir()
    with pytest.raises(StudioPathError, match="holds no arrangement"):
        studio_files(tmp_path / "empty", arrangements, out)


def test_which_host_names_it_answers() -> None:
    assert allowed_hosts("127.0.0.1") == LOOPBACK
    assert allowed_hosts("::1") == LOOPBACK | {"::1"}
    assert allowed_hosts("192.168.1.20") == LOOPBACK | {"192.168.1.20"}
    assert "evil.example" not in allowed_hosts("0.0.0.0") and "0.0.0.0" in allowed_hosts("0.0.0.0")


def test_a_bad_path_is_one_line_and_exit_2(tmp_path: Path) -> None:
    got = subprocess.run([sys.executable, "-m", "composer", "studio", str(tmp_path / "missing"), "--no-browser"],
                         capture_output=True, text=True, cwd=tmp_path, timeout=120)  # fmt: skip
    assert got.returncode == 2 and got.stderr.strip().count("\n") == 0 and "missing" in got.stderr, got.stderr


def test_it_starts_prints_its_url_and_stops_on_ctrl_c(tiny_env: Path, tmp_path: Path) -> None:
    shutil.copy(SHORT, tmp_path / "short.yaml")
    process = subprocess.Popen(
        [sys.executable, "-m", "composer", "studio", str(tmp_path / "short.yaml"), "--no-browser", "--out",
         str(tmp_path / "output")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    try:
        assert process.stdout is not None
        first = process.stdout.readline()  # printed once the port is listening
        url = first.split(": ", 1)[1].strip()
        assert url.startswith("http://127.0.0.1:") and "?token=" in url, first
        browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())
        with browser.open(url, timeout=60) as page:  # the token becomes a cookie on the redirect
            assert page.status == 200 and b"composer studio" in page.read()
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(url.split("?")[0] + "api/arrangements", timeout=60)  # no cookie
        assert refused.value.code == 401
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0 and "Traceback" not in err, err
