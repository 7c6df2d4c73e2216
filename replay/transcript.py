"""The conversation of a run up to a part, for people: messages, reasoning, tool calls and their
results, test results, token reports and errors, in seq order.

:func:`transcript_records` picks the events (the same records ``agtrace log --json`` prints, a
subset of kinds); :func:`transcript_entries` turns them into short headed blocks with long
texts cut to a number of lines; :func:`render_text` lays those out as plain text. Texts that
were too large to inline (``*_blob`` fields) are shown by their inline prefix with a note; no
blob is read, so a transcript of a huge run costs what its inline events cost.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

from agtrace.eventlog import (
    ErrorOccurred,
    LineLogged,
    MessageAdded,
    ModelCalled,
    PartEnded,
    ReasoningAdded,
    Record,
    RunEnded,
    RunStarted,
    Store,
    TestsRan,
    ToolCalled,
    ToolReturned,
    TurnEnded,
    TurnStarted,
    UsageReported,
)

from .errors import NoSuchPart

TRANSCRIPT_KINDS = frozenset({
    "run_started", "turn_started", "turn_ended", "message_added", "reasoning_added", "tool_called",
    "tool_returned", "tests_ran", "usage_reported", "model_called", "error_occurred", "part_ended",
    "run_ended", "line_logged",
})
"""Kinds a transcript shows (``model_called`` only when the call failed; ``line_logged`` only
when it belongs to a part: the output of a raw agent, not a structured agent's stderr)."""


@dataclass(frozen=True)
class Entry:
    """One block of a transcript: a heading line, an optional body, an optional note."""

    seq: int
    part: int | None
    kind: str
    heading: str
    body: str = ""
    note: str = ""


def transcript_records(store: Store, run_id: str, part: int | None = None) -> Iterator[Record]:
    """The transcript's records from the run's start through the end of ``part`` (all when None).

    Part 0 gives what came before the first part. Raises :class:`NoSuchPart` (a
    :class:`PartNotFound`) for a part the run does not have.
    """
    end = None
    if part is not None and part > 0:
        store.sync(run_id)
        row = store.catalog.part_row(run_id, part)
        if row is None:
            raise NoSuchPart(f"run {run_id} has no part {part}; it has parts 1..{store.info(run_id).parts}")
        end = row["last_seq"]
    elif part == 0:
        store.sync(run_id)
        first = store.catalog.part_row(run_id, 1)
        end = first["first_seq"] - 1 if first else None
    for rec in store.read(run_id, 1, end):
        if rec.kind not in TRANSCRIPT_KINDS:
            continue
        if isinstance(rec.event, ModelCalled) and rec.event.ok:
            continue
        if rec.kind == "line_logged" and rec.part is None:
            continue
        yield rec


def cut(text: str, max_lines: int, max_chars: int = 4000) -> tuple[str, str]:
    """``text`` cut to ``max_lines`` lines and ``max_chars`` characters, with a note saying what
    was left out ("" when nothing was)."""
    text = text.rstrip("\n")
    lines = text.split("\n")
    kept = "\n".join(lines[:max_lines])
    if len(kept) > max_chars:
        kept = kept[:max_chars]
    if kept == text:
        return text, ""
    more_lines = len(lines) - kept.count("\n") - 1
    left = len(text) - len(kept)
    return kept, f"… {left:,} more characters ({more_lines:,} more lines) not shown"


def _n(value: int) -> str:
    return f"{value:,}"


def transcript_entries(records: Iterable[Record], run_id: str = "", *, max_lines: int = 20,
                       costs: Mapping[int, dict] | None = None) -> Iterator[Entry]:
    """Headed blocks for people, one per record (consecutive output lines of one part and stream
    make one block). Bodies are cut to ``max_lines`` lines.

    ``costs`` (seq → the call's ``usage_costs`` row, :func:`~agtrace.eventlog.call_costs`) gives
    a usage row the priced cost, the one every command shows (docs/metrics.md); what the agent
    reported (the event's ``cost_usd``) is only ever shown as ``the agent reported $X``."""
    output: list[Record] = []
    for rec in records:
        if isinstance(rec.event, LineLogged):
            if output and (output[0].part, output[0].event.stream) != (rec.part, rec.event.stream):
                yield _output_entry(output, max_lines)
                output = []
            output.append(rec)
            continue
        if output:
            yield _output_entry(output, max_lines)
            output = []
        entry = _entry(rec, run_id, max_lines, costs)
        if entry is not None:
            yield entry
    if output:
        yield _output_entry(output, max_lines)


def _output_entry(lines: list[Record], max_lines: int) -> Entry:
    first = lines[0]
    body, note = cut("\n".join(r.event.text for r in lines), max_lines)
    return Entry(first.seq, first.part, first.kind, f"output ({first.event.stream})", body, note)


def _entry(rec: Record, run_id: str, max_lines: int, costs: Mapping[int, dict] | None = None) -> Entry | None:
    where = f"agtrace log {run_id[:10]} --json" if run_id else "agtrace log --json"
    ev, body, note = rec.event, "", ""
    if isinstance(ev, RunStarted):
        bits = [b for b in (ev.agent, ev.agent_version, ev.model and f"model {ev.model}",
                            ev.task_id and f"task {ev.task_id}") if b]
        heading = "run started: " + " · ".join(bits)
        body, note = cut(ev.prompt, max_lines)
    elif isinstance(ev, TurnStarted):
        heading = f"turn {ev.turn}"
        body, note = cut(ev.prompt, max_lines)
    elif isinstance(ev, TurnEnded):
        heading = f"turn {ev.turn} {ev.status}" + (f": {ev.error}" if ev.error else "")
    elif isinstance(ev, MessageAdded):
        heading = ev.role + (f" ({ev.model})" if ev.model else "")
        body, note = cut(ev.text, max_lines * 3)
        if ev.text_blob:
            note = (f"message truncated: only its first {len(ev.text):,} characters are inline; "
                    f"the full text is blob {ev.text_blob[:12]} ({where} --part {rec.part})")
    elif isinstance(ev, ReasoningAdded):
        heading = "reasoning" + (" (encrypted)" if ev.encrypted else "")
        body, note = cut(ev.text, max_lines)
    elif isinstance(ev, ToolCalled):
        heading = f"→ {ev.tool}" + (f" [{ev.call_id}]" if ev.call_id else "")
        args = ev.command or ("" if ev.arguments is None else
                              ev.arguments if isinstance(ev.arguments, str) else
                              json.dumps(ev.arguments, ensure_ascii=False, indent=1))
        body, note = cut(args, max_lines)
    elif isinstance(ev, ToolReturned):
        bits = [ev.status]
        if ev.exit_code is not None:
            bits.append(f"exit {ev.exit_code}")
        if ev.duration_ms is not None:
            bits.append(f"{ev.duration_ms:,.0f} ms")
        heading = f"← {ev.tool or ev.call_id} " + ", ".join(bits)
        body, note = cut(ev.output or ev.error, max_lines)
        if ev.output_blob:
            size = f"{ev.output_bytes:,} bytes" if ev.output_bytes else "a larger output"
            note = (f"output truncated: showing the start of {size}; the full output is blob "
                    f"{ev.output_blob[:12]} ({where} --part {rec.part})")
    elif isinstance(ev, TestsRan):
        heading = (f"tests {ev.suite or ''}: {ev.passed} passed, {ev.failed} failed, {ev.errors} errors"
                   f"{f', {ev.skipped} skipped' if ev.skipped else ''} of {ev.total}").replace("tests :", "tests:")
        bad = [t for t in ev.tests if t.outcome in ("failed", "error")]
        body, note = cut("\n".join(f"{t.outcome}: {t.name}" + (f" — {t.message}" if t.message else "")
                                   for t in bad), max_lines)
    elif isinstance(ev, UsageReported):
        u = ev.usage
        parts = [f"{_n(u.input)} in", f"{_n(u.output)} out"]
        parts += [f"{_n(v)} {k}" for k, v in (("cache read", u.cache_read), ("cache write", u.cache_write),
                                              ("reasoning", u.reasoning)) if v]
        call = costs.get(rec.seq) if costs is not None else None
        if call is not None:
            parts.append(f"${call['cost_usd']:.4f}" if call["cost_usd"] is not None
                         else f"unpriced ({call['model'] or '?'})")
        reported = f"; the agent reported ${ev.cost_usd:.4f}" if ev.cost_usd is not None else ""
        heading = "tokens: " + ", ".join(parts) + reported
    elif isinstance(ev, ModelCalled):
        heading = f"model call failed ({ev.model or 'model'}): {ev.error or 'no message'}"
    elif isinstance(ev, ErrorOccurred):
        heading = f"error ({ev.origin}{', fatal' if ev.fatal else ''}): {ev.message}"
    elif isinstance(ev, PartEnded):
        heading = f"── end of part {rec.part} ({ev.part_kind}) ──"
    elif isinstance(ev, RunEnded):
        heading = f"run ended: {ev.status}" + (f" ({ev.reason})" if ev.reason else "")
    else:
        return None
    return Entry(rec.seq, rec.part, rec.kind, heading, body, note)


def render_text(entries: Iterable[Entry], *, indent: str = "    ") -> str:
    """Plain text: a heading line per entry (with its part), its body indented, its note."""
    out = []
    for e in entries:
        where = f"[{e.part}]" if e.part is not None else "[-]"
        out.append(f"{where:>6} {e.heading}")
        for line in e.body.split("\n") if e.body else ():
            out.append(indent + "   " + line)
        if e.note:
            out.append(indent + "   " + f"({e.note})")
    return "\n".join(out) + ("\n" if out else "")
