"""Adapter for agents without a structured output: parts are cut by a marker line or by silence.

Options: ``marker`` (a regex; a stdout line matching it *starts* a part, titled by that line,
and ends the part before it) and ``quiet_s`` (a part with output also ends after that many
seconds without any line on either stream). A part not started by a marker (the output before
the first marker, or any part without markers) starts at its first non-blank line and is titled
by its last non-blank line. Parts have kind ``other``. The adapter emits nothing per line: the
recorder stores every line itself, in the part it was printed in (:attr:`RawAdapter.line_part`).

So for the natural script ``echo "STEP fix add"; sed -i … add.py; echo "STEP test"; …`` part
"STEP fix add" holds the ``sed`` and its output, and its snapshot (taken when "STEP test" is
printed) has the fix and nothing after it.

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
from ..errors import CaptureError
from .base import title_of


def compile_marker(marker: str) -> re.Pattern:
    """The compiled ``marker``; :class:`CaptureError` naming it when it is no regular expression."""
    try:
        return re.compile(marker)
    except re.error as exc:
        raise CaptureError(f"marker {marker!r} is not a valid regular expression: {exc}") from None


class RawAdapter:
    """Cuts unstructured output into ``other`` parts (see the module docstring)."""

    name = "raw"

    def __init__(self, *, marker: str | None = None, quiet_s: float | None = None,
                 model: str = "", agent_version: str = "", **_ignored: Any) -> None:
        self.state = AdapterState(model=model, agent_version=agent_version)
        self.marker = compile_marker(marker) if marker else None
        self.quiet_s = quiet_s
        self.parts = 0
        self.open = False
        self.title = ""
        self.titled = False  # the open part's title is its marker line
        self.unseen = False
        self.last_output_s: float | None = None
        self.line_part: int | None = None
        """The part the line last fed belongs to (None: printed outside any part, a blank line
        before the first one)."""

    def starts_part(self, line: str, stream: str = "stdout") -> bool:
        """Whether ``line`` is a marker line (it starts a part, and ends the one open)."""
        return stream == "stdout" and self.marker is not None and self.marker.search(line) is not None

    def feed(self, line: str, stream: str) -> list[Emit]:
        """Note the line; a marker line ends the open part and starts the next. Never raises."""
        self.unseen = True
        out: list[Emit] = []
        if self.starts_part(line, stream):
            if self.open:
                out = self._end(self.title)
            self._start(title_of(line), titled=True)
        elif line.strip():
            if not self.open:
                self._start(title_of(line), titled=False)
            elif not self.titled:
                self.title = title_of(line)
        self.line_part = self.parts + 1 if self.open else None
        return out

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

    def _start(self, title: str, *, titled: bool) -> None:
        self.open, self.title, self.titled = True, title, titled

    def _end(self, title: str) -> list[Emit]:
        self.parts += 1
        self.open, self.title, self.titled = False, "", False
        return [Emit(PartEnded(part_kind="other", title=title), self.parts)]
