"""agtrace.replay: rebuild any part of a run offline; projections, diffs, re-scoring, export."""

from .errors import OutputNotEmpty, PartNotFound, ReplayError

__all__ = ["OutputNotEmpty", "PartNotFound", "ReplayError"]
