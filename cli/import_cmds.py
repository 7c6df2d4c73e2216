"""Commands: agtrace import."""

from __future__ import annotations

from pathlib import Path

import click
import msgspec

from agtrace.capture.importers import IMPORTERS
from agtrace.capture.importers.batch import import_paths

from .main import UserError, pass_ctx
from .output import progress, warn


@click.command("import")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--format", "fmt", default="auto", show_default=True,
              type=click.Choice(["auto", *sorted(IMPORTERS)]), help="Source format; auto detects it per source.")
@click.option("--repo", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="The base repository (ISO-Bench): base commit + patch become the final snapshot.")
@click.option("--jobs", "-j", type=int, default=1, show_default=True, help="Import this many sources in parallel.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON result per source.")
@pass_ctx
def import_cmd(ctx, paths, fmt, repo, jobs, as_json) -> None:
    """Import existing traces (envoi-trace, ISO-Bench, TRAE, agent transcripts) as runs.

    A directory that is not a source itself is read as a directory of sources. Each source is
    imported all or nothing, once: importing it again finds its run. Exits 1 when a source
    failed or bad (malformed) records were skipped (they are listed with file and line).
    Records of types a newer tool version wrote are kept raw and reported as a warning; they
    do not change the exit code.
    """
    with progress("importing", enabled=not as_json) as update:
        results = import_paths(ctx.store, list(paths), fmt=fmt, repo=repo, jobs=max(1, jobs), progress=update)
    if as_json:
        click.echo(msgspec.json.encode([r.to_dict() for r in results]).decode())
    else:
        for r in results:
            if r.error:
                click.echo(f"failed    {r.error}", err=True)
                continue
            runs = ", ".join(r.runs) if r.runs else "-"
            existing = f" (already imported: {', '.join(r.existing)})" if r.existing else ""
            click.echo(f"imported  {r.source} [{r.format}] -> {runs}{existing}")
            for bad in r.bad_records:
                click.echo(f"  skipped {bad.location}: {bad.message}", err=True)
            if r.unknown:
                warn(f"{r.source}: {r.warning()}")
    failed = sum(1 for r in results if r.error)
    bad = sum(len(r.bad_records) for r in results)
    if failed or bad:
        raise UserError(f"{failed} of {len(results)} sources failed and {bad} bad records were skipped; "
                        "the rest was imported", 1)


COMMANDS: list = [import_cmd]
