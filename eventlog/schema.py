"""JSON Schema of every event type, generated from the msgspec types.

``schemas/events.schema.json`` is this module's output, checked in; a test fails when it is
stale. Regenerate with ``python -m agtrace.eventlog.schema schemas/events.schema.json``.
The output does not depend on the installed msgspec version: descriptions (docstrings) are
normalized here with ``inspect.cleandoc``, which some msgspec versions do and others do not,
``anyOf`` alternatives are sorted, and the document is formatted by the standard library.
"""

from __future__ import annotations

import inspect
import json
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
    # formatted by the standard library: the output must not depend on msgspec's own formatter
    return (json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


def _cleaned(value):
    """``value`` with every ``description`` string passed through ``inspect.cleandoc`` and every
    ``anyOf`` in one order (msgspec versions list ``null`` first or last)."""
    if isinstance(value, dict):
        out = {k: inspect.cleandoc(v) if k == "description" and isinstance(v, str) else _cleaned(v)
               for k, v in value.items()}
        if isinstance(out.get("anyOf"), list):
            out["anyOf"] = sorted(out["anyOf"], key=lambda v: json.dumps(v, sort_keys=True))
        return out
    if isinstance(value, list):
        return [_cleaned(v) for v in value]
    return value


if __name__ == "__main__":
    out = sys.argv[1] if len(sys.argv) > 1 else "schemas/events.schema.json"
    with open(out, "wb") as fh:
        fh.write(generate())
