"""The same arrangement and seed give the same music on any thread count (issue #25).

A render at 1, 2 and 3 threads (``OMP_NUM_THREADS``, as a container or a job scheduler sets it) must
give byte-identical mixes, stems and cache keys; the codec, which rounds with the thread count when
one of its convolutions is shared between threads, must give identical audio for identical codes.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from composer.engine.codec import decode_many, decode_tokens
from composer.engine.kernels import threads
from tests.conftest import REPO
from tests.render.test_resume import tiny_process_env

EBM_SET = REPO / "arrangements" / "ebm_set.yaml"


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def short_ebm_set(folder: Path) -> Path:
    """arrangements/ebm_set.yaml with every section 8 s and every transition 6 s (4 s of prompt): the
    same sections, styles, seeds, transitions and continuations (43 s for the three renders, not 66 s)."""
    text = EBM_SET.read_text()
    for long, short in (("duration_s: 30", "duration_s: 8"), ("duration_s: 20", "duration_s: 8"),
                        ("duration_s: 12", "duration_s: 6"), ("prompt_s: 10", "prompt_s: 4")):  # fmt: skip
        assert long in text, long
        text = text.replace(long, short)
    path = folder / "ebm_set.yaml"
    path.write_text(text)
    return path


@pytest.mark.slow
def test_ebm_set_gives_one_mix_at_one_two_and_three_threads(tiny_cache: Path, tmp_path: Path) -> None:
    results = {}
    arrangement = short_ebm_set(tmp_path)
    for count in (2, 1, 3):
        out = tmp_path / f"threads-{count}"
        env = tiny_process_env(tiny_cache) | {"OMP_NUM_THREADS": str(count)}
        cmd = [sys.executable, "-m", "composer", "render", str(arrangement), "--out", str(out)]
        done = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-2000:]
        folder = out / "ebm_set"
        manifest = json.loads((folder / "manifest.json").read_text())
        keys = {s["id"]: (s["cache_key"], s["numerics"]) for s in manifest["segments"]}
        files = {p.relative_to(folder).as_posix(): sha(p) for p in sorted(folder.rglob("*.wav"))}
        assert "mix.wav" in files and any(name.startswith("stems/") for name in files)
        results[count] = (keys, files)
    (keys, files), others = results[2], {c: r for c, r in results.items() if c != 2}
    for count, (other_keys, other_files) in others.items():
        assert other_keys == keys, f"{count} thread(s): other cache keys or numerics than on 2"
        differ = sorted(name for name in files if other_files.get(name) != files[name])
        assert not differ, f"{count} thread(s): {', '.join(differ)} differ from the render on 2 threads"


def test_decoded_audio_does_not_depend_on_threads_or_company(tiny_small) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(5)
    codes = [rng.integers(0, 2048, (4, n)) for n in (600, 130, 900)]  # 12 s, 2.6 s, 18 s at 50 Hz
    with threads(1):
        alone = [decode_tokens(tiny_small, c) for c in codes]
    for count in (2, 3, 4):
        with threads(count):
            together = decode_many(tiny_small, codes[::-1])[::-1]
        for i, (a, b) in enumerate(zip(alone, together, strict=True)):
            assert a.shape == (1, codes[i].shape[1] * tiny_small.spec.hop)
            assert np.array_equal(a, b), f"segment {i} on {count} threads: max diff {np.abs(a - b).max():.2g}"
