"""`agtrace search`: full-text (or regex) search over every run's events."""

from __future__ import annotations

import click

from agtrace.eventlog import GREP_KINDS

from .errors import UserError
from .main import pass_ctx
from .output import echo_json, progress, shorten, table


@click.command("search")
@click.argument("query")
@click.option("--regex", is_flag=True, help="QUERY is a regular expression over the full text of every record "
              "(raw provider records and output lines included); reads the segments, no index.")
@click.option("--fts", is_flag=True, help="QUERY is FTS5 syntax (AND, OR, NOT, NEAR, prefix*), not a phrase.")
@click.option("-i", "--ignore-case", is_flag=True, help="With --regex: match case-insensitively.")
@click.option("--agent", default=None, help="Only runs of this agent (a glob such as 'claude*' works).")
@click.option("--since", default=None, metavar="WHEN",
              help="Only runs started since WHEN: an ISO date/time (UTC unless it names a zone) or an age "
                   "(30m, 3h, 2d, 1w).")
@click.option("--run", "runs", multiple=True, metavar="RUN", help="Only this run (an id prefix; repeatable).")
@click.option("--kind", "kinds", multiple=True, type=click.Choice(list(GREP_KINDS)),
              help="Only hits of this kind (repeatable; line and raw with --regex only).")
@click.option("--limit", type=click.IntRange(min=0), default=50, show_default=True, metavar="N", help="At most N hits (0: all).")
@click.option("--offset", type=click.IntRange(min=0), default=0, metavar="N", help="Skip the first N hits (paging).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (a list of hits).")
@pass_ctx
def search_cmd(ctx, query: str, regex: bool, fts: bool, ignore_case: bool, agent, since, runs, kinds,
               limit: int, offset: int, as_json: bool) -> None:
    """Search every run's messages, reasoning, tool calls, outputs and errors; print each hit's run,
    part, kind and a snippet.

    QUERY's words match as a phrase, in order (`agtrace search 'git reset --hard'`), case-insensitively;
    the index is brought up to date first. --regex finds exact text instead.
    """
    from agtrace.eventlog import grep_runs, search
    from agtrace.replay import parse_since

    store = ctx.store
    if regex and fts:
        raise UserError("--regex and --fts exclude each other: pick one", 2)
    if not regex and {"line", "raw"} & set(kinds):
        raise UserError("kinds line and raw are not indexed: add --regex to search them", 2)
    try:
        since_ns = parse_since(since) if since else None
        run_ids = [store.resolve(r) for r in runs] or None
        common = {"agent": agent, "since_ns": since_ns, "run_ids": run_ids, "kinds": list(kinds) or None,
                  "limit": limit or None, "offset": offset}
        if regex:
            hits = grep_runs(store, query, ignore_case=ignore_case, **common)
        else:
            with progress("indexing") as update:
                hits = search(store, query, fts=fts, progress=update, **common)
    except ValueError as exc:
        raise UserError(str(exc), 2) from None
    if as_json:
        echo_json([h.to_dict() for h in hits])
        return
    if not hits:
        click.echo("no hits")
        return
    rows = [[h.run_id, "-" if h.part is None else h.part, h.seq, h.kind, shorten(h.snippet, 100)] for h in hits]
    click.echo(table(rows, ["RUN", "PART", "SEQ", "KIND", "SNIPPET"]))
    if limit and len(hits) == limit:
        click.echo(f"(first {limit} hits from {offset}; --offset {offset + limit} for more)", err=True)
