"""Replay commands: `agtrace replay ID --part N` (also the `replay` console script)."""

from __future__ import annotations

import datetime as dt

import click
import msgspec

from agtrace.replay.workspace import materialize, resolve_part

from .main import UserError, pass_ctx


def _parse_time(value: str) -> int:
    try:
        when = dt.datetime.fromisoformat(value)
    except ValueError:
        raise UserError(f"--at-time takes an ISO time such as 2026-11-21T12:04:05, not {value!r}", 2) from None
    if when.tzinfo is None:
        when = when.astimezone()
    return int(when.timestamp() * 1e9)


@click.command("replay")
@click.argument("run")
@click.option("--part", "part", default=None, help="Part number, or `last` (0 = before the first part).")
@click.option("--at-seq", type=int, default=None, help="The last part ended at this event seq.")
@click.option("--at-time", default=None, help="The last part ended at this wall-clock time (ISO).")
@click.option("--out", "out", type=click.Path(file_okay=False), default=None,
              help="Directory to write the repository into (default ./<id>-part-<N>).")
@click.option("--force", is_flag=True, help="Empty a non-empty --out first.")
@click.option("--json", "as_json", is_flag=True, help="Print what part N was as JSON.")
@pass_ctx
def replay_cmd(ctx, run, part, at_seq, at_time, out, force, as_json) -> None:
    """Write the repository exactly as it was after a part, and say what that part was."""
    store = ctx.store
    run_id = store.resolve(run)
    at_time_ns = _parse_time(at_time) if at_time else None
    if part is None and at_seq is None and at_time_ns is None:
        raise UserError("name a part: --part N|last, --at-seq S or --at-time T", 2)
    n = resolve_part(store, run_id, part=part, at_seq=at_seq, at_time_ns=at_time_ns)
    out = out or f"{run_id[:10]}-part-{n}"
    view = materialize(store, run_id, n, out, force=force)
    if as_json:
        click.echo(msgspec.json.encode(view.to_dict()).decode())
        return
    click.echo(f"part {view.part} of {run_id}: {view.kind} {view.title}".rstrip())
    if view.command:
        click.echo(f"  command: {view.command}")
    for c in view.changed:
        click.echo(f"  {c['status']:<9} {c['path']}  +{c['lines_added']} -{c['lines_removed']}")
    if not view.changed:
        click.echo("  no files changed since the previous part")
    if view.tests:
        t = view.tests
        click.echo(f"  tests at this point (part {t['part']}): {t['passed']} passed, {t['failed']} failed, "
                   f"{t['errors']} errors of {t['total']}")
    click.echo(f"wrote tree {view.tree_id} to {view.out} (verified)")


COMMANDS = [replay_cmd]
