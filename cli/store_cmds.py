"""Commands that keep a store (or a remote) small: `agtrace rm`, `agtrace gc` — glue around
:func:`agtrace.eventlog.remove_runs`, ``select_runs``, ``remove_remote_runs`` and
``collect_garbage``."""

from __future__ import annotations

import sys
import time

import click

from .errors import UserError
from .main import pass_ctx
from .output import echo_json, progress, size


def _age_s(value: str, option: str = "--older-than") -> float:
    from agtrace.replay import parse_since

    try:
        bound = parse_since(value)
    except ValueError as exc:
        raise UserError(str(exc).replace("--since", option), 2) from None
    return max(time.time_ns() - bound, 0) / 1e9


def _confirm(what: str, yes: bool) -> None:
    """Go on only with --yes, or after a "y" at a terminal; never ask when stdin is not one."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise UserError(f"not removing {what} without --yes (stdin is not a terminal, so nothing was asked); "
                        "pass --yes to remove them, or --dry-run to list them", 2)
    if not click.confirm(f"remove {what}?", default=False, err=True):
        raise UserError("nothing removed", 1)


@click.command("rm")
@click.argument("run_ids", nargs=-1, metavar="[ID…]")
@click.option("--older-than", "older_than", default=None, metavar="AGE",
              help="Retention: runs started more than AGE ago (30m, 3h, 2d, 1w), or before an ISO date "
                   "(UTC unless it names a zone).")
@click.option("--keep", type=int, default=None, metavar="N",
              help="Retention: all runs but the newest N (with --older-than: runs matching both).")
@click.option("--remote", "remote_url", default=None, metavar="URL",
              help="Remove the runs from this remote (s3://… or file://…) instead of the store; never "
                   "taken from AGTRACE_REMOTE. Blobs on the remote stay: `agtrace gc --remote URL`.")
@click.option("--dry-run", is_flag=True, help="List what would be removed, and its size; remove nothing.")
@click.option("--yes", "-y", is_flag=True, help="Remove without asking (required when stdin is not a terminal).")
@click.option("--json", "as_json", is_flag=True, help="Print what was removed as JSON.")
@pass_ctx
def rm_cmd(ctx, run_ids, older_than, keep, remote_url, dry_run, yes, as_json) -> None:
    """Remove runs (by id, or by --older-than/--keep) from the store, or with --remote from a remote.

    Asks at a terminal; elsewhere it needs --yes. A run being written is refused. Removing runs
    frees their segments and repositories at once; blobs only they referenced go with
    `agtrace gc`.
    """
    if run_ids and (older_than or keep is not None):
        raise UserError("give run ids or a retention rule (--older-than, --keep), not both", 2)
    if not run_ids and not older_than and keep is None:
        raise UserError("name the runs to remove (ID…), or a retention rule: --older-than AGE, --keep N", 2)
    age_s = _age_s(older_than) if older_than else None
    if remote_url:
        return _rm_remote(ctx, remote_url, run_ids, age_s, keep, dry_run, yes, as_json)
    from agtrace.eventlog import remove_runs, select_runs

    store = ctx.store
    ids = [store.resolve(r) for r in run_ids] if run_ids else select_runs(store, older_than_s=age_s, keep=keep)
    with progress(f"sizing {len(ids)} run(s)", enabled=not as_json) as update:
        planned = remove_runs(store, ids, dry_run=True, progress=update)
    if not ids:
        _report(planned.to_dict(), f"no runs to remove in {store.root}", as_json)
        return
    if not dry_run:
        _confirm(f"{len(ids)} run(s) ({size(planned.bytes)}) from {store.root}", yes)
        with progress(f"removing {len(ids)} run(s)", enabled=not as_json) as update:
            planned = remove_runs(store, ids, progress=update)
    verb = "would remove" if dry_run else "removed"
    _report(planned.to_dict(), f"{verb} {len(ids)} run(s) ({size(planned.bytes)}) from {store.root}"
            + ("" if dry_run else "; `agtrace gc` frees the blobs only they referenced"), as_json, ids)


def _rm_remote(ctx, url, run_ids, age_s, keep, dry_run, yes, as_json) -> None:
    from agtrace.eventlog import list_remote_runs, remove_remote_runs, resolve_remote

    from .remote_cmds import next_step

    with next_step("rm --remote again removes what is left"), ctx.remote(url) as remote:
        held = list_remote_runs(remote)
        if run_ids:
            ids = [resolve_remote(remote, r, held) for r in run_ids]
        else:
            newest_first = sorted(held, key=lambda r: r.id, reverse=True)
            picked = newest_first[max(keep, 0):] if keep is not None else newest_first
            if age_s is not None:
                cutoff = time.time_ns() - int(age_s * 1e9)
                picked = [r for r in picked if (r.started_at or 0) < cutoff]
            ids = sorted(r.id for r in picked)
        with progress(f"listing {len(ids)} run(s) on the remote", enabled=not as_json) as update:
            planned = remove_remote_runs(remote, ids, dry_run=True, progress=update)
        if not ids:
            _report(planned.to_dict(), f"no runs to remove on {remote.url}", as_json)
            return
        if not dry_run:
            _confirm(f"{len(ids)} run(s) ({planned.objects} objects, {size(planned.bytes)}) from {remote.url}", yes)
            with progress(f"removing {len(ids)} run(s) from the remote", enabled=not as_json) as update:
                planned = remove_remote_runs(remote, ids, progress=update)
    verb = "would remove" if dry_run else "removed"
    _report(planned.to_dict(), f"{verb} {len(ids)} run(s) ({planned.objects} objects, {size(planned.bytes)}) "
            f"from {remote.url}; blobs stay (other runs may share them): `agtrace gc --remote {remote.url}` "
            "collects those no run references", as_json, ids)


def _report(data: dict, line: str, as_json: bool, ids=()) -> None:
    if as_json:
        echo_json(data)
        return
    for rid in ids:
        click.echo(f"  {rid}")
    click.echo(line)


@click.command("gc")
@click.option("--remote", "remote_url", default=None, metavar="URL",
              help="Collect the blobs no run on this remote (s3://… or file://…) references, instead of the "
                   "store's garbage; never taken from AGTRACE_REMOTE.")
@click.option("--min-age", "min_age", default="1d", show_default=True, metavar="AGE",
              help="With --remote: keep unreferenced blobs younger than AGE (30m, 3h, 2d): a push may be "
                   "sending the run that references them.")
@click.option("--dry-run", is_flag=True, help="List what would be removed or packed, and its size; change nothing.")
@click.option("--yes", "-y", is_flag=True, help="With --remote: delete without asking (required when stdin is not "
              "a terminal), as `rm`.")
@click.option("--json", "as_json", is_flag=True, help="Print what was collected as JSON.")
@pass_ctx
def gc_cmd(ctx, remote_url, min_age, dry_run, yes, as_json) -> None:
    """Collect what no run needs: unreferenced blobs, caches of removed runs, leftovers of
    interrupted imports, transfers and bundle writes; pack ended runs' repositories.

    Never removes anything a run references; while a run is being written, recent blobs are kept;
    while one is being imported, copied or pulled, every unreferenced blob is.
    With --remote it deletes the remote's blobs that no run on it references (what `agtrace rm
    --remote` leaves), reading each run's manifests and the segments they do not list; like
    `rm`, it asks at a terminal and elsewhere needs --yes.
    """
    if remote_url:
        return _gc_remote(ctx, remote_url, _age_s(min_age, "--min-age"), dry_run, yes, as_json)
    if yes:
        raise UserError("--yes applies with --remote only (the store's own gc removes only what no run needs "
                        "and does not ask): drop --yes, or add --remote URL", 2)
    if click.get_current_context().get_parameter_source("min_age") is not click.core.ParameterSource.DEFAULT:
        raise UserError("--min-age applies with --remote only; the store's own gc keeps unreferenced blobs "
                        "younger than an hour: drop --min-age, or add --remote URL", 2)
    from agtrace.eventlog import collect_garbage

    with progress("collecting") as update:
        report = collect_garbage(ctx.store, dry_run=dry_run, progress=update)
    if as_json:
        echo_json(report.to_dict())
        return
    if dry_run:
        for item in report.items:
            click.echo(f"  {item['kind']:<10} {size(item['bytes']):>9}  {item['path']}")
    counts = report.counts()
    names = {"blob": "unreferenced blob(s)", "cache": "cache(s) of removed runs", "checkout": "replay record(s)",
             "staging": "leftover(s) of interrupted work",
             "repository": "repository(ies) with unreachable objects pruned and packed"}
    said = ", ".join(f"{n} {names[k]}" for k, n in sorted(counts.items())) or "nothing to collect"
    verb = "would free" if dry_run else "freed"
    click.echo(f"{said}; {verb} {size(report.bytes)} in {ctx.store.root}")
    if report.kept_recent_blobs:
        click.echo(f"kept {report.kept_recent_blobs} unreferenced blob(s) younger than an hour: a run is being "
                   "written and may reference them yet", err=True)
    if report.kept_building_blobs:
        click.echo(f"kept {report.kept_building_blobs} unreferenced blob(s): a run is being imported, copied or "
                   f"pulled into {ctx.store.root} and may reference them; run `agtrace gc` again once it has ended",
                   err=True)


def _gc_remote(ctx, url: str, min_age_s: float, dry_run: bool, yes: bool, as_json: bool) -> None:
    """Plan (a dry run), ask as `rm` does, then delete what was planned and is still garbage."""
    from agtrace.eventlog import collect_remote_garbage

    from .remote_cmds import next_step

    with next_step("gc --remote again collects what is left"), ctx.remote(url) as remote:
        with progress("reading the runs on the remote") as update:
            report = collect_remote_garbage(remote, min_age_s=min_age_s, dry_run=True, progress=update)
        if report.removed and not dry_run:
            if not yes and not as_json:
                for key in report.removed:
                    click.echo(f"  {key}", err=True)
            _confirm(f"{len(report.removed)} unreferenced blob(s) ({size(report.bytes)}) from {report.url}", yes)
            with progress("reading the runs on the remote again") as update:
                report = collect_remote_garbage(remote, min_age_s=min_age_s, among=set(report.removed),
                                                progress=update)
    if as_json:
        echo_json(report.to_dict())
        return
    if dry_run:
        for key in report.removed:
            click.echo(f"  {key}")
    verb = "would remove" if dry_run else "removed"
    click.echo(f"{verb} {len(report.removed)} unreferenced blob(s) ({size(report.bytes)}) from {report.url}; "
               f"{report.referenced} of {report.blobs} blob(s) are referenced by its {report.runs} run(s)")
    if report.kept_recent:
        click.echo(f"kept {report.kept_recent} unreferenced blob(s) younger than --min-age: a push may be sending "
                   "the run that references them", err=True)
    for problem in report.problems:
        click.echo(f"warning: {problem}", err=True)
