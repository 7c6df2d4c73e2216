"""The viewer and file commands: `agtrace view` (a local web app) and `agtrace cat RUN --part N PATH`."""

from __future__ import annotations

import ipaddress
import secrets
import sys
import urllib.parse

import click

from agtrace.eventlog import quote_name
from agtrace.replay import is_under, path_prefixes, read_file, resolve_part, tree_files

from .errors import EXIT_BAD_INPUT, UserError
from .main import pass_ctx
from .output import echo_json
from .streams import write_verbatim


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@click.command("view")
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True,
              help="Port to listen on (0: any free port).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind. Any address but loopback needs a token (--token, or one is made up).")
@click.option("--token", default=None, envvar="AGTRACE_VIEW_TOKEN",
              help="Require this token on every request (env AGTRACE_VIEW_TOKEN); printed in the URL.")
@click.option("--json", "as_json", is_flag=True,
              help="Announce the server as one JSON line (url, host, port, store, token_required) for scripts.")
@pass_ctx
def view_cmd(ctx, port, host, token, as_json) -> None:
    """Browse the store in a local web app: every run, live, searchable; files at any part; comparisons.

    The runs index sorts and filters by agent, model, task, tag, status, tests, score, tokens,
    cost and duration, groups by task, searches the runs' text, and updates as runs are
    captured. A run's page is its report with the repository's files at any part; the
    comparison page adds the diff of any two runs' trees at chosen parts. It binds 127.0.0.1
    unless --host says otherwise; then every request needs the token in the printed URL.
    Needs the `view` extra (Starlette and uvicorn). Ctrl-C stops it.
    """
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        raise UserError("agtrace view needs Starlette and uvicorn: install the `view` extra "
                        "(pip install 'agtrace[view]')") from None
    from agtrace.replay import serve_viewer

    if not _loopback(host) and not token:
        token = secrets.token_urlsafe(24)
    if token is not None and len(token) < 8:
        raise UserError("a --token of fewer than 8 characters is too easy to guess; use a longer one", EXIT_BAD_INPUT)

    def ready(url: str) -> None:
        if as_json:
            bound = urllib.parse.urlsplit(url)
            echo_json({"url": url, "host": bound.hostname, "port": bound.port, "store": str(ctx.store_path),
                       "token_required": token is not None})
        else:
            click.echo(f"agtrace view: {url}  (store {ctx.store_path}; Ctrl-C stops)")
        sys.stdout.flush()

    try:
        serve_viewer(ctx.store_path, host=host, port=port, token=token, ready=ready, wait_s=ctx.lock_wait_s)
    except OSError as exc:
        raise UserError(f"cannot listen on {host}:{port}: {exc.strerror or exc}; pick another --port "
                        "(0 takes any free one)") from None


@click.command("cat")
@click.argument("run")
@click.argument("path", required=False)
@click.option("--part", "part", default="last", show_default=True,
              help="Part number, or `last` (0 = the workspace before the first part).")
@click.option("--list", "list_files", is_flag=True,
              help="List the tree's files (those under PATH, when given) instead of printing one.")
@click.option("--binary", is_flag=True, help="Write a binary file's bytes to stdout (refused otherwise).")
@click.option("--json", "as_json", is_flag=True,
              help="Print the file (path, part, size, binary, text) or the file list as JSON.")
@pass_ctx
def cat_cmd(ctx, run, path, part, list_files, binary, as_json) -> None:
    """Print a file of a run's repository as it was after a part (or list the files).

    The file is read from the run's snapshots (its shadow repository or bundles); nothing is
    written to disk. A binary file is not printed to a terminal: --binary writes its bytes.
    """
    store = ctx.store
    run_id = store.resolve(run)
    n = resolve_part(store, run_id, part=part)
    if list_files or not path:
        if not list_files:
            raise UserError(f"name a file: `agtrace cat {ctx.short_id(run_id)} --part {n} PATH`, or --list lists them",
                            EXIT_BAD_INPUT)
        files = tree_files(store, run_id, n)
        if path:
            prefixes = path_prefixes([path])
            files = [f for f in files if is_under(f.path, prefixes)]
            if not files:
                raise UserError(f"no file at or under {path!r} at part {n} of run {run_id}; "
                                f"`agtrace cat {ctx.short_id(run_id)} --part {n} --list` lists them all", EXIT_BAD_INPUT)
        if as_json:
            echo_json({"run_id": run_id, "part": n, "files": [f.to_dict() for f in files]})
            return
        for f in files:
            click.echo(quote_name(f.path))
        return
    content = read_file(store, run_id, n, path)
    if as_json:
        echo_json({"run_id": run_id, "part": n, "path": content.path, "size": len(content.data),
                   "binary": content.binary, "text": None if content.binary else content.text()})
        return
    if content.binary and not binary:
        shown = quote_name(content.path)
        raise UserError(f"{shown} at part {n} is a binary file ({len(content.data):,} bytes); "
                        f"--binary writes its bytes (e.g. `agtrace cat {ctx.short_id(run_id)} --part {n} {shown} "
                        "--binary > FILE`)")
    if content.binary:
        sys.stdout.buffer.write(content.data)
        sys.stdout.buffer.flush()
        return
    text = content.text()
    write_verbatim(text + ("\n" if content.data and not content.data.endswith(b"\n") else ""))
