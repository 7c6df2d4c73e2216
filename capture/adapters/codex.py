"""Adapter for ``codex exec --json`` (schema: ``codex-rs/exec/src/exec_events.rs``).

Mapping (one completed ``item`` = one part; ``item.started``/``item.updated`` only time them):

===================================  ==========================================================
record                               events
===================================  ==========================================================
``thread.started{thread_id}``        none; ``state.session_id``
``turn.started``                     ``turn_started``
``item.completed`` agent_message     ``message_added(assistant)`` + ``part_ended(message)``
``item.completed`` plan              ``message_added(assistant)`` + ``part_ended(message)``
``item.completed`` reasoning         ``reasoning_added`` + ``part_ended(reasoning)``
``item.completed`` command_execution ``tool_called(shell)`` + ``tool_returned`` [+ ``tests_ran``]
                                     + ``part_ended(tool|test)``
``item.completed`` file_change       ``tool_called(apply_patch)`` + ``tool_returned`` +
                                     ``file_changed(origin=agent)`` per path + ``part_ended(patch)``
``item.completed`` mcp_tool_call,    ``tool_called`` + ``tool_returned`` + ``part_ended(tool)``
collab_tool_call, web_search
``item.completed`` todo_list         ``part_ended(other)``
``item.completed`` error             ``error_occurred(agent)`` (a non-fatal warning, no part)
``turn.completed{usage}``            ``model_called(ok)`` + ``usage_reported`` (delta, part None)
                                     + ``turn_ended(completed)``
``turn.failed{error}``               ``model_called(failed)`` + ``error_occurred(model, fatal)``
                                     + ``turn_ended(failed)``
``error{message}``                   ``model_called(failed)`` + ``error_occurred(model)``
===================================  ==========================================================

Usage semantics. ``turn.completed.usage`` is the thread's *cumulative* total, not the turn's,
although ``exec_events.rs`` documents it as "usage of tokens during a turn": the JSONL writer
(``codex-rs/exec/src/event_processor_with_jsonl_output.rs``, ``usage_from_last_total``, openai/codex
@029bf4d5) fills it from ``ThreadTokenUsage.total`` of the last ``ThreadTokenUsageUpdated``
notification (older releases: ``TokenCountEvent.info.total_token_usage``). It is therefore fed
through :class:`~agtrace.capture.usage.CumulativeCounter`; the total is kept as ``cumulative``.
A ``codex exec resume`` process reports the resumed thread's earlier spend in its first total;
pass ``usage_baseline`` (the thread's total before this process) to subtract it.

Record types (:attr:`CodexExecAdapter.known`) are the records' ``type`` and, for completed items,
``item/<item type>``; a record of another type is counted as unknown (kept raw by the caller),
and so is a usage counter :func:`~agtrace.capture.usage.usage_from_openai` does not read
(``usage.<name>``, e.g. ``usage.future_tokens``): a warning, never an error.

The stream names neither the model nor the Codex version: pass ``model=``/``agent_version=``.
Codex does not report individual model requests in it, so from the stream alone one
``model_called(ok)`` is emitted per completed turn (a lower bound on the calls made).

The rollout. Given ``codex_home`` (``agtrace run`` on the local backend passes the agent's
``CODEX_HOME``, else ``~/.codex``), the adapter also follows the thread's rollout file
(:class:`~.codex_rollout_tail.RolloutTail`, from ``thread.started``) and takes from it what the
import of that file shows: the model (``turn_context``; it replaces the ``model=`` given), the
tool of the n-th ``command_execution`` (the n-th shell call of the rollout: ``exec_command``,
``shell_command``; ``shell`` when the rollout does not have it yet), and at
``turn.completed`` one ``model_called(ok)`` + ``usage_reported`` per model response of the
turn. The stream's cumulative total stays the measure of the turn's tokens: responses are taken
while their sum does not pass the turn's delta. When the rollout is behind the stream at
``turn.completed`` (Codex writes it asynchronously), the turn's calls and usage are held (after
its ``turn_ended``, no part either way) and released by a later ``tick`` once the rollout has
them, or at the next turn or the agent's exit (the file is complete then); what it still does
not have is one more call of the stream's remainder, so no token is lost or counted twice. A rollout that is never found leaves those figures the stream's, with a warning at the
end of the run. The rollout is read at the lines that need it (a shell item's part end, while the agent
is frozen: one read of the bytes appended since, never a wait), and at ``turn.completed``,
which ends no part.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from agtrace.eventlog import MessageAdded, PartEnded, ReasoningAdded, Usage, UsageReported

from ..adapter import Emit
from ..usage import (
    OPENAI_COUNTERS,
    ZERO,
    CumulativeCounter,
    add,
    increase,
    unknown_counters,
    usage_from_openai,
)
from .base import JsonLineAdapter, title_of
from .codex_rollout_tail import RolloutTail, codex_home

_RECORDS = ("thread.started", "turn.started", "turn.completed", "turn.failed", "item.started",
            "item.updated", "item.completed", "item.plan.delta", "request_user_input", "error")
_ITEMS = ("agent_message", "plan", "reasoning", "command_execution", "file_change",
          "mcp_tool_call", "collab_tool_call", "web_search", "todo_list", "error")
KNOWN = {"*": frozenset((*_RECORDS, *(f"item/{t}" for t in _ITEMS)))}
_TOOL_STATUS = {"completed": "ok", "failed": "error", "declined": "declined"}
_CHANGE_KIND = {"add": "add", "delete": "delete", "update": "modify"}


class CodexExecAdapter(JsonLineAdapter):
    """Parses ``codex exec --json`` stdout. Extra options: ``usage_baseline: Usage``;
    ``codex_home`` (follow the rollout there) and ``rollout_since_ns`` (its lines from then
    count; default: now)."""

    name = "codex.exec_json"
    programs = ("codex",)
    """The CLI this adapter reads, asked for its version (``codex --version``) at capture."""
    known = KNOWN

    def __init__(self, *, usage_baseline: Usage | None = None, codex_home: str | None = None,
                 rollout_since_ns: int | None = None, **opts: Any) -> None:
        super().__init__(**opts)
        self.usage = CumulativeCounter(usage_baseline)
        self.rollout = None if codex_home is None else RolloutTail(
            Path(codex_home), time.time_ns() if rollout_since_ns is None else rollout_since_ns)
        self.shell_calls = 0  # command_execution items so far (the n-th rollout shell call)
        self.responses = 0  # rollout usages taken so far
        self.held: tuple[Usage | None, Usage] | None = None
        """(stream delta, total) of a completed turn whose rollout responses are not all read yet."""
        self.started_ns: dict[str, int] = {}
        self.running: dict[str, dict[str, Any]] = {}  # started, not completed: latest copy
        self.turn_error = ""

    @classmethod
    def local_options(cls, env: dict[str, str] | None) -> dict[str, Any]:
        """Options for an agent run on this machine with ``env``: its Codex home, whose
        rollout the adapter follows (a sandbox's files are not here: stream only)."""
        return {"codex_home": str(codex_home(env))}

    def may_end_part(self, line: str, stream: str = "stdout") -> bool:
        """Whether ``line`` may end a part (a cheap over-estimate: only ``item.completed`` records
        end parts): the capture freezes the agent the moment such a line is read, so the part's
        snapshot holds the tree as of the line, not as of when the loop got to it."""
        return stream == "stdout" and "item.completed" in line

    def handle(self, rec: dict[str, Any]) -> list[Emit]:
        kind = rec.get("type")
        if not isinstance(kind, str):
            raise ValueError("a record without a type")
        if not self.knows(kind):
            return self.unknown(kind)
        if kind == "thread.started":
            self.state.session_id = str(rec.get("thread_id") or "")
            if self.rollout is not None:
                self.rollout.follow(self.state.session_id)
            return []
        if kind == "turn.started":
            self.read_rollout()
            out = self.release(final=True)
            out += self.end_turn("interrupted") if self.turn_open else []
            self.turn_error = ""
            return out + self.start_turn()
        if kind in ("item.started", "item.updated"):
            item = rec.get("item") or {}
            self.started_ns.setdefault(str(item.get("id")), self.now_ns())
            self.running[str(item.get("id"))] = item
            return []
        if kind == "item.completed":
            self.read_rollout()
            return self.item(rec.get("item") or {})
        if kind == "turn.completed":
            return self.turn_completed(rec.get("usage") or {})
        if kind == "turn.failed":
            message = str((rec.get("error") or {}).get("message") or "turn failed")
            out = []
            if message != self.turn_error:
                out += [self.model_called(False, message),
                        self.error(message, origin="model", fatal=True)]
            return out + self.end_turn("failed", message)
        if kind == "error":
            message = str(rec.get("message") or "error")
            self.turn_error = message
            return [self.model_called(False, message), self.error(message, origin="model")]
        return []  # item.plan.delta, request_user_input: the line is kept raw

    def close(self) -> list[Emit]:
        """Items still running when the agent exited become failed parts, then the turn ends."""
        out: list[Emit] = []
        for item in list(self.running.values()):
            if item.get("type") in ("command_execution", "mcp_tool_call", "collab_tool_call",
                                    "file_change"):
                out += self.item({**item, "status": "failed", "exit_code": None,
                                  "error": {"message": "agent exited before the item completed"}})
        self.running.clear()
        self.read_rollout()  # the agent has exited: its rollout is complete
        out += self.release(final=True)
        tail = self.rollout
        if tail is not None and tail.thread_id and tail.path is None:
            self.state.warnings.append(
                f"the rollout of Codex thread {tail.thread_id} was not found under {tail.home / 'sessions'}: "
                "the model, model calls and tool names are the `exec --json` stream's (no model, one call "
                "per turn, tool `shell`); set CODEX_HOME to the agent's Codex home, or import its rollout")
        return out + super().close()

    def read_rollout(self) -> None:
        """Read what the rollout gained; its model, once named, is the run's."""
        if self.rollout is not None:
            self.rollout.read()
            self.state.model = self.rollout.model or self.state.model

    def turn_completed(self, usage: dict[str, Any]) -> list[Emit]:
        for name in unknown_counters(usage, OPENAI_COUNTERS):
            self.unknown(f"usage.{name}")
        out = self.release(final=True)  # (a turn still held: its responses are all written now)
        self.read_rollout()
        total = usage_from_openai(usage)
        self.held = (self.usage.feed(total), total)
        final = self.rollout is None or self.rollout.path is None  # no file: nothing to wait for
        return out + self.release(final=final) + self.end_turn("completed")

    def release(self, *, final: bool) -> list[Emit]:
        """The calls and usage of the turn whose stream usage is held: one per model response
        of the rollout while their sum does not pass the stream's delta; once ``final`` (or
        when the rollout has them all), the stream's remainder as one more call. Not final and
        the rollout behind the stream: nothing yet, the turn stays held (see :meth:`tick`)."""
        if self.held is None:
            return []
        delta, total = self.held
        taken, responses = ZERO, []
        for rid, u in (self.rollout.usages() if self.rollout is not None else [])[self.responses:]:
            if delta is None or add(taken, u).total > delta.total:
                break  # a response of the next turn, or more than the stream counts
            taken = add(taken, u)
            responses.append((rid, u))
        lags = delta is not None and taken.total < delta.total
        if lags and not final:
            return []
        self.held = None
        self.responses += len(responses)
        out: list[Emit] = []
        for rid, u in responses:
            out += [self.model_called(True, request_id=rid),
                    Emit(UsageReported(usage=u, model=self.state.model, request_id=rid))]
        if not out or lags:  # the stream's own report (of what the rollout does not have): one call
            out.append(self.model_called(True))
            if lags:
                out.append(Emit(UsageReported(usage=increase(delta, taken), model=self.state.model,
                                              cumulative=total)))
        return out

    def tick(self, now_s: float) -> list[Emit]:
        """A turn held for its rollout: read what was appended, release it once complete."""
        if self.held is None:
            return []
        self.read_rollout()
        return self.release(final=False)

    def item(self, item: dict[str, Any]) -> list[Emit]:
        kind = item.get("type")
        item_id = str(item.get("id") or "")
        started = self.started_ns.pop(item_id, None)
        self.running.pop(item_id, None)
        if not self.knows(f"item/{kind}"):
            return self.unknown(f"item/{kind}")
        duration = (self.now_ns() - started) / 1e6 if started else None
        if kind in ("agent_message", "plan"):
            text = str(item.get("text") or "")
            self.state.final_message = text
            part = self.next_part()
            title = title_of(text) if kind == "agent_message" else title_of(f"plan: {text}")
            return [
                Emit(MessageAdded(role="assistant", text=text, message_id=item_id,
                                  model=self.state.model), part),
                Emit(PartEnded(part_kind="message", title=title), part),
            ]
        if kind == "reasoning":
            text = str(item.get("text") or "")
            part = self.next_part()
            return [Emit(ReasoningAdded(text=text), part),
                    Emit(PartEnded(part_kind="reasoning", title=title_of(text)), part)]
        if kind == "command_execution":
            command = str(item.get("command") or "")
            status = _TOOL_STATUS.get(str(item.get("status")), "error")
            exit_code = item.get("exit_code")
            reason = (item.get("error") or {}).get("message") if isinstance(
                item.get("error"), dict) else None
            error = "" if status == "ok" else (reason or (
                f"exit code {exit_code}" if exit_code is not None else str(item.get("status"))))
            tools = self.rollout.shell_tools if self.rollout is not None else []
            tool = tools[self.shell_calls] if self.shell_calls < len(tools) else "shell"
            self.shell_calls += 1
            return self.tool_part(
                call_id=item_id, tool=tool, arguments={"command": command}, command=command,
                status=status, output=str(item.get("aggregated_output") or ""),
                exit_code=exit_code, duration_ms=duration, error=error, called_ns=started)
        if kind == "file_change":
            changes = [(str(c.get("path") or ""), _CHANGE_KIND.get(str(c.get("kind")), "modify"))
                       for c in item.get("changes") or []]
            ok = item.get("status") == "completed"
            names = ", ".join(p.rsplit("/", 1)[-1] for p, _ in changes)
            return self.tool_part(
                call_id=item_id, tool="apply_patch", arguments={"changes": item.get("changes")},
                status="ok" if ok else "error", error="" if ok else "patch failed",
                changes=changes, duration_ms=duration, called_ns=started,
                title=title_of(f"patch: {names}"))
        if kind in ("mcp_tool_call", "collab_tool_call", "web_search"):
            return self.other_tool(kind, item, started, duration)
        if kind == "todo_list":
            items = [i for i in item.get("items") or [] if isinstance(i, dict)]
            done = sum(1 for i in items if i.get("completed"))
            part = self.next_part()
            return [Emit(PartEnded(part_kind="other", title=f"todo list: {done}/{len(items)} done"),
                         part)]
        return [self.error(str(item.get("message") or ""), origin="agent")]  # kind "error"

    def other_tool(self, kind: str, item: dict[str, Any], started: int | None,
                   duration: float | None) -> list[Emit]:
        item_id = str(item.get("id") or "")
        status = _TOOL_STATUS.get(str(item.get("status")), "ok" if kind == "web_search" else "error")
        error = str((item.get("error") or {}).get("message") or "")
        if kind == "mcp_tool_call":
            tool, args = str(item.get("tool") or "mcp"), item.get("arguments")
            result = item.get("result") or {}
            texts = [c.get("text", "") for c in result.get("content") or [] if isinstance(c, dict)]
            output = "\n".join(t for t in texts if t) or (
                json.dumps(result["structured_content"]) if result.get("structured_content")
                else "")
            title = f"{item.get('server')}.{tool}"
        elif kind == "collab_tool_call":
            tool = str(item.get("tool") or "collab")
            args = {"prompt": item.get("prompt"), "receivers": item.get("receiver_thread_ids")}
            output = json.dumps(item.get("agents_states") or {}, sort_keys=True)
            title = title_of(f"{tool}: {item.get('prompt') or ''}")
        else:
            tool, args, output = "web_search", {"query": item.get("query")}, ""
            title = title_of(f"web_search: {item.get('query') or ''}")
        if status != "ok" and not error:
            error = str(item.get("status"))
        return self.tool_part(call_id=item_id, tool=tool, arguments=args, status=status,
                              output=output, error=error, duration_ms=duration,
                              called_ns=started, title=title)
