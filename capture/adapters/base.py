"""What the JSON-line adapters share: the never-raising feed loop, part and turn numbering,
tool parts, and recognising test runs in tool calls.

Contract kept here for every subclass (see ``capture/adapter.py``):

* ``feed`` never raises. A stdout line that is not a JSON object becomes one ``raw_recorded``
  event with ``parse_error``; an exception inside a subclass's handler is turned into the same,
  so one bad record never stops the capture. Blank lines and stderr lines yield nothing (the
  recorder logs every line itself).
* Parts are numbered 1..N in order of completion; every event of a part is emitted together,
  at completion, ending with its ``part_ended``. A tool call is therefore held back until its
  result arrives; its ``tool_called`` emit keeps the arrival time of the call as ``ts``.
* ``finish`` closes what is still open (tool calls without results, an open turn) and never
  raises either.
* A record of a type not in :attr:`JsonLineAdapter.known` (for the agent version the stream
  reports, see :func:`~agtrace.capture.adapter.known_types`) is not a parse error: the subclass
  calls :meth:`JsonLineAdapter.unknown`, which counts it in ``state.unknown`` and emits nothing
  (the line itself is kept raw by the recorder or the importer).
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Mapping
from typing import Any

from agtrace.eventlog import (
    ErrorOccurred,
    FileChanged,
    ModelCalled,
    PartEnded,
    RawRecorded,
    TestsRan,
    ToolCalled,
    ToolReturned,
    TurnEnded,
    TurnStarted,
)

from ..adapter import AdapterState, Emit, known_types

TITLE_MAX = 100

_TEST_COMMAND = re.compile(
    r"(?:^|[\s;&|('\"/])(?:py\.test|pytest|python[\d.]*\s+-m\s+(?:pytest|unittest)"
    r"|(?:npm|pnpm|yarn|bun)\s+(?:run\s+)?test|go\s+test|cargo\s+(?:test|nextest)"
    r"|tox|nox|jest|vitest|make\s+(?:test|check))(?=$|[\s;&|)'\"])"
)
_TEST_TOOL = re.compile(r"run_?tests?")
_PYTEST_COUNT = re.compile(r"(\d+) (passed|failed|errors?|skipped|xfailed|xpassed)\b")
_PYTEST_LINE = re.compile(r"(?:\d+ (?:passed|failed|errors?|skipped)|no tests ran).* in [\d.]+s")
_UNITTEST_RAN = re.compile(r"^Ran (\d+) tests? in ", re.M)
_UNITTEST_END = re.compile(r"^(OK|FAILED)(?: \(([^)]*)\))?\s*$", re.M)
_CARGO = re.compile(r"test result: \w+\. (\d+) passed; (\d+) failed; (\d+) ignored")
_JEST = re.compile(r"^Tests:\s+(.+)$", re.M)
_GO = re.compile(r"^\s*--- (PASS|FAIL|SKIP):", re.M)
_PATCH_FILE = re.compile(r"^\*\*\* (Add|Update|Delete) File: (.+)$", re.M)
_PATCH_CHANGE = {"Add": "add", "Update": "modify", "Delete": "delete"}


def looks_like_test(tool: str, command: str = "") -> bool:
    """True for a test run: a tool named like ``*run_tests*`` or a test-runner shell command."""
    if _TEST_TOOL.search(tool.lower().replace("-", "_")):
        return True
    return bool(command) and bool(_TEST_COMMAND.search(command))


def parse_test_summary(output: str) -> dict[str, Any] | None:
    """Counts from a runner's summary (pytest, unittest, cargo, jest, go -v), or None.

    Returns ``{suite, passed, failed, errors, skipped, total}``; the first runner format found
    wins, in the order listed.
    """
    lines = [ln for ln in output.splitlines() if _PYTEST_LINE.search(ln)]
    if lines:
        n = {"passed": 0, "failed": 0, "errors": 0, "skipped": 0, "xfailed": 0, "xpassed": 0}
        for count, what in _PYTEST_COUNT.findall(lines[-1]):
            n["errors" if what.startswith("error") else what] += int(count)
        res = {k: n[k] for k in ("passed", "failed", "errors", "skipped")}
        return {"suite": "pytest", **res, "total": sum(n.values())}
    ran = _UNITTEST_RAN.findall(output)
    end = _UNITTEST_END.findall(output)
    if ran and end:
        kv = dict(
            (k.strip(), int(v)) for k, v in re.findall(r"([\w ]+)=(\d+)", end[-1][1] or "")
        )
        total = int(ran[-1])
        failed, errors, skipped = kv.get("failures", 0), kv.get("errors", 0), kv.get("skipped", 0)
        passed = max(0, total - failed - errors - skipped - kv.get("expected failures", 0))
        return {"suite": "unittest", "passed": passed, "failed": failed, "errors": errors,
                "skipped": skipped, "total": total}
    cargo = _CARGO.findall(output)
    if cargo:
        p, f, s = (sum(int(c[i]) for c in cargo) for i in range(3))
        return {"suite": "cargo", "passed": p, "failed": f, "errors": 0, "skipped": s,
                "total": p + f + s}
    jest = _JEST.findall(output)
    if jest:
        n = {w: int(c) for c, w in re.findall(r"(\d+) (failed|passed|skipped|todo|total)", jest[-1])}
        return {"suite": "jest", "passed": n.get("passed", 0), "failed": n.get("failed", 0),
                "errors": 0, "skipped": n.get("skipped", 0) + n.get("todo", 0),
                "total": n.get("total", sum(n.values()))}
    go = _GO.findall(output)
    if go:
        p, f, s = go.count("PASS"), go.count("FAIL"), go.count("SKIP")
        return {"suite": "go", "passed": p, "failed": f, "errors": 0, "skipped": s,
                "total": p + f + s}
    return None


def paths_from_patch(text: str) -> list[tuple[str, str]]:
    """``(path, change)`` pairs named by an ``*** Begin Patch`` text (Codex/OpenCode format)."""
    return [(p.strip(), _PATCH_CHANGE[k]) for k, p in _PATCH_FILE.findall(text or "")]


def title_of(text: str) -> str:
    """The first non-empty line of ``text``, cut to ``TITLE_MAX`` characters."""
    for line in (text or "").splitlines():
        if line.strip():
            line = line.strip()
            return line if len(line) <= TITLE_MAX else line[: TITLE_MAX - 1] + "…"
    return ""


class JsonLineAdapter:
    """Base of the JSON-lines adapters; subclasses implement :meth:`handle` and :meth:`close`.

    Options common to all adapters (``make_adapter(name, **opts)``): ``model`` and
    ``agent_version`` pre-fill :attr:`state` when the stream does not say (Codex never reports
    its model); ``workdir`` makes absolute file paths workdir-relative in ``file_changed``;
    ``clock`` (a ``time.time_ns``-like callable) times tool calls, replaceable in tests.
    """

    name = "json"
    known: Mapping[str, frozenset[str]] = {"*": frozenset()}
    """Record types this adapter understands, per agent version (subclasses list theirs)."""

    def __init__(self, *, model: str = "", agent_version: str = "", workdir: str = "",
                 clock: Callable[[], int] = time.time_ns, **_ignored: Any) -> None:
        self.state = AdapterState(model=model, agent_version=agent_version)
        self.workdir = workdir
        self.now_ns = clock
        self.parts = 0
        self.turn = 0
        self.turn_open = False
        self.unknown_seen: list[str] = []  # unknown record types since the last take_unknown
        self._types: tuple[str, frozenset[str]] | None = None

    # -- the Adapter protocol ---------------------------------------------------------------

    def feed(self, line: str, stream: str) -> list[Emit]:
        """Parse one line; never raises (see the module docstring)."""
        if stream != "stdout" or not line.strip():
            return []
        try:
            record = json.loads(line)
        except ValueError as exc:
            return [self.raw(line, f"invalid JSON: {exc}")]
        if not isinstance(record, dict):
            return [self.raw(line, f"expected a JSON object, got {type(record).__name__}")]
        try:
            return self.handle(record)
        except Exception as exc:  # a malformed record must not stop the capture
            return [self.raw(line, f"{self.name}: {type(exc).__name__}: {exc}")]

    def finish(self) -> list[Emit]:
        """Close open tool calls and the open turn; never raises."""
        try:
            return self.close()
        except Exception as exc:
            return [Emit(ErrorOccurred(message=f"{self.name} finish: {exc}", origin="capture"))]

    def tick(self, now_s: float) -> list[Emit]:
        """Periodic call from the recorder; JSON adapters have nothing time-based to do."""
        return []

    # -- for subclasses -----------------------------------------------------------------------

    def handle(self, record: dict[str, Any]) -> list[Emit]:
        raise NotImplementedError

    def close(self) -> list[Emit]:
        return self.end_turn("interrupted") if self.turn_open else []

    def raw(self, line: str, why: str) -> Emit:
        return Emit(RawRecorded(source=self.name, text=line, parse_error=why))

    def knows(self, record_type: str) -> bool:
        """True if ``record_type`` is known for the agent version seen so far."""
        version = self.state.agent_version
        if self._types is None or self._types[0] != version:
            self._types = (version, known_types(self.known, version))
        return record_type in self._types[1]

    def unknown(self, record_type: str) -> list[Emit]:
        """Count a record of a type this adapter does not know; nothing is emitted."""
        self.state.unknown[record_type] = self.state.unknown.get(record_type, 0) + 1
        self.unknown_seen.append(record_type)
        return []

    def take_unknown(self) -> list[str]:
        """The unknown record types counted since the last call (for an importer's locations)."""
        seen, self.unknown_seen = self.unknown_seen, []
        return seen

    def next_part(self) -> int:
        self.parts += 1
        return self.parts

    def start_turn(self, prompt: str = "") -> list[Emit]:
        self.turn += 1
        self.turn_open = True
        return [Emit(TurnStarted(turn=self.turn, prompt=prompt))]

    def end_turn(self, status: str = "completed", error: str = "") -> list[Emit]:
        if not self.turn_open:
            return []
        self.turn_open = False
        return [Emit(TurnEnded(turn=self.turn, status=status, error=error))]

    def model_called(self, ok: bool, error: str = "", request_id: str = "",
                     model: str = "", retry: int = 0) -> Emit:
        """A ``model_called`` emit, counted in :attr:`state`."""
        if ok:
            self.state.model_calls_ok += 1
        else:
            self.state.model_calls_failed += 1
            self.state.last_error = error or self.state.last_error
        return Emit(ModelCalled(model=model or self.state.model, ok=ok, error=error,
                                request_id=request_id, retry=retry))

    def error(self, message: str, origin: str = "agent", error_type: str = "",
              fatal: bool = False, part: int | None = None) -> Emit:
        """An ``error_occurred`` emit (message never empty), remembered as ``last_error``."""
        message = message or error_type or "unknown error"
        self.state.last_error = message
        return Emit(ErrorOccurred(message=message, origin=origin, error_type=error_type,
                                  fatal=fatal), part)

    def relpath(self, path: str) -> str:
        if self.workdir and os.path.isabs(path):
            rel = os.path.relpath(path, self.workdir)
            if not rel.startswith(".."):
                return rel
        return path

    def tool_part(self, *, call_id: str, tool: str, arguments: Any = None, command: str = "",
                  status: str = "ok", output: str = "", exit_code: int | None = None,
                  duration_ms: float | None = None, error: str = "",
                  changes: list[tuple[str, str]] | None = None,
                  called_ns: int | None = None, title: str = "") -> list[Emit]:
        """All events of one completed tool call, as one part.

        ``changes`` are ``(path, change)`` pairs the agent reported; they become
        ``file_changed(origin="agent")`` events only when the call succeeded. A call that looks
        like a test run also yields ``tests_ran`` (counts parsed from ``output`` when a known
        summary is found) and the part's kind is ``test``.
        """
        part = self.next_part()
        changes = [(self.relpath(p), c) for p, c in (changes or [])]
        paths = [p for p, _ in changes]
        out = [
            Emit(ToolCalled(call_id=call_id, tool=tool, arguments=arguments, command=command,
                            paths=paths), part, ts=called_ns),
            Emit(ToolReturned(call_id=call_id, tool=tool, status=status, output=output,
                              output_bytes=len(output.encode("utf-8", "replace")),
                              exit_code=exit_code, duration_ms=duration_ms, error=error), part),
        ]
        if status == "ok":
            out += [Emit(FileChanged(path=p, change=c, origin="agent"), part) for p, c in changes]
        kind = "patch" if changes and status == "ok" else "tool"
        if looks_like_test(tool, command):
            kind = "test"
            counts = parse_test_summary(output) or {"suite": tool}
            out.append(Emit(TestsRan(command=command, exit_code=exit_code, call_id=call_id,
                                     duration_ms=duration_ms, **counts), part))
        title = title or title_of(f"{tool}: {command}" if command else tool)
        out.append(Emit(PartEnded(part_kind=kind, title=title, tool=tool, call_id=call_id), part))
        return out
