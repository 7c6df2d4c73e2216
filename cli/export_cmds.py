"""Commands: agtrace export."""

from __future__ import annotations

import click
import msgspec

from agtrace.eventlog import KINDS

from .main import UserError, pass_ctx
from .output import duration, progress
from .runs import parse_tags


@click.command("export")
@click.argument("runs", nargs=-1)
@click.option("--all", "all_runs", is_flag=True, help="Export every run in the store.")
@click.option("--where", "where", multiple=True, metavar="K=V",
              help="Only runs whose agent, model, status, task_id or id matches V (a glob), or whose "
                   "tag K is V (repeatable; all must match).")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "parquet"]), default="jsonl", show_default=True,
              help="JSON lines (one file) or hive-partitioned Parquet (a directory: run=<id>/kind=<kind>/).")
@click.option("--kind", "kinds", multiple=True, type=click.Choice(sorted(KINDS)),
              help="Only events of this kind (repeatable).")
@click.option("--since", default=None, metavar="WHEN",
              help="Only events at or after WHEN: an ISO date/time or an age (30m, 3h, 2d, 1w).")
@click.option("-o", "--out", required=True, metavar="PATH",
              help="Output file (jsonl) or directory (parquet); must not exist. s3://bucket/prefix uploads.")
@click.option("--metrics", is_flag=True, help="Also write the run_metrics and part_metrics tables.")
@click.option("--json", "as_json", is_flag=True, help="Print the export report as JSON.")
@pass_ctx
def export_cmd(ctx, runs, all_runs, where, fmt, kinds, since, out, metrics, as_json) -> None:
    """Export runs' events for DuckDB, Spark or Athena (JSON lines or Parquet).

    Name runs by id (or unique prefix), or select them with --all / --where. Memory stays
    bounded however large the runs are. docs/export.md shows queries over an export.
    """
    from agtrace.replay.export import export, select_runs
    from agtrace.replay.listing import parse_since

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
        run_ids = select_runs(store, parse_tags(where) if where else None)
    if not run_ids:
        raise UserError("no runs match; `agtrace ls` lists the runs", 1)
    with progress(f"exporting {len(run_ids)} run(s)", enabled=not as_json) as update:
        report = export(store, run_ids, format=fmt, out=out, kinds=list(kinds) or None, since_ns=since_ns,
                        metrics=metrics, progress=update)
    if as_json:
        click.echo(msgspec.json.encode(report.to_dict()).decode())
        return
    for note in report.notes:
        click.echo(f"note: {note}", err=True)
    click.echo(f"exported {report.events:,} events of {report.runs} run(s) to {report.out} "
               f"({report.files} file(s), {report.bytes / 1e6:,.1f} MB, {duration(report.duration_s)}, "
               f"{report.events_per_s:,.0f} events/s)")


COMMANDS = [export_cmd]
