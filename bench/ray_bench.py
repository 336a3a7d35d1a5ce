"""Ray benchmark: N arrangements through a local Ray cluster against one after another in one process.

    python -m bench.ray_bench                  # 4 variations of arrangements/ebm_set.yaml, tiny models, CPU
    python -m bench.ray_bench --models random --device cuda   # on a GPU machine: the real shapes

Both ways run in the same process, one after the other, on fresh output folders (nothing cached);
the mixes are compared byte for byte. Ray's per-call scheduling overhead is the round trip of an
empty actor call. Results are merged into bench/results/<machine>-<date>.json under "ray".
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import tempfile
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parent.parent


def variations(folder: Path, count: int) -> list[Path]:
    """``count`` copies of ebm_set.yaml with their own seeds (so nothing is shared between them)."""
    text = (REPO / "arrangements" / "ebm_set.yaml").read_text()
    files = []
    for i in range(count):
        path = folder / f"set{i + 1}.yaml"
        path.write_text(text.replace("seed: 20261125", f"seed: {20261125 + i}"))
        files.append(path)
    return files


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run(count: int, models: str, device: str) -> dict[str, Any]:
    import ray
    import torch

    from composer.job.cluster import render_many
    from composer.job.local import render
    from composer.settings import load_settings

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        settings = load_settings(env={"COMPOSER_MODELS": models, "COMPOSER_CACHE_DIR": str(root / "models"),
                                      "HF_HUB_OFFLINE": "1", "COMPOSER_DEVICE": device,
                                      "COMPOSER_STYLES_DIR": str(REPO / "styles")})  # fmt: skip
        files = variations(root, count)
        render(files[0], settings, root / "warm")  # builds the models and warms imports for both ways
        start = time.perf_counter()
        alone = {f.stem: sha(render(f, settings, root / "alone").folder / "mix.wav") for f in files}
        sequential = time.perf_counter() - start

        start = time.perf_counter()
        ray.init(num_cpus=torch.get_num_threads(), include_dashboard=False, log_to_driver=False,
                 configure_logging=False)  # fmt: skip
        startup = time.perf_counter() - start

        @ray.remote(num_cpus=0)
        class Echo:
            def ping(self) -> int:
                return 0

        echo = Echo.remote()  # type: ignore[attr-defined]
        ray.get(echo.ping.remote())
        start = time.perf_counter()
        for _ in range(200):
            ray.get(echo.ping.remote())
        call_ms = (time.perf_counter() - start) / 200 * 1000
        start = time.perf_counter()
        report = render_many(files, settings, root / "ray")
        clustered = time.perf_counter() - start
        identical = {job.name: sha(job.mix) == alone[job.name] for job in report.jobs if job.mix}
        segments = len(report.generated)
        ray.shutdown()
    return {
        "arrangements": count, "models": models, "device": device, "threads": torch.get_num_threads(),
        "sequential_s": round(sequential, 2), "ray_s": round(clustered, 2), "ray_startup_s": round(startup, 2),
        "speedup": round(sequential / clustered, 2), "segments": segments,
        "actor_call_round_trip_ms": round(call_ms, 2), "mixes_identical": identical,
    }  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arrangements", type=int, default=4)
    parser.add_argument("--models", default="tiny", choices=["tiny", "random"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    import socket

    import torch

    result = run(args.arrangements, args.models, args.device)
    print(json.dumps(result, indent=2))
    machine = socket.gethostname().split(".")[0] if args.device == "cuda" else f"cpu{torch.get_num_threads()}"
    path = args.out / f"{machine}-{dt.date.today().isoformat()}.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    data["ray"] = result
    args.out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
