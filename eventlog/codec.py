"""Encoding of events: msgpack batches inside frames, and JSON lines for people and pipes.

A batch is a msgpack array of ``[ts, part, event]`` triples (the seq is implicit: the frame
holds the first seq and the count). Encoders and decoders are created once and reused.

The JSON line form of a record is flat: ``{"seq":…,"ts":…,"part":…,"kind":…, <body fields>}``.
It is what ``agtrace log --json`` prints and what ``agtrace append`` reads back, so
``agtrace log A --json | agtrace append B`` copies a run (the store assigns new seqs).
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

from .errors import InvalidEvent
from .events import AnyEvent, ErrorOccurred, Event, Record, UnknownEvent, kind_of
from .limit import MAX_DEPTH, MAX_LINE_BYTES

_mp_encoder = msgspec.msgpack.Encoder()
_mp_batch_decoder = msgspec.msgpack.Decoder(list[tuple[int, int | None, AnyEvent]])
_mp_generic_decoder = msgspec.msgpack.Decoder(list[tuple[int, int | None, Any]])
_mp_event_decoder = msgspec.msgpack.Decoder(AnyEvent)
_json_encoder = msgspec.json.Encoder()
_json_event_decoder = msgspec.json.Decoder(AnyEvent)


class _Envelope(msgspec.Struct):
    """The envelope fields of a JSON line; the body is decoded separately."""

    kind: str
    ts: int | None = None
    part: int | None = None
    seq: int | None = None


_json_envelope_decoder = msgspec.json.Decoder(_Envelope)


def encode_batch(items: list[tuple[int, int | None, Event]]) -> bytes:
    """Encode ``(ts, part, event)`` triples as one msgpack array.

    Never raises for one bad event: an event that cannot be encoded (a string with a lone
    surrogate, which the writer's checks leave to this) is stored as an ``error_occurred``
    event of origin ``store`` saying what was lost, at the same seq, so a batch is never lost
    for one event and the seqs stay gapless."""
    try:
        return _mp_encoder.encode(items)
    except (OverflowError, UnicodeEncodeError, RecursionError, TypeError, ValueError):
        return _mp_encoder.encode([_encodable(item) for item in items])


def _encodable(item: tuple[int, int | None, Event]) -> tuple[int, int | None, Event]:
    ts, part, event = item
    try:
        _mp_encoder.encode(item)
        return item
    except (OverflowError, UnicodeEncodeError, RecursionError, TypeError, ValueError) as exc:
        kind = kind_of(event)
        message = f"a {kind} event could not be stored ({type(exc).__name__}: {exc}); it is replaced by this error"
        return (ts, part, ErrorOccurred(message=message, origin="store", error_type=type(exc).__name__))


def decode_batch(data: bytes, first_seq: int) -> list[Record]:
    """Decode a batch into records numbered from ``first_seq``.

    Events of a kind this version does not know become :class:`UnknownEvent`; the other events
    of the batch still decode normally.
    """
    try:
        items = _mp_batch_decoder.decode(data)
        return [Record(first_seq + i, ts, part, ev) for i, (ts, part, ev) in enumerate(items)]
    except msgspec.ValidationError:
        pass
    out = []
    for i, (ts, part, body) in enumerate(_mp_generic_decoder.decode(data)):
        out.append(Record(first_seq + i, ts, part, _upgrade(body)))
    return out


def _upgrade(body: Any) -> Event | UnknownEvent:
    """Decode one generic event body, keeping unknown kinds as :class:`UnknownEvent`."""
    try:
        return _mp_event_decoder.decode(_mp_encoder.encode(body))
    except msgspec.ValidationError:
        kind = body.get("kind", "") if isinstance(body, dict) else ""
        return UnknownEvent(kind=str(kind), body=body if isinstance(body, dict) else {})


def event_to_json(event: Event | UnknownEvent) -> bytes:
    """The JSON encoding of an event body (with its ``kind``)."""
    if isinstance(event, UnknownEvent):
        return _json_encoder.encode({"kind": event.kind, **event.body})
    return _json_encoder.encode(event)


def record_to_json(record: Record) -> bytes:
    """One flat JSON line (without newline) for a record."""
    body = event_to_json(record.event)
    part = b"null" if record.part is None else str(record.part).encode()
    head = b'{"seq":%d,"ts":%d,"part":%s,' % (record.seq, record.ts, part)
    return head + body[1:]


def event_from_json(line: bytes | str, line_no: int | None = None) -> tuple[Event, int | None, int | None]:
    """Parse a flat JSON line into ``(event, ts, part)``; ``seq`` in the line is ignored.

    Raises:
        InvalidEvent: the line is not JSON, has no known ``kind``, or a field has the wrong type.
    """
    if len(line) > MAX_LINE_BYTES:
        raise InvalidEvent(f"{_at(line_no)}the line is {len(line):,} bytes long, over the limit of {MAX_LINE_BYTES:,}; "
                           "put large texts in files or split the event", line=line_no)
    try:
        env = _json_envelope_decoder.decode(line)
        event = _json_event_decoder.decode(line)
    except msgspec.DecodeError as exc:
        if "truncated" in str(exc) and _LONE_SURROGATE.search(line if isinstance(line, bytes) else line.encode()):
            raise InvalidEvent(f"{_at(line_no)}not valid Unicode: a \\uD800-\\uDBFF escape without the low surrogate "
                               "that must follow it (a lone surrogate)", line=line_no) from None
        raise InvalidEvent(f"{_at(line_no)}{_explain(exc)}", line=line_no) from None
    except UnicodeDecodeError as exc:  # older msgspec (0.18.6) raises it for a string that is not UTF-8
        raise InvalidEvent(f"{_at(line_no)}not valid UTF-8 ({exc}); convert it to UTF-8 and retry", line=line_no) from None
    except RecursionError:
        raise InvalidEvent(f"{_at(line_no)}the line nests arrays/objects deeper than the limit of {MAX_DEPTH} levels",
                           line=line_no) from None
    return event, env.ts, env.part


def events_from_json_lines(lines: list[bytes], first_line_no: int = 1
                           ) -> tuple[list[tuple[Event, int | None, int | None] | None], InvalidEvent | None]:
    """:func:`event_from_json` of each line (``None`` for a blank one), numbered from
    ``first_line_no``, up to the first bad line: ``(decoded, error)``, where ``error`` is the
    :class:`InvalidEvent` of line ``first_line_no + len(decoded)``, or None when every line
    decoded.

    The same results as calling :func:`event_from_json` line by line, with the decoders called
    directly in one loop; a line the loop cannot take (blank, too long, bad) goes through
    :func:`event_from_json`, which says why."""
    out: list[tuple[Event, int | None, int | None] | None] = []
    append = out.append
    if lines and max(map(len, lines)) > MAX_LINE_BYTES:  # one at a time: event_from_json names the long one
        for i, line in enumerate(lines):
            try:
                append(_one(line, first_line_no + i))
            except InvalidEvent as exc:
                return out, exc
        return out, None
    envelope, body = _json_envelope_decoder.decode, _json_event_decoder.decode
    while len(out) < len(lines):
        try:
            for line in lines[len(out):] if out else lines:
                env = envelope(line)
                append((body(line), env.ts, env.part))
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
            try:  # a blank line, or a bad one: event_from_json says why
                append(_one(lines[len(out)], first_line_no + len(out)))
            except InvalidEvent as exc:
                return out, exc
    return out, None


def _one(line: bytes, line_no: int) -> tuple[Event, int | None, int | None] | None:
    return None if not line or line.isspace() else event_from_json(line, line_no)


def _at(line_no: int | None) -> str:
    """Where a bad line is, for its message (built only when a line is bad)."""
    return f"line {line_no}: " if line_no is not None else ""


_LONE_SURROGATE = re.compile(rb"\\u[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F][0-9a-fA-F]{2})")
"""A high-surrogate escape not followed by a low one: msgspec says "Input data was truncated"."""


def _explain(exc: msgspec.DecodeError) -> str:
    msg = str(exc)
    if "Invalid value" in msg and "$.kind" in msg:
        return f"unknown event kind ({msg}); `agtrace log --json` shows the accepted form"
    if "missing required field `kind`" in msg:
        return "no `kind` field; every line must be one event as `agtrace log --json` prints it"
    return f"not a valid event: {msg}"


def to_builtins(event: Event | UnknownEvent) -> dict[str, Any]:
    """The event as plain Python data (dict with ``kind``)."""
    if isinstance(event, UnknownEvent):
        return {"kind": event.kind, **event.body}
    data = msgspec.to_builtins(event)
    data["kind"] = kind_of(event)
    return data
