"""Which earlier import a re-imported session continues (``parent_run``, see ``base.py``).

A source continues an earlier import of its session only if it *extends* it: its raw records
start with the earlier import's, unchanged, except that a torn last line may have been completed
since. A truncated or older copy of a session extends none of the more complete imports and is
a run of its own. A source read as one record (a whole JSON document) cannot be told apart and
continues the most complete earlier import, as any source did before this check.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from agtrace.eventlog import RawRecorded, Record, Store, read_stream

if TYPE_CHECKING:
    from .base import ImportContext


def raw_records(records: Iterable[Record]) -> list[RawRecorded]:
    return [r.event for r in records if isinstance(r.event, RawRecorded)]


def extends(new: list[RawRecorded], old: list[RawRecorded]) -> bool:
    """True if a source whose raw records are ``new`` is ``old``'s source gone on: ``old``'s
    records come first, unchanged, except that a torn last line may have been completed. A
    source read as one record (a whole JSON document) cannot be told apart: it counts as gone
    on, as before."""
    if len(old) <= 1 and len(new) <= 1:
        return True
    if len(new) < len(old) or not old:
        return False
    head, last = old[:-1], old[-1]
    if any((a.text, a.blob) != (b.text, b.blob) for a, b in zip(head, new, strict=False)):
        return False
    cur = new[len(old) - 1]
    return (cur.text, cur.blob) == (last.text, last.blob) or (
        bool(last.parse_error) and not last.blob and cur.text.startswith(last.text))


def wrong_parents(store: Store, ctx: ImportContext) -> dict[str, str]:
    """For each staged run that was made to continue an earlier import it does not extend (a
    truncated or older copy of the session, see :func:`extends`): the most complete earlier
    import it does extend, or "" (none: it is an import of its own). Empty when every link is
    right."""
    wrong: dict[str, str] = {}
    for sink in ctx.sinks:
        parent = ctx.parents.get(sink.run_id)
        if not parent:
            continue
        new = raw_records(read_stream(sink.dir / "events"))
        if extends(new, raw_records(store.read(parent))):
            continue
        wrong[sink.run_id] = next(
            (rid for rid in ctx.earlier_imports(sink.started, sink.run_id)
             if rid != parent and extends(new, raw_records(store.read(rid)))), "")
    return wrong
