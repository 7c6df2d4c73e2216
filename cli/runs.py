"""Commands over stored runs: ls, show, log, verify, reindex, cp (the plumbing new/append/close is
``plumbing.py``)."""

from __future__ import annotations

import itertools
import sys

import click

from agtrace.eventlog import END_STATUSES, KINDS, RunStarted, record_to_json

from .errors import UserError
from .main import pass_ctx
from .options import parse_tags
from .output import clock, duration, echo_json, progress, shorten, summary, table, warn
from .streams import json_text

DEFAULT_LIMIT = 20
"""Runs ``agtrace ls`` shows a person when no ``--limit`` or ``--all`` is given."""


@click.command("ls")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (a list of runs; every matching run unless --limit is given).")
@click.option("--limit", "-n", type=click.IntRange(min=0), default=None, metavar="N",
              help=f"Show the first N runs of the order [default: {DEFAULT_LIMIT}; --json: all].")
@click.option("--all", "show_all", is_flag=True, help="Show every matching run (no limit).")
@click.option("--agent", default=None, help="Only runs of this agent (a glob such as 'claude*' works).")
@click.option("--model", default=None, help="Only runs of this model (a glob works).")
@click.option("--task", default=None, help="Only runs of this task id (a glob such as 'swe/*' works).")
@click.option("--status", default=None,
              type=click.Choice([*END_STATUSES, "running", "open", "unknown", "damaged", "newer-format"]), help="Only runs with this (live) status.")
@click.option("--since", default=None, metavar="WHEN",
              help="Only runs started since WHEN: an ISO date/time (UTC unless it names a zone) or an age "
                   "(30m, 3h, 2d, 1w).")
@click.option("--tag", "tags", multiple=True, metavar="K=V", help="Only runs with this tag (repeatable; all must match).")
@click.option("--sort", type=click.Choice(["started", "duration", "parts", "tokens"]), default="started",
              show_default=True, help="Sort key, largest first (newest, longest, most parts, most tokens); "
              "the limit applies after sorting.")
@click.option("--reverse", is_flag=True, help="Sort ascending (oldest, shortest, fewest first).")
@click.option("--remote", "remote_url", default=None, metavar="URL",
              help="List what this remote holds instead (s3://… or file://…): per run its events, segments, "
                   "bundles, size, and whether this store has it.")
@pass_ctx
def ls_cmd(ctx, as_json: bool, limit: int | None, show_all: bool, agent, model, task, status, since, tags,
           sort, reverse, remote_url) -> None:
    """List runs, newest first: id, agent, model, task, status, parts, tokens, duration, started."""
    from agtrace.replay import parse_since, query_runs

    if remote_url:
        from .remote_cmds import ls_remote

        return ls_remote(ctx, remote_url, as_json)

    try:
        since_ns = parse_since(since) if since else None
    except ValueError as exc:
        raise UserError(str(exc), 2) from None
    if show_all and limit is not None:
        raise UserError("give --limit N or --all, not both", 2)
    if limit is None and not show_all and not as_json:
        limit = DEFAULT_LIMIT
    page = query_runs(ctx.store, agent=agent, model=model, task=task, status=status, since_ns=since_ns,
                      tags=parse_tags(tags), sort=sort, reverse=reverse, limit=None if show_all else limit,
                      costs=as_json)
    runs = page.rows
    if as_json:
        echo_json([r.to_dict() for r in runs])
        return
    if not runs:
        filtered = any((agent, model, task, status, since, tags))
        if page.matched:
            click.echo(f"{page.matched} runs match; --limit 0 shows none of them")
        else:
            click.echo("no runs match" if filtered else f"no runs in {ctx.store.root}; try `agtrace demo`")
        return
    rows = [
        [r.info.id, r.info.agent or "-", shorten(r.info.model or "-", 28), shorten(r.info.task_id or "-", 32),
         r.info.status, r.info.parts, "-" if r.tokens is None else f"{r.tokens:,}", duration(r.info.duration_s),
         clock(r.info.started_at)]
        for r in runs
    ]
    click.echo(table(rows, ["ID", "AGENT", "MODEL", "TASK", "STATUS", "PARTS", "TOKENS", "DURATION", "STARTED"]))
    if page.more:
        click.echo(f"… {page.more} more (of {page.matched}); --limit N or --all shows them")
    for r in runs:
        for problem in r.info.projection_errors:
            warn(problem)


SHOWN_PARTS = 10
"""`show` lists a run's last parts; `--parts` lists them all."""


@click.command("show")
@click.argument("run")
@click.option("--parts", "all_parts", is_flag=True,
              help=f"List every part (default: the last {SHOWN_PARTS}); with --json, add them as `part_list`.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def show_cmd(ctx, run: str, all_parts: bool, as_json: bool) -> None:
    """Show one run: identity, status, counts, parts."""
    store = ctx.store
    run_id = store.resolve(run)
    info = store.info(run_id)
    first = next(store.read(run_id, 1, 1), None)
    started = first.event if first and isinstance(first.event, RunStarted) else RunStarted()
    data = info.to_dict()
    data.update(
        agent_version=started.agent_version,
        task_prompt=started.prompt,
        repo=started.repo,
        base_commit=started.base_commit,
        workdir=started.workdir,
        command=started.command,
        host=started.host,
        source=started.source,
    )
    from agtrace.eventlog import run_costs, run_notes

    from .output import cost_line

    cost = run_costs(store, [run_id])[run_id]
    data["cost"] = cost.cost_object()
    data["notes"] = run_notes(store, run_id)
    rows = [r for r in store.catalog.part_rows(run_id) if r["kind"] is not None] if all_parts or not as_json else []
    if as_json:
        if all_parts:
            data["part_list"] = [{k: r[k] for k in ("part", "kind", "title", "tool", "tree_id", "first_seq", "last_seq")}
                                 for r in rows]
        echo_json(data)
        return
    for problem in info.projection_errors:
        warn(problem)
    for key in ("id", "agent", "agent_version", "model", "status", "reason", "task_id", "repo", "base_commit",
                "workdir", "host", "parent_run", "parts", "events", "exit_code"):
        value = data.get(key)
        if value not in (None, "", [], {}):
            click.echo(f"{key + ':':<15}{value}")
    click.echo(f"{'started:':<15}{clock(info.started_at)}")
    early = info.ended_at is not None and info.started_at is not None and info.ended_at < info.started_at
    click.echo(f"{'ended:':<15}{clock(info.ended_at)}" + ("  (before it started: its events were appended with the "
                                                          "times of another run; `agtrace cp` keeps a copy's times)"
                                                          if early else ""))
    click.echo(f"{'duration:':<15}{duration(info.duration_s)}")
    click.echo(f"{'cost:':<15}{cost_line(cost)}")
    if data["tags"]:
        click.echo(f"{'tags:':<15}{' '.join(f'{k}={v}' for k, v in data['tags'].items())}")
    if started.prompt:
        click.echo(f"{'task:':<15}{shorten(started.prompt, 90)}")
    for note in data["notes"]:
        about = "run" if note["part"] is None else f"part {note['part']}"
        click.echo(f"{'note:':<15}[{about}] {shorten(note['text'], 80)} ({note['author'] or '?'}, {clock(note['ts'])})")
    shown = rows if all_parts else rows[-SHOWN_PARTS:]
    if shown:
        hidden = len(rows) - len(shown)
        click.echo("parts:" + (f" (the last {len(shown)}; `agtrace show {ctx.short_id(run_id)} --parts` lists all {len(rows)})"
                               if hidden else ""))
        for r in shown:
            tool = f" [{r['tool']}]" if r["tool"] else ""
            click.echo(f"  {r['part']:>5}  {r['kind'] or '-':<9} {shorten(r['title'] or '', 70)}{tool}")


@click.command("log")
@click.argument("run")
@click.option("--part", "--parts", "part", default=None, metavar="PARTS",
              help="Only the events of these parts: N, first, last, all, a range 3-7 or a list 1,4,9.")
@click.option("--kind", "kinds", multiple=True, type=click.Choice(sorted(KINDS)), help="Only events of this kind (repeatable).")
@click.option("--follow", "-f", is_flag=True, help="Keep printing events as a live run appends them.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines, one event each (what `append` reads).")
@pass_ctx
def log_cmd(ctx, run: str, part: str | None, kinds: tuple[str, ...], follow: bool, as_json: bool) -> None:
    """Print a run's events (or one part's), human-readable or as JSON lines.

    Scores (`agtrace rescore`) are kept apart from the run's events, in their own stream with
    their own seqs: `--kind scored` prints them after the events (with --part, the scores of
    those parts' trees, a final tree's under the last part; with --follow, once the run has
    ended, and new ones while a rescore of the run writes them)."""
    store = ctx.store
    run_id = store.resolve(run)
    parts = None
    if part is not None:
        from agtrace.replay import resolve_parts

        parts = resolve_parts(store, run_id, part, unfinished=True)
        records = _read_parts(store, run_id, parts)
    elif follow:
        records = store.tail(run_id)
    else:
        records = store.read(run_id)
    if "scored" in kinds:  # after the events; followed while a rescore writes them
        scores = store.tail(run_id, stream="scores") if follow and parts is None else _scores(store, run_id, parts)
        records = itertools.chain(records, scores)
    out = sys.stdout
    for rec in records:
        if kinds and rec.kind not in kinds:
            continue
        if as_json:
            out.write(json_text(record_to_json(rec)))
            out.write("\n")
        else:
            out.write(summary(rec, 160) + "\n")
        if follow:
            out.flush()


def _scores(store, run_id: str, parts: list[int] | None):
    """The run's ``scored`` records (the scores stream), of ``parts`` when given."""
    wanted = None if parts is None else set(parts)
    return (r for r in store.read(run_id, stream="scores")
            if wanted is None or getattr(r.event, "scored_part", None) in wanted)


def _read_parts(store, run_id: str, parts: list[int]):
    """The events of ``parts`` (ascending), read by seq range from the catalog."""
    wanted = set(parts)
    rows = [store.catalog.part_row(run_id, p) for p in parts]
    first = min(r["first_seq"] for r in rows)
    last = max(r["last_seq"] for r in rows)
    if len(parts) == 1 or last - first < 4 * sum(r["last_seq"] - r["first_seq"] + 1 for r in rows):
        return (r for r in store.read(run_id, first, last) if r.part in wanted)
    return (r for p in parts for r in store.read_part(run_id, p))


@click.command("verify")
@click.argument("run", required=False)
@click.option("--secrets", is_flag=True,
              help="Also look for secrets stored before today's rules or under another environment: every "
                   "event, score, blob and recorded file, with this environment's secret values in every "
                   "form; name where (never the secret). Exit 1 when one is found.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON (per run: problems, replayable parts).")
@pass_ctx
def verify_cmd(ctx, run: str | None, secrets: bool, as_json: bool) -> None:
    """Check one run (or all): every frame and blob, that no segment, event or run_ended is
    missing, and the snapshot trees in repo.git and the bundles; name what is damaged and which
    parts can still be replayed. Exit 1 when anything is wrong.

    With --secrets, also look again at everything the runs keep with today's redaction and
    credential rules and the secret-named variables of this environment (runs keep what the
    rules of their day let through)."""
    store = ctx.store
    run_id = store.resolve(run) if run is not None else None
    with progress("verifying") as update:
        report = store.verify(run_id, progress=update)
    stored = _stored_secrets(store, [run_id] if run_id else store.run_ids()) if secrets else []
    if as_json:
        echo_json({**report.to_dict(), **({"secrets": [s.to_dict() for s in stored]} if secrets else {})})
    else:
        counts = [(report.runs, "run"), (report.segments, "segment"), (report.frames, "frame"), (report.events, "event"),
                  (report.scores, "score"), (report.blobs, "blob reference"), (report.trees, "tree")]
        copies = f" ({report.tree_checks:,} tree copies: in repo.git and in the bundles)"  # a tree is checked in each
        click.echo(", ".join(f"{n:,} {word}{'' if n == 1 else 's'}" for n, word in counts) + " checked"
                   + (copies if report.tree_checks > report.trees else ""))
        unreplayable = [c for c in report.checks if c.ok and c.not_replayable and not c.replayable]
        if run_id is None and unreplayable:
            click.echo(f"{len(unreplayable)} run(s) intact but with no part to replay (imported or copied without "
                       "repository state, or captured without a workdir); `agtrace verify RUN` says why")
        for check in report.checks:
            if check.ok:
                if run_id is not None and check.not_replayable:
                    by_reason: dict[str, list[int]] = {}
                    for part, why in sorted(check.not_replayable.items()):
                        by_reason.setdefault(why, []).append(part)
                    for why, parts in by_reason.items():
                        click.echo(f"run {check.run_id}: parts {_spans(parts)} cannot be replayed: {why}")
                continue
            said = [f"{len(check.problems)} problem(s)"] if check.problems else []
            said += [f"{len(check.newer)} segment(s) of a newer format"] if check.newer else []
            click.echo(f"run {check.run_id}: {', '.join(said)}; readable up to seq "
                       f"{check.last_seq}; parts that replay: {_spans(check.replayable) or 'none'}", err=True)
            for problem in check.problems:
                click.echo(f"  bad: {problem}", err=True)
            for newer in check.newer:
                click.echo(f"  newer: {newer}", err=True)
            for part, why in sorted(check.not_replayable.items()):
                click.echo(f"  part {part} cannot be replayed: {why}", err=True)
    if not as_json and secrets:
        _say_stored_secrets(stored, whole=report.ok and not report.newer)
    if not report.problems and report.newer:
        raise UserError(f"{len(report.newer)} segment(s) were written by a newer version of agtrace and were not "
                        f"checked (nothing this version can read is damaged); the first: {report.newer[0]}", 1)
    if not report.ok:
        raise UserError(f"{len(report.problems)} problem(s); the first: {report.problems[0]}. "
                        "Restore damaged segments and bundles from a remote that has them whole "
                        "(`agtrace pull RUN --remote URL` replaces them and keeps the damaged files as "
                        "NAME.damaged-<ns>) or from another copy of the store", 1)
    _refuse_stored_secrets(stored)


def _stored_secrets(store, run_ids: list[str]) -> list:
    import os

    from agtrace.replay import find_stored_secrets

    with progress("looking for stored secrets") as update:
        return find_stored_secrets(store, run_ids, os.environ, progress=update)


def _say_stored_secrets(stored: list, *, whole: bool) -> None:
    if not stored:
        read = "" if whole else " in what could be read (the rest is named above)"
        click.echo(f"no stored secret found{read} (today's rules, this environment's secret values)")
        return
    runs: dict[str, list] = {}
    for found in stored:
        runs.setdefault(found.run_id, []).append(found)
    for run_id, places in runs.items():
        click.echo(f"run {run_id}: a secret in {len(places)} place(s), by today's rules:", err=True)
        for found in places:
            click.echo(f"  secret: {found.describe()}", err=True)


def _refuse_stored_secrets(stored: list) -> None:
    if not stored:
        return
    first = stored[0].run_id
    runs = {found.run_id for found in stored}
    raise UserError(f"{len(stored)} stored secret(s) in {len(runs)} run(s) (recorded before today's rules, or "
                    "captured where that secret was not in the environment). Rotate the secret; then remove the "
                    f"run (`agtrace rm {first}`), or for an imported run remove it and import its source again "
                    "(today's rules redact it); copies pushed to a remote keep it until removed there", 1)


def _spans(parts: list[int]) -> str:
    """``0-3, 5, 7-9`` for [0, 1, 2, 3, 5, 7, 8, 9]."""
    out, start = [], None
    for i, p in enumerate(parts):
        if start is None:
            start = p
        if i + 1 == len(parts) or parts[i + 1] != p + 1:
            out.append(str(start) if start == p else f"{start}-{p}")
            start = None
    return ", ".join(out)


@click.command("reindex")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def reindex_cmd(ctx, as_json: bool) -> None:
    """Delete the catalog and rebuild every projection (runs, parts, metrics, scores) and the
    segment rows from the segments."""
    store = ctx.store
    with progress("reindexing") as update:
        n = store.reindex(progress=update)
    names = [p.name for p in store.projections]
    errors = [str(e) for e in store.catalog.errors()]
    if as_json:
        echo_json({"runs": n, "projections": names, "projection_errors": errors})
        return
    click.echo(f"reindexed {n:,} run{'' if n == 1 else 's'} ({', '.join(names)})")
    for problem in errors:
        warn(problem)


@click.command("cp")
@click.argument("run")
@click.option("--tag", "tags", multiple=True, metavar="K=V", help="A tag for the copy (repeatable).")
@click.option("--to", "to", default=None, metavar="DIR",
              help="Copy into the store at DIR (created if missing) instead of this one.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def cp_cmd(ctx, run: str, tags, to: str | None, as_json: bool) -> None:
    """Copy a run whole as a new run: events, scores, repository state; print the copy's id.

    The copy keeps every event's timestamp and part, has one run_started (the source's,
    tagged copied_from=SOURCE) and replays and diffs like the source. `agtrace log --json |
    agtrace append` copies events only (no repository state).
    """
    from agtrace.eventlog import copy_run

    store = ctx.store
    run_id = store.resolve(run)
    ctx.refuse_inside_store(to, "--to", itself_ok=True)
    into = ctx.open_store(to) if to else None
    notes: list[str] = []
    try:
        with progress(f"copying {ctx.short_id(run_id)}", enabled=not as_json) as update:
            new_id = copy_run(store, run_id, into=into, tags=parse_tags(tags), progress=update, notice=notes.append)
    except OSError as exc:
        if into is not None and exc.filename is None:  # a write that found no room names no file:
            exc.filename = str(into.root)  # it is the other store's (the source is only read)
        raise
    finally:
        if into is not None:
            into.close()
    for note in notes:
        warn(note)
    if as_json:
        echo_json({"id": new_id, "copied_from": run_id, "store": str(into.root if into else store.root),
                   "finished_earlier_copy": bool(notes)})
    else:
        click.echo(new_id)
