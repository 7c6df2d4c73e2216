"""Values at the door: the limits every stored event keeps, checked before it gets a seq.

Every event that reaches a writer (:meth:`RunWriter.append`: capture, import, ``agtrace
append``, re-scoring) is checked here first, so that no stored event can break another command
later (the catalog is SQLite, whose integers are 64-bit signed; segments are msgpack). Normative
copy in ``docs/format.md`` ("Limits"):

* **Integers** — every integer of an event (the envelope's ``ts`` and ``part``, exit codes,
  token counts, test counts, and integers inside free-form values such as tool arguments) is
  within SQLite's ``-2**63 .. 2**63-1``; ``ts`` and ``part`` are not negative.
* **Nesting** — values nest at most :data:`MAX_DEPTH` arrays/objects deep.
* **Text** — every string is valid Unicode (no lone surrogates: it must encode as UTF-8).
* **Lines** — a JSON line read by ``agtrace append`` is at most :data:`MAX_LINE_BYTES` long.

A value out of bounds raises :class:`~agtrace.eventlog.errors.InvalidEvent` naming the field
(``usage.input``, ``args.x[3]``) and the limit; the caller says which record it was (a line
number, a source location). Nothing is appended for it, so the seqs stay gapless.
"""

from __future__ import annotations

import types
import typing
from typing import Any

import msgspec

from .envelope import UnknownEvent
from .errors import InvalidEvent

INT_MIN = -(1 << 63)
INT_MAX = (1 << 63) - 1
"""The integer range of every stored value (SQLite's INTEGER)."""

MAX_DEPTH = 64
"""How deep arrays and objects may nest inside an event (a JSON line's outer object is level 1)."""

MAX_LINE_BYTES = 64 * 1024 * 1024
"""The longest JSON line ``agtrace append`` reads (64 MiB); texts that long belong in blobs."""

_SCALARS = (str, float, bool, bytes, type(None))
_INT, _STRUCT, _ANY = 0, 1, 2
Plan = tuple[tuple[str, int, "Plan | None"], ...]
_plans: tuple[dict[type, Plan], dict[type, Plan]] = ({}, {})


def check_record(event: Any, ts: int | None, part: int | None, *, text: bool = False) -> None:
    """Refuse an event (and its envelope) that breaks a limit (see the module docstring).

    Integers and nesting are always checked; with ``text`` every string is checked too (capture
    and import do: their texts come from ``json.loads`` and may hold lone surrogates; a writer
    relies on :func:`~agtrace.eventlog.codec.encode_batch` to keep such an event out instead).

    Raises:
        InvalidEvent: naming the field, its value and the limit.
    """
    if ts is not None and (type(ts) is not int or not 0 <= ts <= INT_MAX):
        raise InvalidEvent(f"ts {_short(ts)} is out of range: a time is nanoseconds since the epoch, 0..{INT_MAX}")
    if part is not None and (type(part) is not int or not 0 <= part <= INT_MAX):
        raise InvalidEvent(f"part {_short(part)} is out of range: a part number is 0..{INT_MAX}")
    cls = type(event)
    plan = _plans[text].get(cls)
    if plan is None:
        plan = _plan(cls, text)
    if plan:
        problem = _struct(event, plan, 1, "", text)
        if problem:
            kind = event.kind if cls is UnknownEvent else cls.__struct_config__.tag
            raise InvalidEvent(f"{kind}: {problem}")


def _plan(cls: type, text: bool) -> Plan:
    """The fields of a Struct type that can hold a value out of bounds (all but plain text,
    floats and flags; with ``text``, all but floats and flags), each with how to check it."""
    plan = []
    for f in msgspec.structs.fields(cls):
        if not _may_break(f.type, text):
            continue
        inner = [a for a in typing.get_args(f.type) if a is not type(None)] \
            if typing.get_origin(f.type) in (types.UnionType, typing.Union) else [f.type]
        if inner == [int]:
            plan.append((f.name, _INT, None))
        elif len(inner) == 1 and isinstance(inner[0], type) and issubclass(inner[0], msgspec.Struct):
            plan.append((f.name, _STRUCT, _plan(inner[0], text)))
        else:
            plan.append((f.name, _ANY, None))
    _plans[text][cls] = result = tuple(plan)
    return result


def _may_break(tp: Any, text: bool) -> bool:
    if tp in (float, bool, type(None)) or (tp in (str, bytes) and not text):
        return False
    args = typing.get_args(tp)
    if args and typing.get_origin(tp) in (types.UnionType, typing.Union, list, tuple, dict, set, frozenset):
        return any(_may_break(a, text) for a in args if a is not Ellipsis)
    return True  # int, Any, a Struct, str with text


def _struct(obj: msgspec.Struct, plan: Plan, depth: int, path: str, text: bool) -> str:
    for name, how, inner in plan:
        value = getattr(obj, name)
        if value is None:
            continue
        if how == _INT and type(value) is int:
            if INT_MIN <= value <= INT_MAX:
                continue
        elif how == _STRUCT and inner is not None and type(value) is not UnknownEvent:
            problem = _struct(value, inner, depth + 1, f"{path}{name}.", text) if inner else ""
            if problem:
                return problem
            continue
        problem = _value(value, depth, f"{path}{name}", text)
        if problem:
            return problem
    return ""


def _value(value: Any, depth: int, path: str, text: bool) -> str:
    t = type(value)
    if t is str:
        if text and not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError as exc:
                return f"{path} is not valid Unicode text ({exc.reason} at character {exc.start})"
        return ""
    if t is int:
        if INT_MIN <= value <= INT_MAX:
            return ""
        return f"{path} = {_short(value)} is out of range (integers are stored as 64-bit: {INT_MIN}..{INT_MAX})"
    if t in _SCALARS:
        return ""
    if depth >= MAX_DEPTH:
        return f"{path} nests deeper than {MAX_DEPTH} levels of arrays/objects (the limit)"
    if t is dict:
        for key, item in value.items():
            if type(key) is not str:
                problem = _value(key, depth + 1, f"{path} key", text)
                if problem:
                    return problem
            if _plain(item, text):
                continue
            problem = _value(item, depth + 1, f"{path}.{key}" if path else str(key), text)
            if problem:
                return problem
        return ""
    if t is list or t is tuple:
        for i, item in enumerate(value):
            if _plain(item, text):
                continue
            problem = _value(item, depth + 1, f"{path}[{i}]", text)
            if problem:
                return problem
        return ""
    if isinstance(value, msgspec.Struct):
        cls = type(value)
        plan = _plans[text].get(cls)
        return _struct(value, _plan(cls, text) if plan is None else plan, depth + 1,
                       f"{path}." if path else "", text)
    if isinstance(value, int):  # an int subclass (IntEnum): its value is what is stored
        return _value(int(value), depth, path, text)
    return ""


def _plain(item: Any, text: bool) -> bool:
    """True for a value inside a container that is certainly within bounds (the common case,
    decided without building its path)."""
    t = type(item)
    if t is str:
        return not text or item.isascii()
    if t is int:
        return INT_MIN <= item <= INT_MAX
    return t is float or t is bool or item is None


def _short(value: int) -> str:
    text = str(value)
    return text if len(text) <= 40 else f"{text[:20]}…({len(text)} digits)"
