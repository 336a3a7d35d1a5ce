"""Arrangement -> render plan: segments, dependencies, content hashes, timeline (stage 2)."""

from composer.plan.build import Placement, Plan, Segment, build_plan

__all__ = ["Placement", "Plan", "Segment", "build_plan"]
