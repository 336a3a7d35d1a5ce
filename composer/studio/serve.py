"""``compose studio``: what to show (PATH), and the server's life (a free port, the URL, Ctrl-C)."""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import threading
import webbrowser
from collections.abc import Callable
from pathlib import Path

from composer.errors import ComposerError
from composer.job.view import read_json_object

LOOPBACK = frozenset({"127.0.0.1", "localhost"})


class StudioPathError(ComposerError):
    """PATH is not an arrangement, a folder of them, or an output folder."""

    exit_code = 2


def studio_files(path: Path | None, arrangements: Path, output: Path) -> tuple[list[Path], Path]:
    """The arrangement files to show and the output root their renders go to.

    ``path``: an arrangement file, a folder of them, an output root (its renders' arrangements), or
    one render's folder; None: the ``arrangements`` folder (else the output root's renders).

    Raises:
        StudioPathError: nothing to show there.
    """
    if path is None:
        path = arrangements if arrangements.is_dir() else output
    if path.is_file():
        return [path], output
    if not path.is_dir():
        raise StudioPathError(f"{path}: no such file or folder")
    yamls = sorted(p for p in path.glob("*.y*ml") if p.is_file())
    if yamls:
        return yamls, output
    if (path / "manifest.json").is_file() or (path / "state.json").is_file():  # one render's folder
        return _recorded([path]), path.parent
    files = _recorded(sorted(p for p in path.iterdir() if p.is_dir() and not p.is_symlink()))
    if not files:
        raise StudioPathError(f"{path}: holds no arrangement (*.yaml) and no render of one")
    return files, path


def _recorded(folders: list[Path]) -> list[Path]:
    """The arrangement files that renders in ``folders`` were made from (where they still exist)."""
    found = []
    for folder in folders:
        try:
            state = read_json_object(folder / "state.json") or {}
        except ComposerError:
            continue
        file = state.get("arrangement")
        if isinstance(file, str) and Path(file).is_file():
            found.append(Path(file))
    return list(dict.fromkeys(found))


def allowed_hosts(host: str) -> frozenset[str]:
    """The ``Host`` names the server answers to: loopback, and for another address the machine's names."""
    if host in LOOPBACK | {"::1"}:
        return LOOPBACK | {host}
    names = {host}
    if _is_ip(host) and ipaddress.ip_address(host).is_unspecified:
        name = socket.gethostname()
        names |= {name, socket.getfqdn()}
        with contextlib.suppress(OSError):
            names |= set(socket.gethostbyname_ex(name)[2])
    return LOOPBACK | frozenset(n.lower() for n in names)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def bind(host: str, port: int) -> socket.socket:
    """A listening socket (port 0: a free one). Raises OSError when the port is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(64)
    return sock


def serve(app: object, sock: socket.socket, url: str, *, open_browser: bool, echo: Callable[[str], None]) -> None:
    """Run the app on ``sock`` until Ctrl-C (uvicorn stops, the app's jobs are cancelled)."""
    import uvicorn

    config = uvicorn.Config(app, log_level="warning", lifespan="on")  # type: ignore[arg-type]
    server = uvicorn.Server(config)
    echo(f"composer studio: {url}")
    echo("Ctrl-C stops it (a running job stops at its next step; finished segments are kept).")
    if open_browser:
        threading.Timer(0.5, webbrowser.open, args=(url,)).start()
    with contextlib.suppress(KeyboardInterrupt):  # on Ctrl-C uvicorn stops the app (its jobs), then re-raises it
        server.run(sockets=[sock])
    echo("composer studio stopped")
