"""The envelope of every event, and the base all event types share.

An event body is a frozen msgspec Struct tagged by ``kind`` (an explicit, stable snake-case
string, never a class name), encoded without its default-valued fields. The envelope (``seq``,
``ts``, ``part``) is stored beside the body and read back as a :class:`Record`. The event types
and their evolution rules are in ``events.py``.

Events and records are ``gc=False`` Structs: the cycle collector does not track them. They are
decoded data and never refer back to themselves; a bulk append or read of 100k events would
otherwise pay for collections that walk every one of them (about 15% of ``agtrace append``).
Do not build an event that holds itself (through a dict or list field): it would never be freed.
"""

from __future__ import annotations

from typing import Any

import msgspec


class Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="kind", omit_defaults=True, gc=False):
    """Base of all events. Subclasses set ``tag=``."""


class UnknownEvent(msgspec.Struct, frozen=True, kw_only=True):
    """An event whose kind this version does not know; its body is kept as decoded."""

    kind: str
    body: dict[str, Any] = {}


class Record(msgspec.Struct, frozen=True, gc=False):
    """An event with its envelope, as read back from a run.

    Attributes:
        seq: gapless sequence number in the run, from 1.
        ts: wall clock in nanoseconds since the epoch when the event was appended or observed.
        part: the part the event belongs to, or None.
        event: the event body.
    """

    seq: int
    ts: int
    part: int | None
    event: Event | UnknownEvent

    @property
    def kind(self) -> str:
        ev = self.event
        return ev.kind if isinstance(ev, UnknownEvent) else ev.__struct_config__.tag


def kind_of(event: Event | UnknownEvent) -> str:
    """Return an event's stable tag."""
    return event.kind if isinstance(event, UnknownEvent) else event.__struct_config__.tag
