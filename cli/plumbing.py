"""The plumbing for events: new, append, close (a run built from JSON lines, not captured)."""

from __future__ import annotations

import os
import stat
import sys

import click

from agtrace.eventlog import END_STATUSES, RunEnded, RunStarted

from .errors import UserError
from .main import pass_ctx
from .options import parse_tags, read_text_arg
from .output import echo_json, progress, warn
from .streams import stdin_closed


@click.command("new")
@click.option("--agent", default="", help="Agent name.")
@click.option("--model", default="", help="Model name.")
@click.option("--task", default="", help="Task prompt (text, or @FILE).")
@click.option("--task-id", default="", help="Task id.")
@click.option("--tag", "tags", multiple=True, metavar="K=V", help="Free-form tag (repeatable).")
@click.option("--parent", default="", help="Run this one resumes or re-runs.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def new_cmd(ctx, agent, model, task, task_id, tags, parent, as_json) -> None:
    """Create a run for events appended later (`agtrace append`); print its id."""
    store = ctx.store
    parent_id = store.resolve(parent) if parent else ""
    started = RunStarted(
        agent=agent, model=model, prompt=read_text_arg(task), task_id=task_id,
        tags=parse_tags(tags), parent_run=parent_id, source="append",
    )
    from agtrace.eventlog import Redactor

    started, _ = Redactor.from_env(os.environ).redact_event(started)
    writer = store.create_run(started, durability="strict")
    store.close_writer(writer)
    if as_json:
        echo_json({"id": writer.run_id})
    else:
        click.echo(writer.run_id)


@click.command("append")
@click.argument("run")
@click.option("--durability", type=click.Choice(["strict", "normal", "off"]), default="normal", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary.")
@pass_ctx
def append_cmd(ctx, run: str, durability: str, as_json: bool) -> None:
    """Append events read as JSON lines on stdin (the lines `agtrace log --json` prints).

    The store assigns seqs; ts and part are kept when given. Secrets are redacted before the
    events are stored (as `agtrace run` does). On a bad line (not an event, out of a limit,
    a negative or inconsistent count, an end status `close` does not take) it stops with the
    line number; every line before it stays stored. A run_started line is skipped (the run has its own).
    --json prints the seqs given (first_seq, last_seq: null when nothing was stored).
    On a terminal, standard error shows the progress; standard input a terminal is read until
    Ctrl-D.
    This is plumbing for events only: repository state is not copied (`agtrace cp` copies a
    run whole).
    """
    store = ctx.store
    run_id = store.resolve(run)
    if stdin_closed():
        raise UserError(f"standard input is closed: pipe the events in (`agtrace log --json OTHER | agtrace append "
                        f"{ctx.short_id(run_id)}`); nothing was appended", 2)
    writer = store.open_writer(run_id, durability=durability, fold="child")  # the projections are folded on the second core
    if writer.torn_tail:
        warn(f"cut a torn tail of {writer.torn_tail.bytes_cut} bytes off {writer.torn_tail.path}")
    first = writer.next_seq
    started_at = store.info(run_id, sync=False).started_at if first > 1 else None
    from agtrace.eventlog import Redactor, append_json_lines

    source = sys.stdin.buffer
    if source.isatty():  # a person forgot the pipe, or types events: say what it waits for
        click.echo(f"reading events as JSON lines from the terminal; end with Ctrl-D (or pipe them in: "
                   f"`agtrace log --json OTHER | agtrace append {ctx.short_id(run_id)}`)", err=True)
    try:  # the bar after the writer: its thread would keep the fold child from being forked
        with progress(f"appending to {ctx.short_id(run_id)}", enabled=not as_json and not source.isatty()) as update:
            total = _input_size(source)
            done = append_json_lines(writer, source, Redactor.from_env(os.environ), check=store.check_blobs,
                                     started_at=started_at,
                                     progress=lambda read, _: update(min(read, total) if total else read, total))
    finally:
        store.close_writer(writer)
    stored, skipped, earlier = done.appended, done.skipped_lines, done.before_start
    if skipped:
        warn(f"skipped the run_started event of line {', '.join(map(str, skipped))}: run {run_id} has its own "
             "identity (append copies events only, not repository state; `agtrace cp RUN` copies a run whole)")
    if earlier:
        warn(f"{earlier} event(s) have timestamps before run {run_id} started (kept as given; a report's time "
             "axis shows them before 0); `agtrace cp RUN` makes a copy that starts when its source did")
    if as_json:  # no seqs when nothing was stored (not an empty range first..first-1)
        echo_json({"id": run_id, "appended": stored, "first_seq": first if stored else None,
                   "last_seq": first + stored - 1 if stored else None, "skipped_lines": skipped,
                   "before_start": earlier})
    elif stored:
        click.echo(f"appended {stored} events to {run_id}", err=True)
    else:
        click.echo(f"no events were stored in {run_id}: standard input held "
                   f"{'only run_started lines' if skipped else 'no events'}", err=True)


@click.command("close")
@click.argument("run")
@click.option("--status", type=click.Choice(list(END_STATUSES)), required=True)
@click.option("--reason", default="", help="Why, in words.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def close_cmd(ctx, run: str, status: str, reason: str, as_json: bool) -> None:
    """End a run with a status (appends run_ended).

    Closing a run that already ended with the same status succeeds and appends nothing (a
    close killed before it printed can be run again); another status is refused."""
    from agtrace.eventlog import Redactor, RunClosed

    store = ctx.store
    run_id = store.resolve(run)
    writer = store.open_writer(run_id, durability="strict")
    already = False
    try:
        reason, n = Redactor.from_env(os.environ).redact(reason)
        seq = writer.append(RunEnded(status=status, reason=reason, redactions=n)).seq
    except RunClosed:
        already = True
    finally:
        store.close_writer(writer)
    if already:
        info = store.info(run_id)
        if info.status != status:
            why = f" ({info.reason})" if info.reason else ""
            raise UserError(f"run {run_id} has already ended with status {info.status}{why}, not {status}; a run "
                            f"ends once: a resumed or continued run is a new run: `agtrace new --parent {run_id}`")
        seq = info.events
    if as_json:
        echo_json({"id": run_id, "status": status, "seq": seq, "already_closed": already})
    elif already:
        click.echo(f"{run_id} {status} (already closed with status {status}; nothing appended)")
    else:
        click.echo(f"{run_id} {status}")


def _input_size(source) -> int | None:
    """The bytes left to read of ``source`` when it is a regular file (the bar's total); None
    for a pipe, whose end is not known."""
    try:
        fd = source.fileno()
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return None
        return max(st.st_size - os.lseek(fd, 0, os.SEEK_CUR), 0) or None
    except (OSError, ValueError):
        return None
