"""agtrace.replay: rebuild any part of a run offline; diffs, reports, re-scoring, export.

Imports ``agtrace.eventlog`` only. Metrics and every other projection are ``agtrace.eventlog``'s
(``run_metrics``, ``part_metrics``); replay reads them. Re-scoring takes its sandbox by injection (:class:`Sandbox`).
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
from .report import render_report
from .rescoring import RescoreReport, rescore, scores
from .results import OUTPUT_PARSERS, ResultSpec, parse_result
from .sandbox import Sandbox
from .transcript import render_text, transcript_records
from .workspace import PartView, describe_part, materialize, resolve_part

__all__ = [
    "CompareError", "ExportError", "ExportReport", "OUTPUT_PARSERS", "OutputNotEmpty",
    "PartNotFound", "PartView", "ReplayError", "RescoreError", "RescoreReport", "ResultSpec",
    "Sandbox", "TreeDiff", "compare_table", "describe_part", "diff_parts", "list_runs",
    "materialize", "parse_result", "render_compare", "render_report", "render_text", "rescore",
    "resolve_part", "scores", "select_runs", "switch_to", "transcript_records",
]
