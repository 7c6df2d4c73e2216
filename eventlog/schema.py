"""JSON Schema of every event type, generated from the msgspec types.

``schemas/events.schema.json`` is this module's output, checked in; a test fails when it is
stale. Regenerate with ``python -m agtrace.eventlog.schema schemas/events.schema.json``.
The output does not depend on the installed msgspec version: descriptions (docstrings) are
normalized here with ``inspect.cleandoc``, which some msgspec versions do and others do not.
"""

from __future__ import annotations

import inspect
import sys

import msgspec

from .events import AnyEvent

ENVELOPE = {
    "seq": {"type": "integer", "minimum": 1, "description": "gapless sequence number from 1"},
    "ts": {"type": "integer", "description": "wall clock, ns since the epoch"},
    "part": {"type": ["integer", "null"], "minimum": 1, "description": "part number or null"},
}


def generate() -> bytes:
    """The schema document: the event union, and the record envelope around it."""
    (union,), components = msgspec.json.schema_components([AnyEvent])
    doc = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "agtrace events",
        "description": (
            "Every agtrace event type (tagged by `kind`). A JSON line as printed by "
            "`agtrace log --json` is an event body with the envelope fields seq, ts and part added."
        ),
        "$defs": _cleaned(components),
        "oneOf": union.get("anyOf", [union]),
        "x-envelope": ENVELOPE,
    }
    return msgspec.json.format(msgspec.json.encode(doc, order="sorted"), indent=2) + b"\n"


def _cleaned(value):
    """``value`` with every ``description`` string passed through ``inspect.cleandoc``."""
    if isinstance(value, dict):
        return {k: inspect.cleandoc(v) if k == "description" and isinstance(v, str) else _cleaned(v)
                for k, v in value.items()}
    if isinstance(value, list):
        return [_cleaned(v) for v in value]
    return value


if __name__ == "__main__":
    out = sys.argv[1] if len(sys.argv) > 1 else "schemas/events.schema.json"
    with open(out, "wb") as fh:
        fh.write(generate())
