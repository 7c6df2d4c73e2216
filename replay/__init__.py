"""agtrace.replay: rebuild any part of a run offline; projections, diffs, re-scoring, export.

Imports ``agtrace.eventlog`` only. Re-scoring takes its sandbox by injection (:class:`Sandbox`).
"""

from .checkout_cache import switch_to
from .compare import compare_table, render_compare
from .diff import TreeDiff, diff_parts
from .errors import (
    CompareError,
    ExportError,
    OutputNotEmpty,
    PartNotFound,
    ReplayError,
    RescoreError,
)
from .export import ExportReport
from .listing import list_runs, select_runs
from .metrics import PartMetrics, RunMetrics
from .projections import part_metrics, rebuild_metrics, run_metrics, update_metrics
from .report import render_report
from .rescoring import RescoreReport, rescore, scores
from .results import OUTPUT_PARSERS, ResultSpec, parse_result
from .sandbox import Sandbox
from .score_table import rebuild_scores
from .transcript import render_text, transcript_records
from .workspace import PartView, describe_part, materialize, resolve_part

__all__ = [
    "OUTPUT_PARSERS", "CompareError", "ExportError", "ExportReport", "OutputNotEmpty", "PartMetrics", "PartNotFound",
    "PartView", "ReplayError", "RescoreError", "RescoreReport", "ResultSpec", "RunMetrics",
    "Sandbox", "TreeDiff", "compare_table", "describe_part", "diff_parts",
    "list_runs", "materialize", "parse_result", "part_metrics", "rebuild_metrics",
    "rebuild_scores", "render_compare", "render_report", "render_text", "rescore", "resolve_part",
    "run_metrics", "scores", "select_runs", "switch_to", "transcript_records", "update_metrics",
]
