"""What the JSON-line adapters share: the never-raising feed loop, part and turn numbering,
tool parts, and recognising test runs in tool calls (their counts come from the one
test-result parser, ``agtrace.eventlog.parse_test_output``).

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
    MAX_DEPTH,
    ErrorOccurred,
    FileChanged,
    InvalidEvent,
    ModelCalled,
    PartEnded,
    RawRecorded,
    TestsRan,
    ToolCalled,
    ToolReturned,
    TurnEnded,
    TurnStarted,
    check_record,
    parse_test_output,
)

from ..adapter import AdapterState, Emit, known_types

TITLE_MAX = 100

_TEST_TOOL = re.compile(r"run_?tests?")
_PATCH_FILE = re.compile(r"^\*\*\* (Add|Update|Delete) File: (.+)$", re.M)
_PATCH_CHANGE = {"Add": "add", "Update": "modify", "Delete": "delete"}

# One shell command line → its simple commands (quotes count as blanks: `bash -lc 'pytest'`).
_COMMAND_SPLIT = re.compile(r"&&|\|\||[;|&()\n`{}]|\$\(")
# Words that run the next word as the command: (word, how many of its arguments to skip).
_WRAPPERS = {"sudo": 0, "time": 0, "env": 0, "nice": 0, "nohup": 0, "exec": 0, "command": 0,
             "xvfb-run": 0, "stdbuf": 0, "timeout": 1, "npx": 0, "pnpx": 0, "bunx": 0,
             "bash": 0, "sh": 0, "zsh": 0, "dash": 0}
_RUN_PREFIXES = {("uv", "run"), ("poetry", "run"), ("pipenv", "run"), ("pdm", "run"),
                 ("hatch", "run"), ("rye", "run"), ("conda", "run"), ("npm", "exec"),
                 ("pnpm", "exec"), ("pnpm", "dlx"), ("coverage", "run"), ("bundle", "exec")}
_RUNNERS = {"pytest", "py.test", "unittest", "nose2", "tox", "nox", "ctest", "prove", "jest",
            "vitest", "mocha", "ava", "gotestsum", "rspec", "phpunit", "run_tests.sh",
            "run-tests.sh", "runtests.sh", "test.sh", "tests.sh", "runtests.py", "run_tests.py"}
# runner word → its first argument that tests (`go test`, `npm run test:unit`, `yarn jest`)
_RUNNER_VERBS = {"go": {"test"}, "cargo": {"test", "nextest"}, "npm": {"test", "t"},
                 "pnpm": {"test", "t"}, "yarn": {"test"}, "bun": {"test"}, "deno": {"test"},
                 "dotnet": {"test"}, "swift": {"test"}, "mix": {"test"}, "hatch": {"test"},
                 "manage.py": {"test"}}
# runner word → any argument that tests (`make -C build check`, `node --reporter=x --test`)
_ANYWHERE_VERBS = {"make": {"test", "tests", "check"}, "mvn": {"test", "verify"},
                   "gradle": {"test", "check"}, "gradlew": {"test", "check"},
                   "node": {"--test"}, "bazel": {"test"}}
_PYTHON = re.compile(r"(?:python|pypy)[\d.]*")


def looks_like_test(tool: str, command: str = "") -> bool:
    """True for a test run: a tool named like ``*run_tests*``, or a shell command any of whose
    simple commands runs a test runner the result parser knows (pytest, ``python -m unittest``,
    ``go test``, ``cargo test``, ``node --test``, ``npx vitest``, jest, ctest, prove,
    ``make test``, ``npm test``, …), after wrappers such as ``env X=1``, ``timeout 60``,
    ``uv run`` and ``bash -lc '…'``. ``cat tox.ini`` or ``grep jest`` are not test runs."""
    if _TEST_TOOL.search(tool.lower().replace("-", "_")):
        return True
    text = command.replace("'", " ").replace('"', " ")
    return any(_runs_tests(part.split()) for part in _COMMAND_SPLIT.split(text))


def _runs_tests(words: list[str]) -> bool:
    """Whether one simple command, as its words, runs tests."""
    i = 0
    while i < len(words):  # past VAR=1, wrappers and the wrappers' options
        word = words[i].rsplit("/", 1)[-1]
        if word in _WRAPPERS:
            i += 1 + _WRAPPERS[word]
        elif (word, words[i + 1] if i + 1 < len(words) else "") in _RUN_PREFIXES:
            i += 2
        elif (i > 0 and word.startswith("-")) or ("=" in word and not word.startswith("-")):
            i += 1
        else:
            break
    if i >= len(words):
        return False
    word, rest = words[i].rsplit("/", 1)[-1], words[i + 1:]
    first = rest[0].rsplit("/", 1)[-1] if rest else ""
    if _PYTHON.fullmatch(word):
        while rest and rest[0].startswith("-") and rest[0] != "-m":  # -B, -u, -X dev, -W x
            rest = rest[2:] if rest[0] in ("-X", "-W") else rest[1:]
        first = rest[0].rsplit("/", 1)[-1] if rest else ""
        if first == "-m":
            return rest[1:2] != [] and rest[1] in _RUNNERS
        return first in _RUNNERS or (first == "manage.py" and rest[1:2] == ["test"])
    if word in _RUNNERS:
        return True
    if word in _RUNNER_VERBS:
        args = rest[1:] if first == "run" else rest  # npm run test, bun run test
        verb = args[0].rsplit("/", 1)[-1] if args else ""
        return verb in _RUNNER_VERBS[word] or verb in _RUNNERS or (
            word in ("npm", "pnpm", "yarn", "bun") and verb.startswith("test"))
    if word in _ANYWHERE_VERBS:
        return any(a in _ANYWHERE_VERBS[word] or a.startswith("--test=") for a in rest)
    return False


def paths_from_patch(text: str) -> list[tuple[str, str]]:
    """``(path, change)`` pairs named by an ``*** Begin Patch`` text (Codex/OpenCode format)."""
    return [(p.strip(), _PATCH_CHANGE[k]) for k, p in _PATCH_FILE.findall(text or "")]


def record_type_pattern(*types: str) -> re.Pattern[str]:
    """A pattern found in every JSON line whose record (or a record nested in it) has one of
    ``types`` as its ``"type"``, whatever the spacing: the cheap test of an adapter's
    ``may_end_part``, which may accept more lines than end parts but never fewer."""
    alternatives = "|".join(map(re.escape, types))
    return re.compile(r'"type"\s*:\s*"(?:' + alternatives + ')"')


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
        except RecursionError:
            return [self.raw(line, f"invalid JSON: nested deeper than the limit of {MAX_DEPTH} levels")]
        if not isinstance(record, dict):
            return [self.raw(line, f"expected a JSON object, got {type(record).__name__}")]
        try:
            emits = self.handle(record)
        except Exception as exc:  # a malformed record must not stop the capture
            return [self.raw(line, f"{self.name}: {type(exc).__name__}: {exc}")]
        return self._within_limits(line, emits)

    def _within_limits(self, line: str, emits: list[Emit]) -> list[Emit]:
        """The emits whose values keep the store's limits (``agtrace.eventlog.check_record``:
        64-bit integers, nesting, valid text); the others are dropped and the line is kept raw
        with the first one's problem as its parse error, so the capture goes on gapless."""
        kept: list[Emit] = []
        problem = ""
        for emit in emits:
            try:
                check_record(emit.event, emit.ts, emit.part, text=True)
            except InvalidEvent as exc:
                problem = problem or str(exc)
                continue
            kept.append(emit)
        if problem:
            kept.insert(0, self.raw(line, f"{self.name}: a value is out of bounds: {problem}"))
        return kept

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
        like a test run (:func:`looks_like_test`) also yields ``tests_ran``, counted from
        ``output`` by :func:`agtrace.eventlog.parse_test_output` (the parser re-scoring uses;
        zero counts when it finds no summary), and the part's kind is ``test``.
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
            fields = {"command": command, "exit_code": exit_code, "call_id": call_id,
                      "duration_ms": duration_ms}
            summary = parse_test_output(output)
            tests = summary.tests_ran(**fields) if summary else TestsRan(suite=tool, **fields)
            out.append(Emit(tests, part))
        title = title or title_of(f"{tool}: {command}" if command else tool)
        out.append(Emit(PartEnded(part_kind=kind, title=title, tool=tool, call_id=call_id), part))
        return out
