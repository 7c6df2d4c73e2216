"""Commands: agtrace import."""

from __future__ import annotations

from pathlib import Path

import click

from agtrace.capture import AGENTS, IMPORTERS, ImportError_, import_home, import_paths

from .errors import UserError
from .main import pass_ctx
from .output import echo_json, progress, warn


@click.command("import")
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--from", "agent", type=click.Choice(AGENTS), default=None,
              help="Import what is new in this agent's own home instead of PATHS: claude "
                   "($CLAUDE_CONFIG_DIR or ~/.claude)/projects, codex ($CODEX_HOME or ~/.codex)/"
                   "sessions, opencode ($XDG_DATA_HOME or ~/.local/share)/opencode, gemini "
                   "($GEMINI_CLI_HOME or ~)/.gemini/tmp.")
@click.option("--format", "fmt", default="auto", show_default=True,
              type=click.Choice(["auto", *sorted(IMPORTERS)]), help="Source format; auto detects it per source.")
@click.option("--repo", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="The base repository (ISO-Bench): base commit + patch become the final snapshot.")
@click.option("--jobs", "-j", type=int, default=1, show_default=True, help="Import this many sources in parallel.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON result per source.")
@pass_ctx
def import_cmd(ctx, paths, agent, fmt, repo, jobs, as_json) -> None:
    """Import existing traces (agent sessions, saved live streams, trajectories, eval logs) as runs.

    A directory that is not a source itself is searched recursively for sources. Each source is
    imported all or nothing, once: importing it again finds its run; a session that went on
    since is imported as a new run continuing the earlier one (parent_run). Exits 1 when a
    source failed or bad (malformed) records were skipped (they are listed with file and line).
    Records of types a newer tool version wrote are kept raw and reported as a warning; they
    do not change the exit code. Files met in a directory that are no source are reported as
    skipped (exit 0); one named like a trace (.jsonl, .eval, .traj) that no format reads, or
    that cannot be read, failed. Each source succeeds or fails alone. With --json: one result
    per source or skipped file, its outcome imported, skipped or failed (with --from: an object
    with the home, the number of unchanged sources skipped and the results).
    """
    if bool(paths) == bool(agent):
        raise UserError("pass PATHS or --from AGENT (one of them)", 2)
    home = None
    with progress("importing", enabled=not as_json) as update:
        if agent:
            try:
                home = import_home(ctx.store, agent, jobs=max(1, jobs), progress=update)
            except ImportError_ as exc:
                raise UserError(str(exc), 1) from None
            results = home.results
        else:
            results = import_paths(ctx.store, list(paths), fmt=fmt, repo=repo, jobs=max(1, jobs),
                                   progress=update)
    if as_json:
        echo_json(home.to_dict() if home else [r.to_dict() for r in results])
    else:
        if home:
            click.echo(f"{agent}: {', '.join(map(str, home.home.roots))}: {len(results)} new or "
                       f"changed sources, {home.unchanged} unchanged", err=True)
        for r in results:
            if r.error:
                click.echo(f"failed    {r.error}", err=True)
                continue
            if r.skipped:
                click.echo(f"skipped   {r.source}: {r.skipped}", err=True)
                continue
            runs = ", ".join(f"{rid} (continues {r.parents[rid]})" if rid in r.parents else rid
                             for rid in r.runs) or "-"
            existing = f" (already imported: {', '.join(r.existing)})" if r.existing else ""
            click.echo(f"imported  {r.source} [{r.format}] -> {runs}{existing}")
            for bad in r.bad_records:
                click.echo(f"  skipped {bad.location}: {bad.message}", err=True)
            if r.warning():
                warn(f"{r.source}: {r.warning()}")
    counts = {o: sum(1 for r in results if r.outcome == o) for o in ("imported", "skipped", "failed")}
    failed = counts["failed"]
    bad = sum(len(r.bad_records) for r in results)
    if not as_json and len(results) > 1:
        click.echo(f"{counts['imported']} imported, {counts['skipped']} skipped (not sources), {failed} failed",
                   err=True)
    if failed or bad:
        raise UserError(_partly_imported(results, failed, len(results) - counts["skipped"], bad, as_json), 1)


def _partly_imported(results, failed: int, sources: int, bad: int, as_json: bool = False) -> str:
    """The error of an import that failed in part: what failed, where to look, what was kept.
    With ``--json`` the failures and bad records are in the JSON printed, not listed above."""
    said = []
    above = "in the JSON printed" if as_json else "above"
    if failed:
        said.append(f"{failed} of {sources} source{'s' if sources != 1 else ''} failed (named {above}, with why; "
                    "nothing of a failed source is stored)")
    if bad:
        runs = [rid for r in results if r.bad_records for rid in r.runs]
        where = f"`agtrace log {runs[0]} --kind error_occurred`" if len(runs) == 1 else \
            "`agtrace log RUN --kind error_occurred`"
        holders = sum(1 for r in results if r.bad_records)
        said.append(f"{bad} bad record{'s' if bad != 1 else ''} in {holders} source{'s' if holders != 1 else ''} "
                    f"{'were' if bad != 1 else 'was'} skipped (listed {above}; kept raw in the run: {where} shows "
                    "them)")
    rest = "nothing was imported" if failed == sources else "the rest was imported"
    return f"{' and '.join(said)}; {rest}"
