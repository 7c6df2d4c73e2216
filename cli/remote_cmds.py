"""Commands: agtrace push, pull, ls --remote — glue around :func:`agtrace.eventlog.push`, ``pull``
and ``list_remote_runs``."""

from __future__ import annotations

from contextlib import contextmanager

import click

from agtrace.eventlog import pull, push

from .errors import UserError
from .main import pass_ctx
from .output import echo_json, progress, size

_REMOTE = click.option(
    "--remote", "remote_url", envvar="AGTRACE_REMOTE", default=None, metavar="URL",
    help="s3://bucket/prefix or file:///dir (env AGTRACE_REMOTE). S3 reads AGTRACE_S3_ENDPOINT and "
         "AGTRACE_S3_PROFILE for S3-compatible stores and named profiles.",
)


@contextmanager
def next_step(step: str):
    """Add this command's next step to the error of a remote that could not be reached (the
    backend's message cannot know which command failed: it said "a retried push resumes" on a
    failed `pull` and `ls --remote` too)."""
    from agtrace.eventlog import RemoteUnreachable

    try:
        yield
    except RemoteUnreachable as exc:
        raise UserError(f"{exc}; {step}") from None


def _ids(store, run_ids: tuple[str, ...], all_runs: bool, verb: str) -> list[str] | None:
    if all_runs and run_ids:
        raise UserError(f"give run ids or --all, not both ({verb})", 2)
    if not all_runs and not run_ids:
        raise UserError(f"name the runs to {verb} (ID…) or pass --all", 2)
    return None if all_runs else run_ids


@click.command("push")
@click.argument("run_ids", nargs=-1, metavar="[ID…]")
@click.option("--all", "all_runs", is_flag=True, help="Push every run of the store.")
@_REMOTE
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@pass_ctx
def push_cmd(ctx, run_ids, all_runs, remote_url, as_json) -> None:
    """Upload runs' sealed segments, bundles and blobs to a remote.

    Never overwrites an object and never uploads the open segment; pushing again uploads only
    what is new, and an interrupted push resumes where it stopped.
    """
    store = ctx.store
    ids = _ids(store, run_ids, all_runs, "push")
    ids = [store.resolve(r) for r in ids] if ids is not None else None
    with next_step("what was uploaded stays: pushing again resumes where it stopped"), \
            ctx.remote(remote_url) as remote, progress("pushing") as update:
        report = push(store, remote, ids, progress=update)
    if as_json:
        echo_json(report.to_dict())
        _refuse_damaged(report)
        return
    said = [f"{report.uploaded} object(s) uploaded ({size(report.bytes_uploaded)})",
            f"{report.existed} already there"]
    if report.shared:
        said.append(f"{report.shared} blob(s) another run of this push had already sent")
    if report.resumed_parts:
        said.append(f"{report.resumed_parts} part(s) of interrupted uploads reused")
    click.echo(f"pushed {len(report.runs)} run(s) to {remote.url}: {', '.join(said)}")
    if report.skipped:
        runs = ", ".join(report.skipped_runs[:3]) + (" …" if len(report.skipped_runs) > 3 else "")
        click.echo(f"skipped {report.skipped} open segment(s) (runs {runs}: still being written, or "
                   "crashed before sealing them); push again once they end", err=True)
    for problem in report.problems:
        click.echo(f"problem: {problem}", err=True)
    _refuse_damaged(report)


def _refuse_damaged(report) -> None:
    """Exit 1 when push left damaged files behind (a remote copy can never be replaced)."""
    if report.ok:
        return
    from agtrace.eventlog import NEWER_WORDS

    newer = [p for p in report.problems if NEWER_WORDS in p]
    damaged = [p for p in report.problems if NEWER_WORDS not in p]
    said = []
    if damaged:
        runs = sorted({p.rsplit("/runs/", 1)[1].split("/", 1)[0] for p in damaged if "/runs/" in p})
        verify = f"`agtrace verify {runs[0]}`" if len(runs) == 1 else "`agtrace verify`"
        said.append(f"{len(damaged)} damaged file(s) were not pushed and their run got no manifest; repair the "
                    f"store first ({verify} shows what is damaged; restore the file from another copy of the "
                    "store), then push again")
    if newer:
        said.append(f"{len(newer)} segment(s) {NEWER_WORDS} were not pushed and their run got no manifest "
                    "(this version cannot check them); push them with that version")
    raise UserError("; ".join(said), 1)


def ls_remote(ctx, url: str, as_json: bool) -> None:
    """`agtrace ls --remote URL`: the runs a remote holds, and which of them this store has."""
    from agtrace.eventlog import list_remote_runs

    from .output import clock, table

    strays: dict[str, int] = {}
    with next_step("nothing was read: list again once the endpoint answers"), ctx.remote(url) as remote:
        runs = list_remote_runs(remote, strays)
    store = ctx.store_or_none()
    local = set(store.run_ids()) if store is not None else set()
    if as_json:
        echo_json([{**r.to_dict(), "local": r.id in local} for r in runs])
        return
    if strays:
        shown = ", ".join(f"runs/{name[:40]}/" for name in sorted(strays)[:3])
        click.echo(f"{sum(strays.values())} key(s) under {len(strays)} folder(s) of runs/ that name no run ({shown}"
                   f"{', …' if len(strays) > 3 else ''}) not counted; `pull --all` names and ignores them", err=True)
    if not runs:
        click.echo(f"no runs on {remote.url}; `agtrace push --all --remote {remote.url}` puts this store's there")
        return
    rows = [[r.id, clock(r.started_at), r.last_seq, r.segments, r.bundles, size(r.bytes),
             "yes" if r.manifest else "no", "yes" if r.id in local else "no"] for r in runs]
    click.echo(table(rows, ["ID", "STARTED", "EVENTS", "SEGMENTS", "BUNDLES", "SIZE", "MANIFEST", "LOCAL"]))
    click.echo(f"{len(runs)} run(s), {size(sum(r.bytes for r in runs))} on {remote.url} (blobs not counted)")
    for r in runs:
        if r.off_layout:
            click.echo(f"{r.off_layout} key(s) off the key layout under runs/{r.id}/ not counted "
                       f"({size(r.off_layout_bytes)}); `pull` names and ignores them")


@click.command("pull")
@click.argument("run_ids", nargs=-1, metavar="[ID…]")
@click.option("--all", "all_runs", is_flag=True, help="Pull every run the remote holds.")
@_REMOTE
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@pass_ctx
def pull_cmd(ctx, run_ids, all_runs, remote_url, as_json) -> None:
    """Download runs from a remote, verify every frame and checksum, and index them.

    Runs are named by id or a unique prefix of an id the remote holds. A local file is
    replaced only when it is damaged and the remote copy is whole (the damaged file is kept
    as NAME.damaged-<ns>); what cannot be pulled is reported and the exit code is 1.
    """
    import os

    made = [] if os.path.exists(ctx.store_path) else _missing_dirs(ctx.store_path)
    try:
        _pull(ctx, run_ids, all_runs, remote_url, as_json)
    except BaseException:
        if made:
            _remove_new_store(ctx, made)
        raise


def _missing_dirs(path: str) -> list[str]:
    """The directories of ``path`` that do not exist yet, deepest first."""
    import os

    out = []
    path = os.path.abspath(path)
    while not os.path.exists(path):
        out.append(path)
        path = os.path.dirname(path)
    return out


def _remove_new_store(ctx, made: list[str]) -> None:
    """Remove the store a failed pull created (before: an empty store was left at the path),
    unless a run landed in it; then the directories made for it, if empty."""
    import os
    import shutil

    root = made[0]
    runs = os.path.join(root, "runs")
    if os.path.isdir(runs) and os.listdir(runs):
        return
    ctx.close()
    shutil.rmtree(root, ignore_errors=True)
    for parent in made[1:]:
        try:
            os.rmdir(parent)
        except OSError:
            break


def _pull(ctx, run_ids, all_runs, remote_url, as_json) -> None:
    store = ctx.store
    ids = _ids(store, run_ids, all_runs, "pull")
    with next_step("what was verified and renamed into place stays: pulling again resumes"), \
            ctx.remote(remote_url) as remote, progress("pulling") as update:
        if ids is not None:
            from agtrace.eventlog import list_remote_runs, resolve_remote

            held = list_remote_runs(remote)
            ids = [resolve_remote(remote, r, held) for r in ids]
        report = pull(store, remote, ids, progress=update)
    if as_json:
        echo_json(report.to_dict())
    else:
        click.echo(
            f"pulled {len(report.runs)} run(s) from {remote.url}: {report.downloaded} object(s) downloaded "
            f"({size(report.bytes_downloaded)}), {report.present} already here"
        )
        for replaced in report.replaced:
            click.echo(f"replaced: {replaced}", err=True)
        for problem in report.problems:
            click.echo(f"problem: {problem}", err=True)
    if not report.ok:
        if report.retryable == len(report.problems):
            then = "pulling again retries them"
        elif report.retryable:
            then = (f"pulling again retries {report.retryable} of them; the others will not pull as they are: "
                    "each line above says what to do")
        else:
            then = "pulling again will not help: each line above says what to do"
        raise UserError(f"{len(report.problems)} object(s) could not be pulled; see above; {then}")
