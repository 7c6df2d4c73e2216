"""Commands: agtrace export."""

from __future__ import annotations

import errno
import os
import sys
import urllib.parse

import click

from agtrace.eventlog import KINDS

from .errors import UserError
from .main import pass_ctx
from .options import parse_tags
from .output import duration, echo_json, progress

FORMATS = ["jsonl", "parquet", "atif", "otlp"]
EVENT_FORMATS = ("jsonl", "parquet")


@click.command("export")
@click.argument("runs", nargs=-1)
@click.option("--all", "all_runs", is_flag=True, help="Export every run in the store.")
@click.option("--where", "where", multiple=True, metavar="K=V",
              help="Only runs whose agent, model, status, task_id or id matches V (a glob), or whose "
                   "tag K is V (repeatable; all must match).")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="jsonl", show_default=True,
              help="JSON lines (one file), hive-partitioned Parquet (a directory: day=<YYYY-MM-DD>/kind=<kind>/), "
                   "ATIF trajectories (a directory: <run id>.json) or OpenTelemetry traces (OTLP: a JSON "
                   "lines file, or --endpoint).")
@click.option("--kind", "kinds", multiple=True, type=click.Choice(sorted(KINDS)),
              help="Only events of this kind (repeatable; jsonl and parquet).")
@click.option("--since", default=None, metavar="WHEN",
              help="Only events at or after WHEN: an ISO date/time (UTC unless it names a zone) or an age "
                   "(30m, 3h, 2d, 1w) (jsonl and parquet).")
@click.option("-o", "--out", default=None, metavar="PATH",
              help="Output file (jsonl, otlp) or directory (parquet, atif); must not exist. "
                   "- writes to standard output (jsonl, otlp). s3://bucket/prefix uploads (jsonl, parquet).")
@click.option("--endpoint", default=None, metavar="URL",
              help="otlp: send the traces to this OTLP/HTTP collector instead of a file "
                   "(http://host:4318 means http://host:4318/v1/traces).")
@click.option("--otlp-protocol", "protocol", type=click.Choice(["protobuf", "json"]), default="protobuf",
              show_default=True, help="otlp --endpoint: the request encoding.")
@click.option("--header", "headers", multiple=True, metavar="K=V",
              help="otlp --endpoint: an HTTP header for every request, e.g. authorization=Bearer… "
                   "(repeatable; default: env OTEL_EXPORTER_OTLP_HEADERS).")
@click.option("--resource", "resource", multiple=True, metavar="K=V",
              help="otlp: a resource attribute for every run's spans, e.g. "
                   "openinference.project.name=evals (repeatable).")
@click.option("--metrics", is_flag=True, help="Also write the run_metrics and part_metrics tables (jsonl, parquet).")
@click.option("--json", "as_json", is_flag=True, help="Print the export report as JSON.")
@pass_ctx
def export_cmd(ctx, runs, all_runs, where, fmt, kinds, since, out, endpoint, protocol, headers, resource,
               metrics, as_json) -> None:
    """Export runs: events for DuckDB, Spark or Athena (JSON lines, Parquet), trajectories for
    Harbor (ATIF) or traces for OpenTelemetry tools (OTLP).

    Name runs by id (or unique prefix), or select them with --all / --where. docs/export.md
    shows queries over an export and what maps to what in ATIF and OTLP.
    """
    from agtrace.replay import parse_since, select_runs

    _check_options(fmt, kinds, since, out, endpoint, protocol, headers, resource, metrics, as_json)
    ctx.refuse_inside_store(out, "-o")
    store = ctx.store
    if runs and (all_runs or where):
        raise UserError("name runs or use --all/--where, not both", 2)
    if not runs and not all_runs and not where:
        raise UserError("say which runs: give run ids, --all, or --where K=V", 2)
    try:
        since_ns = parse_since(since) if since else None
    except ValueError as exc:
        raise UserError(str(exc), 2) from None
    if runs:
        run_ids = [store.resolve(r) for r in runs]
    else:
        run_ids = select_runs(store, all_runs=True, where=parse_tags(where) if where else None)
    if not run_ids:  # nothing matched is no failure, as for ls, log and search (README: exit codes)
        nothing = "no runs match; nothing exported, nothing written (`agtrace ls` lists the runs)"
        if as_json:  # a script still gets its report: 0 runs, no file
            from agtrace.replay import ExportReport

            echo_json(ExportReport(format=fmt, out="", notes=[nothing]).to_dict())
        else:
            click.echo(nothing, err=True)
        return
    to_stdout = out == STDOUT
    target = _stdout() if to_stdout else out
    with progress(f"exporting {len(run_ids)} run(s)", enabled=not as_json) as update:
        try:
            if fmt == "atif":
                from agtrace.replay import export_atif

                report = export_atif(store, run_ids, out=target, progress=update)
            elif fmt == "otlp":
                from agtrace.replay import export_otlp

                report = export_otlp(store, run_ids, out=target, endpoint=endpoint, protocol=protocol,
                                     headers=_headers(headers), resource=_pairs(resource, "--resource"),
                                     progress=update)
            else:
                from agtrace.replay import export_runs

                report = export_runs(store, run_ids, format=fmt, out=target, kinds=list(kinds) or None,
                                     since_ns=since_ns, metrics=metrics, progress=update)
        except OSError as exc:
            mapped = None if to_stdout or endpoint else _unwritable(out, exc)
            if mapped is None:
                raise
            raise mapped from None
    if as_json:
        echo_json(report.to_dict())
        _fail_if_damaged(report)
        return
    for note in report.notes:
        click.echo(f"note: {note}", err=True)
    what = {"atif": f"{report.steps:,} steps from ", "otlp": f"{report.spans:,} spans from "}.get(fmt, "")
    where_to = ("sent to " if endpoint else "to ") + ("standard output" if to_stdout else report.out)
    if not endpoint and not to_stdout:
        where_to += f" ({report.files} file(s))"
    click.echo(f"exported {what}{report.events:,} events of {report.runs} run(s) {where_to}, "
               f"{report.bytes / 1e6:,.1f} MB, {duration(report.duration_s)}, "
               f"{report.events_per_s:,.0f} events/s", err=to_stdout)
    _fail_if_damaged(report)


def _fail_if_damaged(report) -> None:
    """Exit 1 naming each run that could not be read to its end (the rest is exported)."""
    if not report.damaged:
        return
    kept = ("its events before the damage are in the export" if report.format in EVENT_FORMATS
            else "it is left out of the export")
    problems = "; ".join(d["problem"] for d in report.damaged)
    raise UserError(f"{len(report.damaged)} damaged run(s) could not be exported whole ({kept}; "
                    f"the other runs are whole): {problems}", 1)


STDOUT = "-"
"""``-o -``: the export goes to standard output (jsonl and otlp, one stream each)."""


def _stdout():
    """The binary standard output an ``-o -`` export is written into."""
    stream = getattr(sys.stdout, "buffer", None)
    if stream is None:
        raise UserError("cannot write the export to standard output: it is closed; give -o PATH", 1)
    return stream


def _unwritable(out: str, exc: OSError) -> UserError | None:
    """An ``OSError`` of making the output (its directory, the temporary sibling it is built in,
    the rename into place) said of ``-o PATH`` as given, not of a temp name the user never
    typed; None when the error is not about the output (the store's, say)."""
    if exc.filename is None or "://" in out:
        return None
    dest = os.path.abspath(os.path.expanduser(out))
    failed = os.path.abspath(os.fsdecode(exc.filename))
    beside = os.path.join(os.path.dirname(dest), f".{os.path.basename(dest)}.")
    ours = (failed == dest or failed.startswith(dest + os.sep) or failed.startswith(beside)
            or dest.startswith(failed.rstrip(os.sep) + os.sep))
    if not ours:
        return None
    why = exc.strerror or str(exc)
    if failed.startswith(beside):
        why += " (building it in a temporary sibling, to rename into place)"
    elif failed != dest:
        why += f" ({failed})"
    hint = {errno.ENOSPC: "the disk is full: free some space or pick another -o",
            errno.EDQUOT: "the disk quota is exceeded: free some space or pick another -o",
            errno.EROFS: "the filesystem is read-only: pick another -o"}.get(exc.errno, "pick another -o")
    return UserError(f"cannot write the export to {out}: {why}; nothing was exported: {hint}", 1)


def _check_options(fmt, kinds, since, out, endpoint, protocol, headers, resource, metrics, as_json) -> None:
    """Refuse options that do not apply to ``fmt`` (exit 2), rather than ignore them."""
    if fmt not in EVENT_FORMATS:
        for given, name in ((kinds, "--kind"), (since, "--since"), (metrics, "--metrics")):
            if given:
                raise UserError(f"{name} applies to jsonl and parquet exports; {fmt} exports whole runs", 2)
    if fmt != "otlp":
        for given, name in ((endpoint, "--endpoint"), (headers, "--header"), (resource, "--resource"),
                            (protocol != "protobuf", "--otlp-protocol")):
            if given:
                raise UserError(f"{name} applies to --format otlp only", 2)
    if fmt == "otlp" and out and endpoint:
        raise UserError("give -o FILE or --endpoint URL, not both", 2)
    if fmt == "otlp" and not endpoint and (headers or protocol != "protobuf"):
        raise UserError("--header and --otlp-protocol apply to --endpoint; an OTLP file is always JSON", 2)
    if not out and not (fmt == "otlp" and endpoint):
        raise UserError("say where to: -o PATH" + (" or --endpoint URL" if fmt == "otlp" else ""), 2)
    if out == STDOUT:
        if fmt in ("parquet", "atif"):
            raise UserError(f"-o - is standard output, one stream; {fmt} exports are directories: give -o DIR", 2)
        for given, name, why in ((metrics, "--metrics", "its tables are files beside the export"),
                                 (as_json, "--json", "the report would be mixed into the export")):
            if given:
                raise UserError(f"-o - writes the export to standard output, so it cannot go with {name} "
                                f"({why}): give -o PATH", 2)


def _pairs(items: tuple[str, ...], option: str) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"{option} {item!r} is not KEY=VALUE", 2)
        out[key.strip()] = value.strip()
    return out


def _headers(items: tuple[str, ...]) -> dict[str, str]:
    """``--header`` pairs, else the OpenTelemetry environment's (``k=v,k2=v2``, URL-encoded)."""
    if items:
        return _pairs(items, "--header")
    env = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_HEADERS") or os.environ.get("OTEL_EXPORTER_OTLP_HEADERS") or ""
    pairs = tuple(urllib.parse.unquote(p) for p in env.split(",") if p.strip())
    return _pairs(pairs, "OTEL_EXPORTER_OTLP_HEADERS")

