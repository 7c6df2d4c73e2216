"""agtrace.replay: rebuild any part of a run offline; diffs, reports, re-scoring, export.

Imports ``agtrace.eventlog`` only. Metrics and every other projection are ``agtrace.eventlog``'s
(``run_metrics``, ``part_metrics``); replay reads them. Re-scoring takes its sandbox by injection
(:class:`Sandbox`).

Every public name is exported here, lazily (PEP 562): importing this package costs nothing, and
a name imports only the module that defines it (pyarrow, for instance, only when a Parquet
export runs). :data:`_EXPORTS` maps each name to its module (and, for an alias, the name
there); ``__all__`` and ``dir()`` list them all.
"""

from __future__ import annotations

from importlib import import_module

_EXPORTS: dict[str, str | tuple[str, str]] = {
    "COMPARE_COLUMNS": ("compare", "COLUMNS"),
    "EXPORT_FORMATS": ("export", "FORMATS"),
    "OUTPUT_PARSERS": "results",
    "PARTS": "rescoring",
    "CompareError": "errors",
    "ExportError": "errors",
    "ExportReport": "export",
    "FileContent": "tree_file",
    "FileNotInTree": "errors",
    "NoSuchPart": "errors",
    "OtlpSpan": "otlp",
    "OutputNotEmpty": "errors",
    "PartNotFound": "errors",
    "PartView": "workspace",
    "ReplayError": "errors",
    "RescoreError": "errors",
    "RescoreReport": "rescoring",
    "ResultSpec": "results",
    "RunPage": "listing",
    "RunTreesDiff": "compare_trees",
    "Sandbox": "sandbox",
    "ScratchTree": "checkout_cache",
    "StoredSecret": "stored_secrets",
    "TreeDiff": "diff",
    "TreeFile": "tree_file",
    "compare_runs": "compare",
    "compare_table": "compare",
    "describe_part": "workspace",
    "diff_final_trees": "compare_trees",
    "diff_parts": "diff",
    "diff_run_trees": "compare_trees",
    "events_df": "frames",
    "export_atif": "atif",
    "export_otlp": "otlp_wire",
    "export_runs": ("export", "export"),
    "find_stored_secrets": "stored_secrets",
    "is_under": "diff",
    "list_runs": "listing",
    "materialize": "workspace",
    "parse_result": "results",
    "parse_since": "listing",
    "parse_time": "listing",
    "parts_df": "frames",
    "path_prefixes": "diff",
    "query_runs": "listing",
    "read_file": "tree_file",
    "render_compare": "compare",
    "render_report": "report",
    "render_text": "transcript",
    "rescore": "rescoring",
    "resolve_part": "workspace",
    "resolve_parts": "workspace",
    "run_spans": "otlp",
    "runs_df": "frames",
    "scores": "rescoring",
    "scores_df": "frames",
    "select_runs": "listing",
    "serve_viewer": ("viewer", "serve"),
    "snapshots": "workspace",
    "switch_to": "checkout_cache",
    "trajectory": "atif",
    "transcript_entries": "transcript",
    "transcript_records": "transcript",
    "tree_files": "tree_file",
    "viewer_app": "viewer",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> object:
    target = _EXPORTS.get(name)
    if target is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module, attr = (target, name) if isinstance(target, str) else target
    value = getattr(import_module(f".{module}", __name__), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
