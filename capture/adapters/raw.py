"""Adapter for agents without a structured output: parts are cut by a marker line or by silence.

Options: ``marker`` (a regex; a stdout line matching it ends the current part, with that line as
the part's title) and ``quiet_s`` (a part with output also ends after that many seconds without
any line on either stream; the title is its last non-blank line). Parts have kind ``other``.
The adapter emits nothing per line: the recorder stores every line itself.

Silence is measured on the recorder's clock: :meth:`tick` receives ``now_s`` and the adapter
stamps "last output" with the ``now_s`` of the first tick after new lines arrived, so any
monotonic clock works and the error is at most one tick interval (the part ends late, never
early).
"""

from __future__ import annotations

import re
from typing import Any

from agtrace.eventlog import PartEnded

from ..adapter import AdapterState, Emit
from .base import title_of


class RawAdapter:
    """Cuts unstructured output into ``other`` parts (see the module docstring)."""

    name = "raw"

    def __init__(self, *, marker: str | None = None, quiet_s: float | None = None,
                 model: str = "", agent_version: str = "", **_ignored: Any) -> None:
        self.state = AdapterState(model=model, agent_version=agent_version)
        self.marker = re.compile(marker) if marker else None
        self.quiet_s = quiet_s
        self.parts = 0
        self.open = False
        self.title = ""
        self.unseen = False
        self.last_output_s: float | None = None

    def feed(self, line: str, stream: str) -> list[Emit]:
        """Note the line; a stdout line matching ``marker`` ends the part. Never raises."""
        self.unseen = True
        if stream == "stdout" and self.marker is not None and self.marker.search(line):
            return self._end(title_of(line))
        if line.strip():
            self.open = True
            self.title = title_of(line)
        return []

    def tick(self, now_s: float) -> list[Emit]:
        """End the open part when no line arrived for ``quiet_s`` seconds."""
        if self.unseen or self.last_output_s is None:
            self.unseen = False
            self.last_output_s = now_s
            return []
        if self.open and self.quiet_s is not None and now_s - self.last_output_s >= self.quiet_s:
            return self._end(self.title)
        return []

    def finish(self) -> list[Emit]:
        """Close the part that is still open."""
        return self._end(self.title) if self.open else []

    def _end(self, title: str) -> list[Emit]:
        self.parts += 1
        self.open, self.title = False, ""
        return [Emit(PartEnded(part_kind="other", title=title), self.parts)]
