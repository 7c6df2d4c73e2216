"""`agtrace tag` and `agtrace note`: annotations appended to a run after the fact."""

from __future__ import annotations

import os

import click

from .errors import UserError
from .main import pass_ctx
from .options import parse_tags, read_text_arg
from .output import echo_json


@click.command("tag")
@click.argument("run")
@click.argument("tags", nargs=-1, metavar="[K=V]...")
@click.option("--remove", "removed", multiple=True, metavar="K", help="Remove tag K (repeatable).")
@click.option("--author", default=None, help="Who tags (default: the user name).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (the run's tags after the change).")
@pass_ctx
def tag_cmd(ctx, run: str, tags: tuple[str, ...], removed: tuple[str, ...], author, as_json: bool) -> None:
    """Set (K=V) or remove (--remove K) tags of a run, as a new event; `ls --tag K=V` filters on them.

    The run's events are never edited: the tags are a `run_tagged` event appended to its scores
    stream, laid over the tags it started with.
    """
    from agtrace.eventlog import Redactor, tag_run

    store = ctx.store
    run_id = store.resolve(run)
    redactor = Redactor.from_env(os.environ)
    values = redactor.redact_obj(parse_tags(tags))  # a value labelled by its key (password=…) too
    try:
        seq = tag_run(store, run_id, values, list(removed), author=author)
    except ValueError as exc:
        raise UserError(str(exc), 2) from None
    info = store.info(run_id)
    if as_json:
        echo_json({"id": run_id, "seq": seq, "tags": info.tags})
    else:
        click.echo(f"{run_id} " + (" ".join(f"{k}={v}" for k, v in info.tags.items()) or "(no tags)"))


@click.command("note")
@click.argument("run")
@click.argument("text")
@click.option("--part", "part", default=None, metavar="PART",
              help="The note is about one part: N, first or last (default: the whole run); see README, "
                   "Naming parts.")
@click.option("--author", default=None, help="Who writes it (default: the user name).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def note_cmd(ctx, run: str, text: str, part: str | None, author, as_json: bool) -> None:
    """Add a note (TEXT, or @FILE) about a run or one of its parts, as a new event; `show` lists it.

    The run's events are never edited: the note is a `note_added` event appended to its scores
    stream. Secrets in it are redacted before it is stored.
    """
    from agtrace.eventlog import Redactor, add_note

    store = ctx.store
    run_id = store.resolve(run)
    if part is not None:  # the words every command reads (one part; a live run's current one too)
        from agtrace.eventlog import parse_parts
        from agtrace.replay import resolve_parts

        if not parse_parts(part).single:
            raise UserError(f"a note is about one part (N, first or last), not {part!r}", 2)
        (part,) = resolve_parts(store, run_id, part, unfinished=True)
    text, _ = Redactor.from_env(os.environ).redact(read_text_arg(text))
    try:
        seq = add_note(store, run_id, text, part, author=author)
    except ValueError as exc:
        raise UserError(str(exc), 2) from None
    if as_json:
        echo_json({"id": run_id, "seq": seq, "part": part})
    else:
        click.echo(f"noted {run_id}" + (f" part {part}" if part is not None else ""))
