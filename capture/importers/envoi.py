"""Importer of envoi-trace runs: ``agent_trace.json`` (era A), ``trace.parquet`` (era B) and
``envoi.trace.v2`` parquet with ``logs.parquet`` (era C), each with its ``repo.bundle``.

A source is a trajectory directory (``trajectories/<id>/``) or one of its trace files; the
bundle and logs are looked up beside it. What becomes what (field by field in the docstrings of
``_part_events`` and ``_end_event`` here, and of ``evaluation_events`` in ``envoi_eval.py``):

* every ``PartRecord`` becomes one agtrace part, numbered by its ``part``; the copies each
  ``TurnRecord`` embeds are not imported again (they only fill in parts missing at top level);
* part N's tree is the tree of the bundle commit of part N (``git_commit``, else
  ``repo_checkpoint.commit_after``/``commit_before``), carried forward over parts that made no
  commit, without the credential files a captured snapshot leaves out (``excluded``); the trees
  become snapshot commits chained on ``refs/agtrace/snapshots`` in the run's shadow repository,
  sealed into ``bundles/0001-<tip12>.bundle``; the bundle's other history is not kept
  (``trees.py``);
* token usage is imported as deltas: Codex reports running totals, which go through
  :class:`~agtrace.capture.usage.CumulativeCounter`; a turn's usage is used only for turns
  whose parts carry none;
* status comes from ``session_end.reason``; a trace without a session end whose last activity
  is older than the staleness bound is ended as ``crashed`` (else it is left without an end,
  and shows as crashed once it is stale).

The trace document itself is kept verbatim as one ``raw_recorded`` event (parquet rows as one
JSON record each), so a better parser can re-read it. Record types are ``part/<part_type>``
(:data:`KNOWN`); a part of another type is counted as unknown and imported as an ``other`` part
(parts are numbered by the trace, so none is left out). ``source_version`` is era C's
``trace_schema_version``, else ``era-A``/``era-B``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import time
from pathlib import Path
from typing import Any

from agtrace.eventlog import (
    STALE_WITHOUT_HEARTBEAT_S,
    ErrorOccurred,
    FileChanged,
    GitStoreError,
    LineLogged,
    MessageAdded,
    PartEnded,
    RawRecorded,
    ReasoningAdded,
    RunEnded,
    RunStarted,
    SnapshotTaken,
    ToolCalled,
    ToolReturned,
    TurnEnded,
    TurnStarted,
    UsageReported,
)

from ..usage import CumulativeCounter, usage_from_anthropic, usage_from_openai, usage_from_opencode
from . import register
from .base import ImportContext, ImportError_, RunSink
from .envoi_eval import evaluation_events, evaluations_by_part, tests_ran
from .envoi_source import TraceSource, load_source, sniff
from .transcript import parse_ts, text_of

SOURCE = "import:envoi-trace"
_END_STATUS = {"solved": "completed", "part_limit": "limit", "timeout": "timeout",
               "agent_error": "failed", "envoi_error": "failed"}
KNOWN = {"*": frozenset(f"part/{t}" for t in ("reasoning", "text", "tool", "tool_use",
                                              "tool_result", "patch"))}
_PART_KIND = {"reasoning": "reasoning", "text": "message", "tool": "tool", "tool_use": "tool",
              "tool_result": "tool", "patch": "patch"}
_TOOL_STATUS = {"completed": "ok", "success": "ok", "ok": "ok", "failed": "error", "error": "error",
                "declined": "declined", "timeout": "timeout"}


class _Usage:
    """Per-run token accounting: Codex totals → deltas; OpenCode/Anthropic reports are deltas."""

    def __init__(self, agent: str):
        self.agent = agent
        self.counter = CumulativeCounter()

    def event(self, raw: Any, model: str) -> UsageReported | None:
        if not isinstance(raw, dict) or not raw:
            return None
        total = raw.get("total") or raw.get("total_token_usage")
        if isinstance(total, dict):  # app-server style {total, last}: the total is authoritative
            raw = total
        if isinstance(raw.get("tokens"), dict):
            return UsageReported(usage=usage_from_opencode(raw["tokens"]), model=model)
        if "input_tokens" in raw or "output_tokens" in raw:
            if self.agent == "codex" or "cached_input_tokens" in raw:
                cumulative = usage_from_openai(raw)
                delta = self.counter.feed(cumulative)
                return None if delta is None else UsageReported(usage=delta, model=model, cumulative=cumulative)
            return UsageReported(usage=usage_from_anthropic(raw), model=model)
        if "input" in raw or "output" in raw:
            return UsageReported(usage=usage_from_opencode(raw), model=model)
        return None


class EnvoiImporter:
    """``--format envoi-trace``."""

    name = "envoi-trace"
    known = KNOWN

    def detect(self, path: Path) -> bool:
        return sniff(path) is not None

    def read(self, path: Path, ctx: ImportContext) -> None:
        src = load_source(path)  # parses and validates everything before the store is touched
        started_ts = parse_ts(src.trace.get("started_at")) or _first_ts(src) or 0
        sink = ctx.new_run(_source_key(src), _run_started(src), started_ts)
        if sink is None:
            return
        _Writer(sink, src, started_ts).write()


class _Writer:
    """Writes one envoi trace into one run (see the module docstring)."""

    def __init__(self, sink: RunSink, src: TraceSource, started_ts: int):
        self.sink, self.src, self.trace = sink, src, src.trace
        self.ts = started_ts
        self.model = self.trace.get("agent_model") or ""
        self.usage = _Usage(self.trace.get("agent") or "")
        self.commits: dict[str, str] = {}  # envoi commit -> tree id in the shadow repo
        self.snap_commit: str | None = None
        self.snap_tree: str | None = None
        self.left: dict[str, list] = {}  # envoi commit -> the credential files left out of its tree
        self.last_activity = started_ts

    def emit(self, event, part: int | None = None, ts: int | None = None) -> None:
        ts = ts if ts is not None else self.ts
        self.last_activity = max(self.last_activity, ts)
        self.sink.append(event, part=part, ts=ts)

    # -- the run -------------------------------------------------------------------------------

    def write(self) -> None:
        if self.src.bundle is not None:  # first: a corrupt bundle must fail before blobs are written
            self._import_bundle()
        parts = self.src.parts
        self._base_snapshot(parts)  # early: replay looks for the base snapshot among the first events
        for location, text in self.src.raw:
            inline, blob, _ = self.sink.text(text)
            self.emit(RawRecorded(source=SOURCE, text=inline, blob=blob, location=location))
        for location, message in self.src.problems:
            self.sink.bad(location, message)
        if self.src.bundle is None:
            self.emit(ErrorOccurred(message=f"no repo.bundle beside {self.src.trace_path.name}: parts have no "
                                    "trees and cannot be replayed", origin="import"))
        evaluations = evaluations_by_part(self.trace.get("evaluations") or {}, parts)
        turns = {t["part_start"]: t for t in self.src.turns if isinstance(t.get("part_start"), int)}
        turn_ends = {t["part_end"]: t for t in self.src.turns if isinstance(t.get("part_end"), int)}
        usage_parts = {p.get("part") for p in parts if isinstance(p.get("token_usage"), dict) and p["token_usage"]}
        commit: str | None = None
        for rec in parts:
            n = rec["part"]
            self.ts = parse_ts(rec.get("timestamp")) or self.ts
            if n in turns:
                turn = turns[n]
                self.emit(TurnStarted(turn=self.sink.count(turn.get("turn"), "turn", f"{self.src.trace_path.name}#turns"),
                                      prompt=text_of(turn.get("prompt"))),
                          ts=parse_ts(turn.get("timestamp")) or self.ts)
            commit = _commit_of(rec) or commit
            turn_usage = None
            if n in turn_ends:  # a turn's usage counts only when none of its parts carries usage
                turn = turn_ends[n]
                if not any(p in usage_parts for p in range(turn.get("part_start") or n, n + 1)):
                    turn_usage = turn.get("token_usage")
            self._part_events(rec, n, commit, turn_usage)
            for ev in evaluations.pop(n, []):
                self._evaluation_events(ev, n)
            if n in turn_ends:
                self.emit(TurnEnded(turn=self.sink.count(turn_ends[n].get("turn"), "turn",
                                                         f"{self.src.trace_path.name}#turns")))
        for evs in evaluations.values():  # evaluations of parts the trace does not hold
            for ev in evs:
                self._evaluation_events(ev, parts[-1]["part"] if parts else None)
        for row in self.src.logs:
            self._log_line(row)
        self._end_event(parts, commit)
        if self.snap_commit is not None:
            bundles = self.sink.dir / "bundles"
            self.sink.trees.git.write_bundle(bundles / f"0001-{self.snap_commit[:12]}.bundle")

    def _import_bundle(self) -> None:
        try:
            self.sink.trees.git.import_bundle(self.src.bundle)
        except GitStoreError as exc:
            raise ImportError_(f"{self.src.bundle}: corrupt or incomplete git bundle ({exc}); "
                               "download repo.bundle again, or import without it by moving it away") from exc

    def _tree(self, commit: str | None, where: str) -> str:
        """The tree recorded for an envoi commit: its tree without the credential files a
        snapshot leaves out (those in :attr:`left`); "" (and a bad record) if it is absent."""
        if not commit or self.src.bundle is None:
            return ""
        if commit not in self.commits:
            full = self.sink.trees.git.resolve(commit)
            if full is None:
                self.sink.bad(where, f"commit {commit} is not in {self.src.bundle.name} (the agent amended or "
                              "reset it, or the bundle predates it); this part has no tree")
                self.commits[commit] = ""
            else:
                self.commits[commit], self.left[commit] = self.sink.trees.stored(self.sink.trees.git.tree_of(full))
        return self.commits[commit]

    def _snapshot(self, tree: str, part: int | None, label: str, final: bool = False,
                  left: list | None = None) -> SnapshotTaken:
        """Record ``tree`` (a tree from :meth:`_tree`, already without the files ``left`` out)."""
        git = self.sink.trees.git
        changes = git.diff(self.snap_tree, tree) if tree != self.snap_tree else []
        if tree != self.snap_tree or self.snap_commit is None:
            self.snap_commit = git.commit_tree(tree, self.snap_commit, label)
        self.snap_tree = tree
        snap = SnapshotTaken(
            tree_id=tree, commit_id=self.snap_commit,
            added=[c.path for c in changes if c.status == "added"],
            modified=[c.path for c in changes if c.status == "modified"],
            deleted=[c.path for c in changes if c.status == "deleted"],
            lines_added=sum(c.lines_added for c in changes), lines_removed=sum(c.lines_removed for c in changes),
            excluded=left or [], part_ended_ts=self.ts if part else None, final=final,
            policy={"source": "envoi-trace repo.bundle", **self.sink.trees.policy},
        )
        self.emit(snap, part=part)
        return snap

    def _base_snapshot(self, parts: list[dict]) -> None:
        """Part 0: ``commit_before`` of the first checkpoint, else the root of the first commit."""
        if self.src.bundle is None:
            return
        base = None
        for rec in parts:
            cp = rec.get("repo_checkpoint") or {}
            if isinstance(cp, dict) and cp.get("commit_before"):
                base = self.sink.trees.git.resolve(cp["commit_before"])
                break
            first = _commit_of(rec)
            if first and self.sink.trees.git.resolve(first):
                base = self.sink.trees.git.first_parents(first)[-1]
                break
        if base is not None:
            tree, left = self.sink.trees.stored(self.sink.trees.git.tree_of(base))
            self._snapshot(tree, None, "base", left=left)

    # -- parts ---------------------------------------------------------------------------------

    def _part_events(self, rec: dict, n: int, commit: str | None, turn_usage: Any = None) -> None:
        """``part_type`` → kind: reasoning → ``reasoning_added(content)``; text → ``message_added
        (role, content, agent_model)``; tool/tool_use/tool_result → ``tool_called(tool_name,
        tool_input)`` + ``tool_returned(tool_status, tool_output, tool_exit_code, tool_error)``;
        patch → ``file_changed`` per ``files`` entry. Then ``envoi_calls`` → ``tests_ran`` on the
        part's tree, ``token_usage`` → ``usage_reported``, the snapshot, and ``part_ended``
        (``summary`` as title)."""
        ptype = rec.get("part_type") or ""
        kind = _PART_KIND.get(ptype, "other")
        where = f"{self.src.trace_path.name}#part={n}"
        if f"part/{ptype}" not in KNOWN["*"]:
            self.sink.unknown(where, f"part/{ptype}")
        tool = call_id = ""
        if kind == "reasoning":
            self.emit(ReasoningAdded(text=text_of(rec.get("content"))), part=n)
        elif kind == "message":
            inline, blob, _ = self.sink.text(text_of(rec.get("content")))
            self.emit(MessageAdded(role=rec.get("role") or "assistant", text=inline, text_blob=blob,
                                   model=rec.get("agent_model") or self.model), part=n)
        elif kind == "tool":
            tool = rec.get("tool_name") or rec.get("item_type") or "tool"
            call_id = _call_id(rec) or f"part-{n}"
            args = rec.get("tool_input")
            command = args.get("command", "") if isinstance(args, dict) else ""
            self.emit(ToolCalled(call_id=call_id, tool=tool, arguments=args,
                                 command=command if isinstance(command, str) else " ".join(map(str, command))),
                      part=n)
            inline, blob, nbytes = self.sink.text(text_of(rec.get("tool_output")))
            status = _TOOL_STATUS.get(str(rec.get("tool_status") or "completed").lower(), "ok")
            error = text_of(rec.get("tool_error"))
            if error and status == "ok":
                status = "error"
            exit_code = rec.get("tool_exit_code")
            self.emit(ToolReturned(call_id=call_id, tool=tool, status=status, output=inline, output_blob=blob,
                                   output_bytes=nbytes, exit_code=exit_code if isinstance(exit_code, int) else None,
                                   error=error), part=n)
        elif kind == "patch":
            for path in rec.get("files") or []:
                if isinstance(path, str) and path:
                    self.emit(FileChanged(path=path, change="modify", origin="agent"), part=n)
        tree = self._tree(commit, where)
        for call in rec.get("envoi_calls") or []:
            self.emit(tests_ran(call, tree, self._counter(f"{where}.envoi_calls")), part=n,
                      ts=parse_ts(call.get("timestamp")) or self.ts)
        for raw in (rec.get("token_usage"), turn_usage):
            usage = self.usage.event(raw, rec.get("agent_model") or self.model)
            if usage is not None:
                self.emit(usage, part=n)
        if tree:
            self._snapshot(tree, n, f"part {n}", left=self.left.get(commit))
        title = " ".join(text_of(rec.get("summary") or rec.get("content")).split())[:240]
        self.emit(PartEnded(part_kind=kind, title=title, tool=tool, call_id=call_id, tree_id=tree), part=n)

    def _evaluation_events(self, ev: dict, part: int | None) -> None:
        commit = ev.get("commit") or ev.get("target_commit") or ""
        tree = self._tree(commit, f"evaluations[{commit}]") if commit else ""
        where = f"{self.src.trace_path.name}#evaluations[{commit}]"
        for event, ts in evaluation_events(ev, tree, self.ts, self._counter(where)):
            self.emit(event, part=part, ts=ts)

    def _counter(self, where: str):
        """The sink's :meth:`~agtrace.capture.importers.base.RunSink.count` of one record at ``where``."""
        return lambda value, name: self.sink.count(value, name, where)

    def _log_line(self, row: dict) -> None:
        ts = parse_ts(row.get("ts")) or self.ts
        text = " ".join(str(row.get(k)) for k in ("level", "component", "event") if row.get(k))
        msg = row.get("message")
        part = row.get("part") if isinstance(row.get("part"), int) else None
        self.emit(LineLogged(stream="log", text=f"{text}: {msg}" if msg else text), part=part, ts=ts)

    def _end_event(self, parts: list[dict], commit: str | None) -> None:
        """``session_end.reason``: solved → completed, part_limit → limit, timeout → timeout,
        agent_error/envoi_error → failed; its ``final_git_commit`` is the final snapshot. No
        session end: crashed when the last activity is stale, else no end event."""
        end = self.trace.get("session_end")
        last_part = parts[-1]["part"] if parts else None
        if isinstance(end, dict):
            final = end.get("final_git_commit") or commit
            self.ts = max(self.ts, self.last_activity)
            tree = self._tree(final, "session_end.final_git_commit")
            if tree:
                self._snapshot(tree, last_part, "final", final=True, left=self.left.get(final))
            reason = str(end.get("reason") or "")
            status = _END_STATUS.get(reason, "failed")
            text = reason if status != "failed" or reason in _END_STATUS else f"unknown session end reason {reason!r}"
            self.emit(RunEnded(status=status, reason=text))
            return
        age_s = (time.time_ns() - self.last_activity) / 1e9
        if age_s > STALE_WITHOUT_HEARTBEAT_S:
            when = dt.datetime.fromtimestamp(self.last_activity / 1e9, dt.UTC).isoformat()
            self.emit(RunEnded(status="crashed",
                               reason=f"the trace has no session_end and no activity since {when} "
                                      f"({len(parts)} parts); the run died without finishing"),
                      ts=self.last_activity)


# -- helpers ----------------------------------------------------------------------------------


def _commit_of(rec: dict) -> str | None:
    cp = rec.get("repo_checkpoint") if isinstance(rec.get("repo_checkpoint"), dict) else {}
    return rec.get("git_commit") or cp.get("commit_after") or cp.get("commit_before") or None


def _call_id(rec: dict) -> str:
    for key in ("provider_item", "provider_part"):
        obj = rec.get(key)
        if isinstance(obj, dict):
            for k in ("id", "callID", "call_id"):
                if isinstance(obj.get(k), str) and obj[k]:
                    return obj[k]
    return ""


def _first_ts(src: TraceSource) -> int | None:
    for rec in src.parts:
        ts = parse_ts(rec.get("timestamp"))
        if ts:
            return ts
    return None


def _run_started(src: TraceSource) -> RunStarted:
    trace = src.trace
    prompt = next((text_of(t.get("prompt")) for t in src.turns if t.get("prompt")), "")
    meta = trace.get("run_metadata") if isinstance(trace.get("run_metadata"), dict) else {}
    config = {k: trace[k] for k in ("task_params", "environment", "run_metadata", "suites") if trace.get(k)}
    tags = {"trajectory_id": str(trace.get("trajectory_id") or ""), "envoi_era": src.era}
    if trace.get("session_id"):
        tags["session_id"] = str(trace["session_id"])
    if meta.get("project"):
        tags["project"] = str(meta["project"])
    return RunStarted(
        agent=trace.get("agent") or "", model=trace.get("agent_model") or "", prompt=prompt,
        prompt_sha256=hashlib.sha256(prompt.encode()).hexdigest() if prompt else "",
        task_id=str(meta.get("task") or (trace.get("task_params") or {}).get("task") or "")
        if isinstance(trace.get("task_params") or {}, dict) else "",
        config=config, tags=tags, source=SOURCE, workdir="/workspace",
        source_version=str(trace.get("trace_schema_version") or f"era-{src.era}"),
    )


def _source_key(src: TraceSource) -> str:
    """Same trajectory and same bytes → same run id; an updated trace becomes a new run."""
    return f"envoi-trace:{src.trace.get('trajectory_id')}:{src.digest}"


register(EnvoiImporter())
