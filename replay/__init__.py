"""agtrace.replay: rebuild any part of a run offline; diffs, reports, re-scoring, export.

Imports ``agtrace.eventlog`` only. Metrics and every other projection are ``agtrace.eventlog``'s
(``run_metrics``, ``part_metrics``); replay reads them. Re-scoring takes its sandbox by injection (:class:`Sandbox`).
"""

from .atif import export_atif, trajectory
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
from .otlp import OtlpSpan, run_spans
from .otlp_wire import export_otlp
from .report import render_report
from .rescoring import RescoreReport, rescore, scores
from .results import OUTPUT_PARSERS, ResultSpec, parse_result
from .sandbox import Sandbox
from .transcript import render_text, transcript_records
from .workspace import PartView, describe_part, materialize, resolve_part

__all__ = [
    "CompareError", "ExportError", "ExportReport", "OUTPUT_PARSERS", "OtlpSpan", "OutputNotEmpty",
    "PartNotFound", "PartView", "ReplayError", "RescoreError", "RescoreReport", "ResultSpec",
    "Sandbox", "TreeDiff", "compare_table", "describe_part", "diff_parts", "export_atif",
    "export_otlp", "list_runs", "materialize", "parse_result", "render_compare", "render_report",
    "render_text", "rescore", "resolve_part", "run_spans", "scores", "select_runs", "switch_to",
    "trajectory", "transcript_records",
]
