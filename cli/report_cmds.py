"""Commands: agtrace report, compare — self-contained HTML pages of runs."""

from __future__ import annotations

import errno
import os
import stat
import webbrowser
from pathlib import Path

import click

from agtrace.eventlog import temp_beside
from agtrace.replay import COMPARE_COLUMNS as COLUMNS
from agtrace.replay import compare_runs, render_report

from .errors import UserError
from .main import pass_ctx
from .output import echo_json, progress, table

STDOUT = "-"
"""``-o -``: the page on standard output, and nothing else there."""


def _write(path: str, text: str) -> int:
    """Write the page atomically (temp file, rename), or to standard output for ``-``; return
    its size in bytes. A path that is no regular file (``/dev/null``, a FIFO, a terminal) is
    written into, never replaced by a rename; a symlink keeps pointing where it points and the
    file it names is replaced."""
    data = text.encode()
    if path == STDOUT:
        out = click.get_binary_stream("stdout")
        out.write(data)
        out.flush()
        return len(data)
    target = Path(path)
    try:
        special = not stat.S_ISREG(os.stat(target).st_mode)
    except FileNotFoundError:  # a new file (or a dangling symlink: made where it points)
        special = False
    if special:
        try:
            with open(target, "wb") as fh:
                fh.write(data)
        except OSError as exc:
            raise _unwritable(target, exc) from None
        return len(data)
    target = Path(os.path.realpath(target))
    if not target.parent.exists():
        raise UserError(f"directory {target.parent} does not exist; create it or pick another -o", 2)
    tmp = temp_beside(target)  # this process's own; a killed report's is removed
    try:
        tmp.write_bytes(data)
        os.replace(tmp, target)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise _unwritable(target, exc) from None
        raise
    return len(data)


def _unwritable(target: Path, exc: OSError) -> UserError:
    """The page could not be written: said of the path the user gave (not of a temp file)."""
    why = exc.strerror or str(exc)
    if exc.filename and os.fspath(exc.filename) != os.fspath(target):
        why += f" (writing {exc.filename} beside it, to rename it over)"
    if exc.errno == errno.ENOSPC:
        why += " (the disk is full: free some space, or pick another -o)"
    return UserError(f"cannot write the page to {target}: {why}; nothing else was changed", 1)


def _refuse_with_stdout(out: str | None, **flags: bool) -> None:
    """``-o -`` leaves standard output to the page alone: refuse what would print beside it."""
    given = [name for name, on in flags.items() if on]
    if out == STDOUT and given:
        raise UserError(f"-o - writes the page to standard output; it cannot go with {', '.join(given)}: "
                        "write the page to a file instead", 2)


@click.command("report")
@click.argument("run")
@click.option("-o", "--out", "out", type=click.Path(dir_okay=False, allow_dash=True), default=None,
              help="HTML file to write (default ./<id>-report.html; - writes it to standard output).")
@click.option("--open", "open_", is_flag=True, help="Open the page in the default browser.")
@click.option("--part", "part", default=None, metavar="PART",
              help="Open (and print the link of) the page at this part: N, first or last.")
@click.option("--json", "as_json", is_flag=True, help='Print {"path": ..., "bytes": ...} as JSON.')
@pass_ctx
def report_cmd(ctx, run, out, open_, part, as_json) -> None:
    """Write one run as a self-contained HTML page: header, plots, paged transcript, diffs.

    The page needs no network (it works from disk or an S3 link); `#part-N` opens part N.
    """
    _refuse_with_stdout(out, **{"--json": as_json, "--open": open_, "--part": part is not None})
    store = ctx.store
    run_id = store.resolve(run)
    anchor = ""
    if part is not None:
        from agtrace.replay import resolve_part

        anchor = f"#part-{resolve_part(store, run_id, part=part)}"
    out = out or f"{ctx.short_id(run_id)}-report.html"
    ctx.refuse_inside_store(out, "-o")
    with progress(f"report {run_id}") as update:
        text = render_report(store, run_id, progress=update)
    size = _write(out, text)
    if out == STDOUT:
        return
    path = str(Path(out).resolve())
    link = Path(path).as_uri() + anchor
    if as_json:
        echo_json({"path": path, "bytes": size, **({"link": link} if anchor else {})})
    else:
        click.echo(f"wrote the report of {run_id} to {out} ({size / 1024:,.0f} KiB)")
        if anchor:
            click.echo(f"part: {link}")
    if open_:
        webbrowser.open(link)


@click.command("compare")
@click.argument("runs", nargs=-1, required=True)
@click.option("-o", "--out", "out", type=click.Path(dir_okay=False, allow_dash=True), default=None,
              help="HTML file to write (default ./compare-<A>-vs-<B>.html; with --json only if given; - "
                   "writes it to standard output, and nothing else).")
@click.option("--json", "as_json", is_flag=True,
              help="Print the metrics table as JSON (one object per run; `final_tree_diff` against the first).")
@click.option("--patch", "-p", "show_patch", is_flag=True,
              help="Print the patch between the final trees too, not only its stat.")
@pass_ctx
def compare_cmd(ctx, runs, out, as_json, show_patch) -> None:
    """Compare runs: their curves on shared axes (HTML) and their metrics side by side.

    Every run after the first is also compared with the first by their final trees (the files
    one run's work left that the other's did not): a stat, and with --patch the patch.
    """
    _refuse_with_stdout(out, **{"--json": as_json, "--patch": show_patch})
    store = ctx.store
    run_ids = [store.resolve(r) for r in runs]
    if len(set(run_ids)) != len(run_ids):
        raise UserError("a run is named twice; name each run once", 2)
    with progress("compare") as update:
        comparison = compare_runs(store, run_ids, progress=update)
    rows = comparison.rows
    if as_json and not out:
        echo_json(rows)
        return
    out = out or _compare_name(ctx, run_ids)
    ctx.refuse_inside_store(out, "-o")
    size = _write(out, comparison.html())
    if out == STDOUT:
        return
    if as_json:
        echo_json(rows)
        return
    keys = [k for k, _ in COLUMNS if k in ("id", "agent", "model", "status", "parts", "duration_s", "tokens",
                                              "cost", "tests_final_passed", "tests_final_total",
                                              "tests_best_passed")]
    click.echo(table([[_short(k, r.get(k)) for k in keys] for r in rows], keys))
    names = sorted({name for r in rows for name in r.get("scorers", {})})
    if names:
        click.echo(table([[name, *(_scorer_cell(r.get("scorers", {}).get(name)) for r in rows)] for name in names],
                         ["SCORER (last part or final tree)", *(ctx.short_id(r["id"]) for r in rows)]))
    for diff in comparison.tree_diffs:
        click.echo(f"\nfinal tree of {ctx.short_id(diff.run_b)} against {ctx.short_id(diff.run_a)}:")
        if diff.reason:
            click.echo(f"  {diff.reason}")
        elif not diff.files:
            click.echo("  identical")
        else:
            click.echo(diff.stat(), nl=False)
            if show_patch:
                click.echo(diff.patch(), nl=False)
    click.echo(f"wrote the comparison to {out} ({size / 1024:,.0f} KiB)")


def _scorer_cell(result: dict | None) -> str:
    if result is None:
        return "-"
    at = "final" if result["final"] else result["part"]
    if result["status"] != "ok":
        return f"{result['status']} @{at}"
    value = "-" if result["value"] is None else f"{result['value']:.3f}"
    return f"{value} @{at}"


def _short(key: str, value) -> str:
    if value is None:
        return "-"
    if key == "duration_s":
        return f"{value:.1f}s"
    if key == "cost_usd":
        return f"${value:.4f}"
    if key == "cost":
        return value["label"]
    return str(value)


def _compare_name(ctx, run_ids: list[str]) -> str:
    """``compare-A-vs-B.html`` (up to three runs), else ``compare-A-and-N-more-<digest>.html``: a
    name of its own for every set of runs (``compare-A-2.html`` served A+B and A+C alike)."""
    if len(run_ids) <= 3:
        return "compare-" + "-vs-".join(ctx.short_id(r) for r in run_ids) + ".html"
    import hashlib

    digest = hashlib.sha1(" ".join(run_ids).encode()).hexdigest()[:8]
    return f"compare-{ctx.short_id(run_ids[0])}-and-{len(run_ids) - 1}-more-{digest}.html"
