"""Re-rolls: regenerate the transitions whose joins score badly, with new seeds, keeping the best try."""

from __future__ import annotations

import logging
from collections.abc import Callable

from composer.assembly.mix import mixdown
from composer.assembly.seams import Rerolls
from composer.engine.types import Take
from composer.job.prepare import Prepared
from composer.plan import Plan, Segment
from composer.plan.build import derive_seed
from composer.render.run import RunStats

log = logging.getLogger(__name__)

Make = Callable[[list[Segment]], tuple[dict[str, Take], RunStats]]  # generate what is missing of segments


def transition_scores(prepared: Prepared, plan: Plan, segments: dict[str, Take]) -> dict[str, float]:
    """Each transition's worst join score in the mastered mix, as export measures it (a loop's wrap too)."""
    worst: dict[str, float] = {}
    mixed = mixdown(plan, prepared.arrangement, segments)
    for seam in [*mixed.seams, *([mixed.wrap] if mixed.wrap else [])]:
        for side in (seam.before, seam.after):
            if plan.segment(side).kind == "transition":
                worst[side] = max(worst.get(side, 0.0), seam.score)
    return worst


def reroll_transitions(
    prepared: Prepared, plan: Plan, make: Make, *, segments: dict[str, Take], stats: RunStats, tries: int,
    record: Rerolls,
) -> Plan:  # fmt: skip
    """Regenerate the transitions whose joins score above the limit; returns the plan with the kept seeds.

    Tries are seeded from the transition's seed ("reroll", 1..tries), so a re-run tries the same
    seeds and finds them in the cache. ``make`` generates (here, or on a cluster's actor).
    ``segments``, ``stats``, ``prepared.state`` and ``record`` are updated.
    """
    scores = transition_scores(prepared, plan, segments)
    for seg in [s for s in plan.segments if s.kind == "transition"]:
        if scores.get(seg.id, 0.0) > record.limit:
            _reroll_one(prepared, seg, scores[seg.id], make, segments=segments, stats=stats, tries=tries, record=record)
    return prepared.plan()


def _reroll_one(
    prepared: Prepared, seg: Segment, score: float, make: Make, *, segments: dict[str, Take], stats: RunStats,
    tries: int, record: Rerolls,
) -> None:  # fmt: skip
    state = prepared.state
    original = state.seeds.get(seg.id)
    # (score, seed, take, seconds it took to generate in this run or None when it came from the cache)
    best = (score, original, segments[seg.id], stats.seconds.get(seg.id) if seg.id in stats.generated else None)
    log.warning("%s: its joins score %.1f (above %.1f); trying new seeds", seg.id, score, record.limit)
    record.tries[seg.id] = [{"seed": seg.seed, "score": round(score, 2), "generated": seg.id in stats.generated}]
    for k in range(1, tries + 1):
        seed = derive_seed(seg.seed, "reroll", k)
        state.seeds[seg.id] = seed
        trial = prepared.plan()
        parent = trial.segment(seg.prompt_from) if seg.prompt_from else None
        made, more = make([*([parent] if parent else []), trial.segment(seg.id)])
        took = more.seconds.get(seg.id, 0.0) if seg.id in more.generated else None
        for other in [i for i in more.generated if i != seg.id and i not in stats.generated]:  # a lost parent
            account(stats, other, more.seconds.get(other, 0.0))
        tried = transition_scores(prepared, trial, segments | {seg.id: made[seg.id]})[seg.id]
        record.tries[seg.id].append({"seed": seed, "score": round(tried, 2), "generated": took is not None})
        if tried < best[0]:
            best = (tried, seed, made[seg.id], took)
        if tried <= record.limit:
            break
    if best[1] is None:
        state.seeds.pop(seg.id, None)
    else:
        state.seeds[seg.id] = best[1]
    segments[seg.id] = best[2]
    account(stats, seg.id, best[3])
    kept_seed = best[1] if best[1] is not None else seg.seed
    for entry in record.tries[seg.id]:
        entry["kept"] = entry["seed"] == kept_seed
    if best[0] > record.limit:
        log.warning("%s: kept seed %d, whose joins still score %.1f (above %.1f) after %d tries; re-roll with more "
                    "tries (--reroll N) or change the transition", seg.id, kept_seed, best[0], record.limit,
                    len(record.tries[seg.id]) - 1)  # fmt: skip


def account(stats: RunStats, seg_id: str, seconds: float | None) -> None:
    """Record how the kept take of ``seg_id`` came to be: generated in this run (in ``seconds``) or from the cache."""
    stats.generated[:] = [i for i in stats.generated if i != seg_id]
    stats.cached[:] = [i for i in stats.cached if i != seg_id]
    stats.seconds.pop(seg_id, None)
    if seconds is None:
        stats.cached.append(seg_id)
    else:
        stats.generated.append(seg_id)
        stats.seconds[seg_id] = seconds
