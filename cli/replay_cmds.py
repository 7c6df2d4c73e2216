"""Replay commands: `agtrace replay ID --part N` (also the `replay` console script)."""

from __future__ import annotations

import click

from agtrace.eventlog import quote_name
from agtrace.replay import materialize, parse_time, resolve_part

from .errors import UserError
from .main import pass_ctx
from .output import echo_json, progress

LEFT_SHOWN = 5
"""Files left out of a tree named in replay's summary (``--json`` lists them all)."""


def _parse_time(value: str) -> int:
    try:
        return parse_time(value, "--at-time")
    except ValueError as exc:
        raise UserError(str(exc), 2) from None


@click.command("replay")
@click.argument("run")
@click.option("--part", "part", default=None, metavar="PART",
              help="One part: N, first or last (0 = before the first part); see README, Naming parts.")
@click.option("--at-seq", type=click.IntRange(0), default=None, metavar="SEQ",
              help="The last part ended at this event seq (0, or a seq before the first part "
                   "ended: the base tree).")
@click.option("--at-time", default=None, metavar="WHEN",
              help="The last part ended at this wall-clock time: ISO, UTC unless it names a zone "
                   "(as ls and log print it: 2026-12-03 13:38:12Z).")
@click.option("--out", "out", type=click.Path(file_okay=False), default=None,
              help="Directory to write the repository into (default ./<id>-part-<N>).")
@click.option("--force", is_flag=True,
              help="Replace a --out that an earlier replay from this store wrote; any other non-empty "
                   "directory is refused, naming what it holds.")
@click.option("--transcript", is_flag=True,
              help="Print the conversation up to the part instead of writing a tree (the whole run without a part).")
@click.option("--max-lines", type=int, default=20, show_default=True,
              help="With --transcript: lines shown of each tool output, reasoning or prompt.")
@click.option("--json", "as_json", is_flag=True,
              help="Print what part N was as JSON; with --transcript, its events as JSON lines.")
@pass_ctx
def replay_cmd(ctx, run, part, at_seq, at_time, out, force, transcript, max_lines, as_json) -> None:
    """Write the repository exactly as it was after a part, and say what that part was.

    On a terminal, standard error counts the files written (a big tree takes seconds).

    With --transcript, write nothing: print the conversation up to that part (messages,
    reasoning, tool calls and results, tests, tokens).
    """
    given = [name for name, value in (("--part", part), ("--at-seq", at_seq), ("--at-time", at_time))
             if value is not None]
    if len(given) > 1:
        raise UserError(f"{', '.join(given[:-1])} and {given[-1]} each name a part: give one of them", 2)
    if transcript and (out is not None or force):
        raise UserError(f"--transcript prints the conversation and writes no tree, so {'--out' if out else '--force'} "
                        "does not apply: drop one of them", 2)
    store = ctx.store
    run_id = store.resolve(run)
    at_time_ns = _parse_time(at_time) if at_time else None
    named = bool(given)
    if transcript:
        n = resolve_part(store, run_id, part=part, at_seq=at_seq, at_time_ns=at_time_ns) if named else None
        _print_transcript(store, run_id, n, max_lines, as_json)
        return
    if not named:
        raise UserError("name a part: --part N|first|last, --at-seq S or --at-time T", 2)
    n = resolve_part(store, run_id, part=part, at_seq=at_seq, at_time_ns=at_time_ns)
    out = out or f"{ctx.short_id(run_id)}-part-{n}"
    ctx.refuse_inside_store(out, "--out")
    # no refresh thread: it would keep the checkout from forking the child that writes half the files
    with progress(f"writing part {n} of {ctx.short_id(run_id)}", enabled=not as_json, unit="files", thread=False) as update:
        view = materialize(store, run_id, n, out, force=force, progress=lambda files: update(files, None))
    if as_json:
        echo_json(view.to_dict())
        return
    click.echo(f"part {view.part} of {run_id}: {view.kind} {view.title}".rstrip())
    if view.command:
        click.echo(f"  command: {view.command}")
    for c in view.changed:
        click.echo(f"  {c['status']:<9} {quote_name(c['path'])}  +{c['lines_added']} -{c['lines_removed']}")
    if not view.changed:
        click.echo("  no files changed since the previous part")
    if view.left_out:
        shown = ", ".join(f"{e['path']} ({e['reason']})" for e in view.left_out[:LEFT_SHOWN])
        more = f" and {len(view.left_out) - LEFT_SHOWN} more (--json lists them)" if len(view.left_out) > LEFT_SHOWN else ""
        click.echo(f"  not in the tree (left out when recorded): {shown}{more}")
    if view.tests:
        t = view.tests
        click.echo(f"  tests at this point (part {t['part']}): {t['passed']} passed, {t['failed']} failed, "
                   f"{t['errors']} errors of {t['total']}")
    how = {"switch": "switched from the previous replay", "same": "already there"}.get(view.how, "written")
    click.echo(f"tree {view.tree_id} in {view.out} ({how}, verified)")


_STYLES = {"message_added": "bold green", "reasoning_added": "italic magenta", "tool_called": "bold cyan",
           "tool_returned": "cyan", "tests_ran": "bold yellow", "error_occurred": "bold red",
           "model_called": "bold red", "usage_reported": "dim", "part_ended": "dim", "turn_started": "bold",
           "run_started": "bold", "run_ended": "bold"}


def _print_transcript(store, run_id: str, part: int | None, max_lines: int, as_json: bool) -> None:
    import sys

    from agtrace.eventlog import call_costs, record_to_json
    from agtrace.replay import render_text, transcript_entries, transcript_records

    from .streams import json_text

    records = transcript_records(store, run_id, part)
    if as_json:
        for rec in records:
            sys.stdout.write(json_text(record_to_json(rec)) + "\n")
        return
    costs = {row["seq"]: row for row in call_costs(store, run_id)}
    entries = transcript_entries(records, run_id, max_lines=max_lines, costs=costs)
    if not sys.stdout.isatty():
        for entry in entries:
            sys.stdout.write(render_text([entry]))
        return
    from rich.console import Console
    from rich.padding import Padding
    from rich.text import Text

    console = Console(highlight=False)
    for e in entries:
        where = f"[{e.part}]" if e.part is not None else "[-]"
        line = Text()
        line.append(f"{where:>6} ", style="dim")
        line.append(e.heading, style=_STYLES.get(e.kind, ""))
        console.print(line)
        if e.body:
            console.print(Padding(Text(e.body), (0, 0, 0, 7)))
        if e.note:
            console.print(Padding(Text(f"({e.note})", style="dim italic"), (0, 0, 0, 7)))
