"""Adapter for ``opencode run --format json`` (``packages/opencode/src/cli/cmd/run.ts``).

Every line is ``{type, timestamp, sessionID, ...}``. ``run.ts`` emits ``step_start`` and
``step_finish`` for every step (one model call), ``text`` and ``reasoning`` (the latter only with
``--thinking``) once the part has ended, ``tool_use`` once a tool part is ``completed`` or
``error``, ``error{error{name, data{message}}}`` for session errors and, in recent releases,
``done{reason: "idle"}`` when the session went idle.

Mapping (one ``text``/``reasoning``/``tool_use`` record = one part; one ``opencode run`` = one turn):

======================  ==============================================================
record                  events
======================  ==============================================================
first record            ``turn_started`` (``state.session_id`` from ``sessionID``)
``text``                ``message_added(assistant)`` + ``part_ended(message)``
``reasoning``           ``reasoning_added`` + ``part_ended(reasoning)``
``tool_use``            ``tool_called`` + ``tool_returned`` [+ ``file_changed`` for edit/write/
                        patch tools] [+ ``tests_ran`` for ``*run_tests*`` tools and test
                        commands] + ``part_ended(tool|patch|test)``
``step_finish``         ``model_called(ok)`` + ``usage_reported`` (``part.tokens`` of that step,
                        attached to the step's last part, else part None)
``error``               ``model_called(failed)`` (unless the user aborted) + ``error_occurred``
``done`` / finish       ``turn_ended`` (``failed`` when an ``error`` was seen)
======================  ==============================================================

``step_finish.tokens`` are per step, not cumulative (``Session.getUsage`` maps one AI-SDK step's
usage); a repeated line for the same step part id is dropped by
:class:`~agtrace.capture.usage.DedupeById`. ``tokens.input`` excludes cached tokens
(``adjustedInputTokens``); see :func:`~agtrace.capture.usage.usage_from_opencode` for output.
Record types (:attr:`OpenCodeRunAdapter.known`) are the records' ``type``; a record of another
type is counted as unknown (kept raw by the caller).

The stream names neither model nor version: pass ``model=``/``agent_version=``.
"""

from __future__ import annotations

from typing import Any

from agtrace.eventlog import MessageAdded, PartEnded, ReasoningAdded, UsageReported

from ..adapter import Emit
from ..usage import OPENCODE_COUNTERS, DedupeById, unknown_counters, usage_from_opencode
from .base import JsonLineAdapter, paths_from_patch, record_type_pattern, title_of

_EDIT_TOOLS = {"edit", "multiedit"}
_PATCH_TOOLS = {"patch", "apply_patch"}
_NOT_MODEL_ERRORS = {"MessageAbortedError"}
_CONTENT = ("step_start", "text", "reasoning", "tool_use", "step_finish")
KNOWN = {"*": frozenset((*_CONTENT, "error", "done"))}
_MAY_END_PART = record_type_pattern("text", "reasoning", "tool_use")


class OpenCodeRunAdapter(JsonLineAdapter):
    """Parses ``opencode run --format json`` stdout."""

    name = "opencode.run_json"
    programs = ("opencode",)
    """The CLI this adapter reads, asked for its version (``opencode --version``) at capture."""
    known = KNOWN

    def __init__(self, **opts: Any) -> None:
        super().__init__(**opts)
        self.dedupe = DedupeById()
        self.cost: dict[str, float] = {}
        self.step_first_part = 0
        self.step_reason: str | None = None  # None while a step is open or before any step
        self.failure = ""

    def may_end_part(self, line: str, stream: str = "stdout") -> bool:
        """Whether ``line`` may end a part (a cheap over-estimate: ``text``, ``reasoning`` and
        ``tool_use`` records end parts): the capture freezes the agent the moment such a line is
        read, so the part's snapshot holds the tree as of the line, not as of when the loop got
        to it. (OpenCode may print a step's ``reasoning``/``text`` only after the step's tool ran:
        then that tool's edits are in the tree already, see the README.)"""
        return stream == "stdout" and _MAY_END_PART.search(line) is not None

    def handle(self, rec: dict[str, Any]) -> list[Emit]:
        kind = rec.get("type")
        if not isinstance(kind, str):
            raise ValueError("a record without a type")
        if not self.knows(kind):
            return self.unknown(kind)
        part = rec.get("part") if isinstance(rec.get("part"), dict) else {}
        if rec.get("sessionID") and not self.state.session_id:
            self.state.session_id = str(rec["sessionID"])
        out = self.start_turn() if kind in _CONTENT and not self.turn_open else []
        if kind == "step_start":
            self.step_first_part = self.parts + 1
            self.step_reason = None
        elif kind == "text":
            text = str(part.get("text") or "")
            self.state.final_message = text
            n = self.next_part()
            out += [Emit(MessageAdded(role="assistant", text=text, model=self.state.model,
                                      message_id=str(part.get("messageID") or "")), n),
                    Emit(PartEnded(part_kind="message", title=title_of(text)), n)]
        elif kind == "reasoning":
            text = str(part.get("text") or "")
            n = self.next_part()
            out += [Emit(ReasoningAdded(text=text), n),
                    Emit(PartEnded(part_kind="reasoning", title=title_of(text)), n)]
        elif kind == "tool_use":
            out += self.tool(part)
        elif kind == "step_finish":
            out += self.step_finish(part)
        elif kind == "error":
            out += self.failed(rec.get("error"))
        elif kind == "done":
            out += self.end_turn("failed" if self.failure else "completed", self.failure)
        return out

    def close(self) -> list[Emit]:
        """Without ``done`` (older releases): the turn completed if the last step finished with
        a final reason (not ``tool-calls``), failed if an error was seen, else interrupted."""
        if self.failure:
            return self.end_turn("failed", self.failure)
        done = self.step_reason not in (None, "", "tool-calls")
        return self.end_turn("completed" if done else "interrupted")

    def step_finish(self, part: dict[str, Any]) -> list[Emit]:
        self.step_reason = str(part.get("reason") or "")
        key = str(part.get("id") or part.get("messageID") or "")
        message_id = str(part.get("messageID") or "")
        out = [] if key in self.dedupe else [self.model_called(True, request_id=message_id)]
        tokens = part.get("tokens") if isinstance(part.get("tokens"), dict) else {}
        for name in unknown_counters(tokens, OPENCODE_COUNTERS):
            self.unknown(f"usage.{name}")
        delta = self.dedupe.feed(key, usage_from_opencode(tokens))
        cost = part.get("cost")
        cost_delta = None
        if isinstance(cost, int | float) and not isinstance(cost, bool):
            cost_delta = max(0.0, float(cost) - self.cost.get(key, 0.0))
            self.cost[key] = max(float(cost), self.cost.get(key, 0.0))
        if delta is not None:
            attach = self.parts if self.parts >= self.step_first_part > 0 else None
            out.append(Emit(UsageReported(usage=delta, model=self.state.model, cost_usd=cost_delta,
                                          request_id=message_id), attach))
        return out

    def failed(self, err: Any) -> list[Emit]:
        err = err if isinstance(err, dict) else {"message": str(err)}
        name = str(err.get("name") or "")
        data = err.get("data") if isinstance(err.get("data"), dict) else {}
        message = str(data.get("message") or err.get("message") or name or "error")
        self.failure = message
        if name in _NOT_MODEL_ERRORS:
            return [self.error(message, origin="agent", error_type=name)]
        return [self.model_called(False, message),
                self.error(message, origin="model", error_type=name)]

    def tool(self, part: dict[str, Any]) -> list[Emit]:
        tool = str(part.get("tool") or "tool")
        state = part.get("state") if isinstance(part.get("state"), dict) else {}
        args = state.get("input") if isinstance(state.get("input"), dict) else {}
        meta = state.get("metadata") if isinstance(state.get("metadata"), dict) else {}
        times = state.get("time") if isinstance(state.get("time"), dict) else {}
        ok = state.get("status") == "completed"
        command = str(args.get("command") or "") if isinstance(args.get("command"), str) else ""
        exit_code = meta.get("exit") if isinstance(meta.get("exit"), int) else None
        duration = None
        if isinstance(times.get("start"), int | float) and isinstance(times.get("end"), int | float):
            duration = float(times["end"] - times["start"])
        path = str(args.get("filePath") or args.get("file_path") or "")
        changes: list[tuple[str, str]] = []
        if tool in _EDIT_TOOLS and path:
            changes = [(path, "modify")]
        elif tool == "write" and path:
            changes = [(path, "modify" if meta.get("exists") else "add")]
        elif tool in _PATCH_TOOLS:
            changes = paths_from_patch(str(args.get("patchText") or args.get("patch") or ""))
        detail = command or str(state.get("title") or path or "")
        error = "" if ok else str(state.get("error") or "tool failed")
        if ok and exit_code not in (None, 0):
            ok, error = False, f"exit code {exit_code}"
        return self.tool_part(
            call_id=str(part.get("callID") or part.get("id") or ""), tool=tool, arguments=args,
            command=command, status="ok" if ok else "error", output=str(state.get("output") or ""),
            exit_code=exit_code, duration_ms=duration, error=error, changes=changes,
            title=title_of(f"{tool}: {detail}" if detail else tool))
