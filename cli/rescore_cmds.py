"""Commands: agtrace rescore, scores.

The CLI picks the sandbox (capture's ``LocalSandbox``, or ``ModalScorer`` with ``--backend
modal``) and injects it into :func:`agtrace.replay.rescore`.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager

import click

from agtrace.replay import OUTPUT_PARSERS, ResultSpec, rescore, scores, select_runs

from .errors import UserError
from .main import pass_ctx
from .options import finite_seconds_option, parse_tags
from .output import duration, echo_json, progress, shorten, table


def _parts(value: str):
    """The selection as text (read by the one part-selection parser; bad text exits 2)."""
    from agtrace.eventlog import parse_parts

    parse_parts(value)
    return value


def _result_spec(
    parser: str, junit: str | None, json_result: str | None, regex: str | None
) -> ResultSpec:
    given = [(k, v) for k, v in (("junit", junit), ("json", json_result), ("regex", regex)) if v]
    if len(given) > 1:
        raise UserError("pass at most one of --junit, --json-result and --regex", 2)
    try:
        if given:
            kind, value = given[0]
            return (
                ResultSpec(kind, pattern=value) if kind == "regex" else ResultSpec(kind, path=value)
            )
        return ResultSpec(parser)
    except (ValueError, Exception) as exc:  # noqa: BLE001 - re.error and ValueError alike
        raise UserError(f"bad result option: {exc}", 2) from None


@click.command("rescore")
@click.argument("runs", nargs=-1)
@click.option("--all", "all_runs", is_flag=True, help="Every run in the store.")
@click.option(
    "--where",
    "where",
    multiple=True,
    metavar="K=V",
    help="Only runs whose field (agent, model, task_id, status, …) or tag K equals V (repeatable).",
)
@click.option("--name", required=True, help="The scorer's name (scores are shown by name).")
@click.option("--cmd", "cmd", required=True, help="Shell command run in the part's tree (bash -c).")
@click.option(
    "--parts",
    "--part",
    "parts",
    default="last",
    show_default=True,
    metavar="PARTS",
    help="last (its final tree), first, all, changed, a range 3-7 or a list 1,5,9 (0 = the base tree).",
)
@click.option(
    "--jobs",
    "-j",
    type=click.IntRange(1),
    default=1,
    show_default=True,
    help="Scorers run at once.",
)
@click.option(
    "--timeout",
    type=float,
    default=600.0,
    show_default=True,
    callback=finite_seconds_option,
    help="Kill a scorer after S seconds (recorded as status timeout).",
)
@click.option(
    "--parser",
    type=click.Choice(OUTPUT_PARSERS),
    default="auto",
    show_default=True,
    help="How to read the output (auto: the first test runner summary found, else exit code).",
)
@click.option(
    "--junit", default=None, metavar="PATH", help="Read a JUnit XML file (relative to the tree)."
)
@click.option(
    "--json-result",
    default=None,
    metavar="PATH",
    help="Read a JSON file (relative to the tree): a jest/vitest --json report, or "
    "passed/failed/errors/skipped/total/value.",
)
@click.option(
    "--regex",
    default=None,
    help="Read the output with a regex with named groups passed/failed/total/value.",
)
@click.option("--backend", type=click.Choice(["local", "modal"]), default="local", show_default=True,
              help="Where the scorer runs: here, or in Modal containers (needs `pip install agtrace[modal]`).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@pass_ctx
def rescore_cmd(
    ctx,
    runs,
    all_runs,
    where,
    name,
    cmd,
    parts,
    jobs,
    timeout,
    parser,
    junit,
    json_result,
    regex,
    backend,
    as_json,
) -> None:
    """Run a scorer on the reconstructed trees of old runs; record each result as a new event.

    Identical (tree, scorer) pairs run once; parts already scored by the same scorer are
    skipped, so an interrupted rescore resumes and a repeated one runs nothing new.
    """
    if runs and (all_runs or where):
        raise UserError("name runs or use --all/--where, not both", 2)
    store = ctx.store
    spec = _result_spec(parser, junit, json_result, regex)
    try:
        run_ids = select_runs(store, runs, all_runs=all_runs, where=parse_tags(where))
    except ValueError as exc:
        raise UserError(str(exc), 2) from None
    with _terminate_as_interrupt(), progress(f"rescoring ({name})", enabled=not as_json) as update:
        report = rescore(
            store,
            run_ids,
            name=name,
            cmd=cmd,
            sandbox=_sandbox(backend),
            parts=_parts(parts),
            jobs=jobs,
            timeout=timeout,
            result=spec,
            progress=update,
        )
    if as_json:
        echo_json(report.to_dict())
    else:
        click.echo(
            f"{name} ({report.scorer_digest[:12]}) on {len(report.runs)} run(s), {report.selected} part(s): "
            f"{report.ran} run, {report.reused} reused, {report.skipped} already scored; "
            f"{report.ok} ok, {report.error} error, {report.timeout} timeout; {duration(report.duration_s)}"
        )
        if report.unscored:
            click.echo(f"not scored: {report.unscored} run(s) or part(s)")
            for r in report.unscored_reasons:
                click.echo(f"  {r['reason']}")
        for r in report.results:
            if r["status"] != "ok" and not r["reused_from"]:
                at = "its final tree" if r["final"] else f"part {r['part']}"
                click.echo(f"  {r['status']}: run {r['run_id']} {at}; `agtrace scores {r['run_id']}` "
                           "shows its output")
    if report.failed:
        raise UserError(f"{report.failed} scorer result(s) failed ({report.error} error, {report.timeout} timeout); "
                        "`agtrace scores RUN` shows their output", 1)
    if not report.selected and report.unscored:
        raise UserError("nothing was scored: every run named was left out (reasons above)", 1)


@contextmanager
def _terminate_as_interrupt():
    """SIGTERM (a batch scheduler stopping the job) interrupts the rescore as Ctrl-C does: the
    running scorer is stopped, the scratch directories removed, exit 130."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@click.command("scores")
@click.argument("run")
@click.option("--name", default=None, help="Only this scorer's results.")
@click.option("--json", "as_json", is_flag=True, help="Print every score event as JSON.")
@pass_ctx
def scores_cmd(ctx, run, name, as_json) -> None:
    """Show a run's re-scoring results: the score over its parts, per scorer.

    A final tree that is not the last part's own (work after the last part ended, scored by
    `rescore --parts last`) is listed as part "final"; it is the run's score.
    """
    store = ctx.store
    run_id = store.resolve(run)
    rows = scores(store, run_id, name)
    if as_json:
        echo_json(rows)
        return
    if not rows:
        click.echo(
            f"run {run_id} has no scores{f' by {name}' if name else ''}; add some with `agtrace rescore`"
        )
        return
    latest: dict[tuple, dict] = {}
    for row in rows:  # the newest result per (scorer, part), the final tree's after the parts
        latest[(row["scorer"], row["final"], row["scored_part"])] = row
    out = []
    for (scorer, final, part), r in sorted(latest.items(), key=_in_order):
        counts = f"{r['passed']}/{r['total']}" if r["total"] is not None else "-"
        value = "-" if r["value"] is None else f"{r['value']:.3f}"
        origin = "reused" if r["reused_from"] else "ran"
        out.append(
            [
                scorer,
                "final" if final else part,
                r["tree_id"][:10],
                r["status"],
                value,
                counts,
                origin,
                shorten(r["scorer_digest"], 13),
            ]
        )
    click.echo(table(out, ["SCORER", "PART", "TREE", "STATUS", "VALUE", "PASSED", "HOW", "DIGEST"]))
    for (scorer, final, part), r in sorted(latest.items(), key=_in_order):
        if r["status"] == "ok":
            continue
        tail = r.get("output_tail") or _origin_tail(store, rows, r)
        click.echo(f"\n{scorer} {'final tree' if final else f'part {part}'}: {r['status']} (exit {'-' if r['exit_code'] is None else r['exit_code']})")
        lines = (tail or "(no output)").rstrip("\n").splitlines()[-TAIL_LINES:]
        for line in lines:
            click.echo(f"  {line}")


def _in_order(item: tuple) -> tuple:
    """By scorer, its parts in order, then its final tree (a part of None first)."""
    (scorer, final, part), _ = item
    return scorer, final, -1 if part is None else part


TAIL_LINES = 12
"""Lines of a failed scorer's output that `scores` shows."""


def _origin_tail(store, rows: list[dict], row: dict) -> str:
    """The output of the result a reused one was copied from (stored once, on the original,
    which may be another run's)."""
    if not row["reused_from"]:
        return ""
    run_id, _, seq = row["reused_from"].rpartition(":")
    if rows and run_id != rows[0]["run_id"] and store.has_run(run_id):
        rows = scores(store, run_id)
    for r in rows:
        if r["run_id"] == run_id and str(r["seq"]) == seq:
            return r.get("output_tail") or ""
    return ""


def _sandbox(backend: str):
    """The sandbox the scorer runs in, injected into replay's rescore."""
    if backend == "modal":
        from agtrace.capture import ModalScorer

        return ModalScorer()
    from agtrace.capture import LocalSandbox  # here, not at the top: `scores` needs no sandbox

    return LocalSandbox()
