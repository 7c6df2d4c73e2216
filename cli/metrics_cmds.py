"""Commands: agtrace metrics, diff."""

from __future__ import annotations

import csv
import json
import sys

import click

from agtrace.eventlog import part_metrics, run_costs, run_metrics
from agtrace.replay import diff_parts

from .errors import UserError
from .main import pass_ctx
from .output import clock, cost_line, duration, echo_json, shorten, table


def _write_csv(rows: list[dict]) -> None:
    if not rows:
        return
    writer = csv.DictWriter(sys.stdout, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: json.dumps(v, sort_keys=True) if isinstance(v, dict) else v for k, v in row.items()})


def _n(value) -> str:
    return "-" if value is None else f"{value:,}"


@click.command("metrics")
@click.argument("run")
@click.option("--per-part", is_flag=True, help="One row per part instead of the run's totals.")
@click.option("--parts", "--part", "parts", default=None, metavar="PARTS",
              help="With --per-part: only these parts (N, first, last, all, changed, 3-7, 1,4,9).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--csv", "as_csv", is_flag=True, help="Print CSV (a header and one row per run or part).")
@pass_ctx
def metrics_cmd(ctx, run: str, per_part: bool, parts: str | None, as_json: bool, as_csv: bool) -> None:
    """A run's metrics: status, tokens by type, cost, tool calls and errors, tests, files changed.

    Brought up to date with the run's events first (only new events are read). docs/metrics.md
    says what each metric means.
    """
    if as_json and as_csv:
        raise UserError("choose one of --json and --csv", 2)
    store = ctx.store
    run_id = store.resolve(run)
    if parts is not None and not per_part:
        raise UserError("--parts selects rows of --per-part; add --per-part", 2)
    if per_part:
        page = None
        if parts is not None:
            from agtrace.replay import resolve_parts

            chosen = set(resolve_parts(store, run_id, parts))
            page = (min(chosen), max(chosen)) if chosen else (1, 0)  # read only that range's rows
        rows = [p.to_dict() for p in part_metrics(store, run_id, page)]
        if parts is not None:
            rows = [r for r in rows if r["part"] in chosen]
        if as_json:
            echo_json(rows)
        elif as_csv:
            _write_csv(rows)
        else:
            click.echo(table([
                [r["part"], r["kind"] or "-", r["tool"] or "-", _n(r["tokens"]), r["tool_errors"] or "",
                 "" if r["tests_total"] is None else f"{r['tests_passed']}/{r['tests_total']}",
                 r["files_changed"] or "",
                 f"+{r['churn_lines_added']} -{r['churn_lines_removed']}" if r["files_changed"] else "",
                 shorten(r["title"] or "", 50)]
                for r in rows
            ], ["PART", "KIND", "TOOL", "TOKENS", "TOOL ERR", "TESTS", "FILES", "LINES", "TITLE"]))
        return
    m = run_metrics(store, run_id)
    data = m.to_dict()
    cost = run_costs(store, [run_id])[run_id]
    data["cost"] = cost.cost_object()
    if as_json:
        echo_json(data)
        return
    if as_csv:
        _write_csv([{**data, "cost": cost.cost_usd}])
        return
    click.echo(f"run:       {run_id}")
    click.echo(f"status:    {m.status}" + (f" ({m.reason})" if m.reason else ""))
    click.echo(f"started:   {clock(m.started_at)}   duration: {duration(m.duration_s)}")
    click.echo(f"parts:     {m.parts}   turns: {m.turns}   events: {m.events}")
    click.echo(f"tokens:    {_n(m.tokens)} = input {_n(m.tokens_input)} + output {_n(m.tokens_output)} "
               f"+ cache read {_n(m.tokens_cache_read)} + cache write {_n(m.tokens_cache_write)}"
               f"   (reasoning {_n(m.tokens_reasoning)} of output)")
    click.echo(f"cost:      {cost_line(cost)}")
    click.echo(f"models:    {m.model_calls} calls, {m.model_errors} failed   errors: {m.errors}")
    click.echo(f"tools:     {m.tool_calls} calls, {m.tool_errors} errors")
    rates = m.tool_error_rates()
    for name, t in sorted(m.tools.items(), key=lambda kv: (-kv[1]["calls"], kv[0])):
        click.echo(f"  {name:<20} {t['calls']:>6} calls {t['errors']:>5} errors  {rates[name]:6.1%}")
    if m.tests_ran:
        click.echo(f"tests:     {m.tests_ran} runs; first pass at part {_n(m.tests_first_pass_part)}; "
                   f"best {m.tests_best_passed}/{m.tests_best_total} at part {m.tests_best_part}; "
                   f"final {m.tests_final_passed}/{m.tests_final_total} at part {m.tests_final_part}")
    else:
        click.echo("tests:     none ran")
    click.echo(f"files:     {m.files_changed} changed, +{m.churn_lines_added} -{m.churn_lines_removed} lines "
               "(churn: every snapshot's change summed)")


@click.command("diff")
@click.argument("run")
@click.argument("a")
@click.argument("b")
@click.argument("paths", nargs=-1)
@click.option("--stat", "stat", is_flag=True, help="A diffstat (like `git diff --stat`).")
@click.option("--name-only", is_flag=True, help="Only the changed paths.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (with patches unless --stat/--name-only).")
@pass_ctx
def diff_cmd(ctx, run: str, a: str, b: str, paths: tuple[str, ...], stat: bool, name_only: bool,
             as_json: bool) -> None:
    """Diff the repository between parts A and B of a run (0 = base tree; first, last accepted).

    PATHs limit the diff to those files or directories, each as its name or in the quoted form
    that --stat and --name-only print (`"bad\\377name"`). Text files get a unified diff that
    `git apply` accepts; binary files are noted.
    """
    if stat and name_only:
        raise UserError("choose one of --stat and --name-only", 2)
    store = ctx.store
    run_id = store.resolve(run)
    d = diff_parts(store, run_id, a, b, list(paths) or None, patches=not (stat or name_only))
    if as_json:
        echo_json(d.to_dict())
    elif name_only:
        click.echo(d.name_only(), nl=False)
    elif stat:
        click.echo(d.stat(), nl=False)
    else:
        _echo_patch(d.patch())


def _echo_patch(text: str) -> None:
    if not sys.stdout.isatty():
        click.echo(text, nl=False)
        return
    for line in text.splitlines():
        if line.startswith(("diff --git", "new file", "deleted file", "---", "+++")):
            click.secho(line, bold=True)
        elif line.startswith("@@"):
            click.secho(line, fg="cyan")
        elif line.startswith("+"):
            click.secho(line, fg="green")
        elif line.startswith("-"):
            click.secho(line, fg="red")
        else:
            click.echo(line)

