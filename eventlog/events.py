"""Event types: one tagged union of frozen msgspec Structs.

Every event is a past-tense fact. Its ``kind`` tag is an explicit, stable snake-case string
(never a class name). The envelope (``seq``, ``ts``, ``part``) is not part of the event body: it
is stored beside it and returned as a :class:`Record`.

Evolution rules (normative, see ``docs/format.md``):

1. A new field always has a default, so logs written before it still decode.
2. A field's type never changes and a field is never renamed or reused; add a new one instead.
3. A tag never changes meaning; a new kind of fact gets a new tag.
4. Unknown fields are ignored on read, so a newer log degrades gracefully in an older reader;
   an unknown *kind* decodes as :class:`UnknownEvent` with its raw body kept.

Large text (tool output, raw records) may live in the blob store: ``*_blob`` fields hold the
sha256 address of the full content while the inline field keeps a prefix.

The run's lifecycle and evidence events (tests, usage, scores, output lines, raw records, errors)
are defined here, the conversation's (turns, messages, reasoning, tool and model calls) in
``conversation.py``, the workspace's (file changes, snapshots) in ``workspace.py``, the base and
the envelope in ``envelope.py``; this module holds the union of them all and re-exports every
name.
"""

from __future__ import annotations

from typing import Any

import msgspec

from .conversation import (
    MessageAdded,
    ModelCalled,
    ReasoningAdded,
    ToolCalled,
    ToolReturned,
    TurnEnded,
    TurnStarted,
)
from .envelope import Event, Record, UnknownEvent, kind_of
from .workspace import Excluded, FileChanged, SnapshotTaken


class Usage(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Token counts of one model call or one part, never cumulative.

    Attributes:
        input: prompt tokens that were not read from the cache.
        output: generated tokens, including reasoning tokens.
        cache_read: prompt tokens served from the provider's cache.
        cache_write: prompt tokens written to the provider's cache.
        reasoning: generated tokens spent on hidden reasoning (a subset of ``output``).
    """

    input: int = 0
    output: int = 0
    cache_read: int = 0
    cache_write: int = 0
    reasoning: int = 0

    @property
    def total(self) -> int:
        """The one token total: input + output + cache read + cache write (reasoning is inside
        output). Every figure named ``tokens`` is a sum of this over usage deltas."""
        return self.input + self.output + self.cache_read + self.cache_write


class TestCase(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One test in a test or evaluation result.

    Attributes:
        name: the test's id as the runner names it (``tests/test_x.py::test_y``).
        outcome: ``passed``, ``failed``, ``error`` or ``skipped``.
        duration_ms: wall time of the test, when the runner reports it.
        message: the failure message, when there is one.
    """

    __test__ = False  # not a pytest class

    name: str
    outcome: str
    duration_ms: float | None = None
    message: str = ""


class RunStarted(Event, tag="run_started"):
    """The run began. Always the first event (seq 1) of a run.

    Attributes:
        agent: agent name (``codex``, ``claude-code``, ``opencode``, ``raw``, ``demo``, ...).
        agent_version: the agent's version as the agent reported it (never "latest").
        model: the model as actually called, when known at start.
        task_id: the task's stable id (benchmark instance, issue id).
        prompt: the task prompt as given to the agent.
        prompt_sha256: hex sha256 of ``prompt`` (so leaks and duplicates can be audited).
        repo: the repository the task is about (URL or name, unmangled).
        base_commit: the commit the workdir started from.
        workdir: absolute path of the agent's working directory.
        command: the agent's argv.
        config: free-form agent configuration.
        config_sha256: hex sha256 of ``config`` encoded canonically.
        attempt: attempt number of this task by this agent configuration (1-based).
        parent_run: the run this one resumes or re-runs; a resumed run is a new run.
        tags: free-form labels (``campaign``, ``experiment``, ...).
        host: hostname of the machine that captured the run.
        heartbeat_s: seconds between heartbeats; when set, a run without an end event whose
            writer is gone is shown as crashed.
        source: how the run came in: ``capture``, ``append``, ``import:<format>``.
        source_version: for an import, the tool or format version read from the source
            (``2.1.329``, ``0.169.0``, ``v1``); "" when the source does not say.
    """

    agent: str = ""
    agent_version: str = ""
    model: str = ""
    task_id: str = ""
    prompt: str = ""
    prompt_sha256: str = ""
    repo: str = ""
    base_commit: str = ""
    workdir: str = ""
    command: list[str] = []
    config: dict[str, Any] = {}
    config_sha256: str = ""
    attempt: int = 1
    parent_run: str = ""
    tags: dict[str, str] = {}
    host: str = ""
    heartbeat_s: float | None = None
    source: str = ""
    source_version: str = ""


class TestsRan(Event, tag="tests_ran"):
    """A test or evaluation result.

    Counts follow the counting rule of ``agtrace.eventlog.testresult`` (``docs/metrics.md``)
    when they were parsed from a runner's output.

    Attributes:
        suite: name of the suite or scorer (the runner's format when parsed: ``pytest``, …).
        passed: tests that met their expectation.
        failed: tests that did not.
        errors: tests that could not run to a verdict (setup, collection, crash, build).
        skipped: tests skipped, ignored, todo or expected to fail.
        total: ``passed + failed + errors + skipped``.
        tests: per-test detail, when parsed.
        tally: the runner's own counts under its own words (``xfailed``, ``deselected``, …).
        tree_id: the workspace tree the tests ran on.
        command: the command that ran them.
        exit_code: the command's exit code.
        call_id: the tool call that ran them, when an agent ran them.
        duration_ms: wall time.
        environment: what the result depends on (image, wheel, scorer version, ...).
    """

    __test__ = False  # not a pytest class

    suite: str = ""
    passed: int = 0
    failed: int = 0
    errors: int = 0
    skipped: int = 0
    total: int = 0
    tests: list[TestCase] = []
    tree_id: str = ""
    command: str = ""
    exit_code: int | None = None
    call_id: str = ""
    duration_ms: float | None = None
    environment: dict[str, str] = {}
    tally: dict[str, int] = {}

    @property
    def counted_total(self) -> int:
        """The result's total as every figure counts it: ``total``, or passed + failed + errors
        + skipped when it is 0 (a hand-written or older event that left it out)."""
        return self.total or self.passed + self.failed + self.errors + self.skipped


class UsageReported(Event, tag="usage_reported"):
    """Tokens spent, as a delta (never a running total), for one model call or part.

    Attributes:
        usage: the token counts of this delta.
        model: the model billed.
        cost_usd: cost of this delta in US dollars, when known.
        request_id: the provider's request or message id this delta belongs to. Adapters drop
            repeated reports before emitting, so several deltas may share an id (a message whose
            usage grew while it streamed); readers sum deltas, never dedupe them by this field.
        cumulative: the provider's running total this delta was derived from, kept as evidence.
    """

    usage: Usage
    model: str = ""
    cost_usd: float | None = None
    request_id: str = ""
    cumulative: Usage | None = None


class PartEnded(Event, tag="part_ended"):
    """A part (one observable agent item) completed. The envelope's ``part`` is its number.

    Attributes:
        part_kind: ``message``, ``reasoning``, ``tool``, ``patch``, ``test`` or ``other``.
        title: one line for people: the tool and command, or the message's start.
        tool: tool name, for tool parts.
        call_id: tool call id, for tool parts.
        tree_id: workspace tree after the part, so ``--part N`` is a lookup.
    """

    part_kind: str = "other"
    title: str = ""
    tool: str = ""
    call_id: str = ""
    tree_id: str = ""


class LineLogged(Event, tag="line_logged"):
    """A line the agent wrote to stdout or stderr, timestamped on arrival.

    Attributes:
        stream: ``stdout`` or ``stderr``.
        text: the line without its newline, decoded as UTF-8 with replacement (U+FFFD for each
            byte that is not UTF-8): what people, search and transcripts read.
        redactions: how many secrets were replaced by ``[REDACTED:<kind>]`` in the line before
            it was stored (1 for a line inside a multi-line private key).
        continued: the line goes on in the next ``line_logged`` event of the same stream: a line
            longer than the capture's piece size (8 MiB) is stored as consecutive pieces, each
            but the last with ``continued``; joined, they are the line.
        data: the line's exact bytes (redacted like ``text``), when they are not valid UTF-8;
            empty otherwise, when ``text`` encoded as UTF-8 is the line's bytes. Readers that
            want the bytes read ``data or text.encode()`` (:attr:`raw`).
    """

    stream: str
    text: str
    redactions: int = 0
    continued: bool = False
    data: bytes = b""

    @property
    def raw(self) -> bytes:
        """The line's bytes exactly as the agent printed them (redacted)."""
        return self.data or self.text.encode()


class RawRecorded(Event, tag="raw_recorded"):
    """A source record kept verbatim, so a better parser can re-read old runs.

    Attributes:
        source: the format (``codex.exec_json``, ``claude.stream_json``, ``import:swe-agent``...).
        text: the record as text (a prefix when ``blob`` is set); for a record that is not valid
            UTF-8, empty (an import) or, for a line an agent printed, its decoding with U+FFFD
            for each bad byte.
        data: the record's exact bytes, when it is not valid UTF-8.
        blob: sha256 of the full record in the blob store.
        location: where the record came from (``file:line`` or byte offset).
        parse_error: why the record could not be parsed, if it could not.
        redactions: how many secrets were replaced by ``[REDACTED:<kind>]`` in the record
            before it was stored; the record is verbatim apart from them.
        continued: the record goes on in the next ``raw_recorded`` event of the same
            ``location``: a line longer than the capture's piece size (8 MiB) is kept as
            consecutive pieces (not parsed), each but the last with ``continued``.
    """

    source: str
    text: str = ""
    data: bytes = b""
    blob: str = ""
    location: str = ""
    parse_error: str = ""
    redactions: int = 0
    continued: bool = False


class ErrorOccurred(Event, tag="error_occurred"):
    """An error: of the agent, a tool, a model call, or of capture itself.

    Attributes:
        message: what happened, never empty.
        origin: ``agent``, ``model``, ``tool``, ``capture`` or ``import``.
        error_type: the error's class or code, when known.
        fatal: whether the error ended the run.
        raw_seq: seq of the raw record the error came from.
    """

    message: str
    origin: str = "agent"
    error_type: str = ""
    fatal: bool = False
    raw_seq: int | None = None


class HeartbeatSent(Event, tag="heartbeat_sent"):
    """The capture process is alive."""


class Scored(Event, tag="scored"):
    """A scorer ran on a part's tree after the fact (re-scoring). Appended, never rewritten.

    Attributes:
        scorer: the scorer's name.
        scorer_digest: sha256 of the scorer's command and environment.
        tree_id: the tree scored.
        scored_part: the part whose tree was scored.
        value: the score (pass rate, or what the scorer reports).
        passed: tests passed, when it is a test suite (counted as ``tests_ran`` counts).
        failed: tests failed.
        total: tests counted (``passed + failed + errors + skipped`` for a parsed runner).
        status: ``ok``, ``error`` or ``timeout``.
        exit_code: the scorer's exit code.
        duration_ms: wall time.
        output_tail: the end of the scorer's output.
        reused_from: run id and seq of an identical (tree, scorer) result that was reused.
        errors: tests that could not run to a verdict, when the result says.
        skipped: tests skipped, ignored, todo or expected to fail, when the result says.
        final: the tree scored is the run's final tree (its snapshot at close), which is not
            ``scored_part``'s own tree: the work after the last part ended. False (and every
            event from before the field): the tree of ``scored_part``.
    """

    scorer: str
    scorer_digest: str
    tree_id: str
    scored_part: int | None = None
    value: float | None = None
    passed: int | None = None
    failed: int | None = None
    total: int | None = None
    status: str = "ok"
    exit_code: int | None = None
    duration_ms: float | None = None
    output_tail: str = ""
    reused_from: str = ""
    errors: int | None = None
    skipped: int | None = None
    final: bool = False


class RunTagged(Event, tag="run_tagged"):
    """Tags set or removed after the fact (``agtrace tag``). Appended to the run's ``scores``
    stream, the stream of what is added to a run later; the run's events are never edited.

    A run's tags are those of ``run_started``, then each ``run_tagged`` in seq order: ``tags``
    set (a later value replaces an earlier one), ``removed`` deleted.

    Attributes:
        tags: the tags set.
        removed: the tag keys removed.
        author: who tagged the run (the user name, when known).
    """

    tags: dict[str, str] = {}
    removed: list[str] = []
    author: str = ""


class NoteAdded(Event, tag="note_added"):
    """A note written about a run, or one of its parts, after the fact (``agtrace note``).
    Appended to the run's ``scores`` stream; the run's events are never edited.

    Attributes:
        text: the note.
        noted_part: the part the note is about; None for the whole run.
        author: who wrote it (the user name, when known).
    """

    text: str
    noted_part: int | None = None
    author: str = ""


class RunEnded(Event, tag="run_ended"):
    """The run ended. Always the last event of a run.

    Attributes:
        status: ``completed``, ``failed``, ``limit``, ``timeout``, ``interrupted`` or ``crashed``.
        reason: why, in words (``no model call succeeded``, ``max parts reached``, ...).
        exit_code: the agent's exit code.
        signal: the signal that stopped the agent, if any.
        redactions: how many secrets were redacted during capture.
    """

    status: str
    reason: str = ""
    exit_code: int | None = None
    signal: int | None = None
    redactions: int = 0


AnyEvent = (
    RunStarted
    | TurnStarted
    | TurnEnded
    | MessageAdded
    | ReasoningAdded
    | ToolCalled
    | ToolReturned
    | FileChanged
    | TestsRan
    | UsageReported
    | ModelCalled
    | SnapshotTaken
    | PartEnded
    | LineLogged
    | RawRecorded
    | ErrorOccurred
    | HeartbeatSent
    | Scored
    | RunTagged
    | NoteAdded
    | RunEnded
)

EVENT_TYPES: tuple[type[Event], ...] = AnyEvent.__args__  # type: ignore[attr-defined]
KINDS: dict[str, type[Event]] = {t.__struct_config__.tag: t for t in EVENT_TYPES}
END_STATUSES = ("completed", "failed", "limit", "timeout", "interrupted", "crashed")

__all__ = [
    "END_STATUSES", "EVENT_TYPES", "KINDS", "AnyEvent", "ErrorOccurred", "Event", "Excluded",
    "FileChanged", "HeartbeatSent", "LineLogged", "MessageAdded", "ModelCalled", "NoteAdded", "PartEnded",
    "RawRecorded", "ReasoningAdded", "Record", "RunEnded", "RunStarted", "RunTagged", "Scored", "SnapshotTaken",
    "TestCase", "TestsRan", "ToolCalled", "ToolReturned", "TurnEnded", "TurnStarted", "UnknownEvent",
    "Usage", "UsageReported", "kind_of",
]
