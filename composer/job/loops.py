"""``compose export-loops``: each section of a render as a bar-exact loop, from the cache only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from composer.export.loops import write_loops
from composer.fsutil import filesystem_errors, output_tree, real_dir
from composer.job.prepare import from_cache, prepare
from composer.render.cache import SegmentCache
from composer.render.lock import render_lock
from composer.settings import Settings


def export_loops(file: Path, settings: Settings, out_root: Path) -> dict[str, Any]:
    """Write ``<out>/<name>/loops/`` from the cached segments of the render as it stands (its picks and
    regen seeds), generating nothing.

    Raises:
        NotRenderedError: a segment is not in the cache (render first).
    """
    prepared = prepare(file, settings, out_root)
    plan = prepared.plan()
    folder = prepared.folder
    with filesystem_errors(folder), output_tree(out_root), render_lock(folder):
        segments, _ = from_cache(prepared, plan, SegmentCache(out_root / "cache" / "segments"), [])
        real_dir(folder / "loops")
        return write_loops(plan, prepared.arrangement, folder, segments)
