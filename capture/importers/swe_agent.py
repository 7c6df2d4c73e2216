"""Importer of SWE-agent trajectories: ``<instance>.traj`` JSON and ``traj-to-demo`` YAML
(``--format swe-agent``).

One file = one instance = one run. The document is kept verbatim as one ``raw_recorded``.

=====================================  ==========================================================
source                                 events
=====================================  ==========================================================
``replay_config`` (JSON string or      ``run_started``: model (``agent.model.name``), task id
object)                                (``problem_statement.id``, else the file's stem), repo and
                                       base commit (``env.repo``), image; ``info`` versions
``history`` system / first task        ``message_added(system|user)``, no part (demonstrations,
message                                ``is_demo``, are skipped)
``trajectory[i]``                      part i+1: ``message_added(assistant)`` = ``thought`` +
                                       ``tool_called`` (``action``; tool = its first word) +
                                       ``tool_returned`` (``observation``, ``execution_time``)
                                       [+ ``tests_ran`` for test commands] [+ ``file_changed``
                                       (agent) for the edit tools: ``edit``/``insert`` on the
                                       step's open file, ``create PATH``,
                                       ``str_replace_editor create|str_replace|insert PATH``;
                                       paths relative to the step's ``working_dir``]
``history`` only (no ``trajectory``:   one part per ``action`` message, paired with the
demonstrations, demo YAML)             ``tool``/``user`` observation that follows it
``info.model_stats``                   ONE ``usage_reported`` for the whole run (part None):
                                       ``input`` = ``tokens_sent``, ``output`` =
                                       ``tokens_received``, ``cost_usd`` = ``instance_cost``;
                                       it is a run total, marked by ``request_id`` =
                                       ``run-total:info.model_stats`` and ``cumulative`` = itself
``info.submission``                    a last ``patch`` part: ``file_changed(origin=agent)`` per
                                       file of the diff, with line counts
``info.exit_status``                   ``run_ended``: ``submitted`` → completed; autosubmitted
                                       after a limit (``submitted (exit_cost)``) and
                                       ``exit_cost``/``exit_context``/step limits → limit; time
                                       limits → timeout; ``exit_format``/``exit_api``/
                                       ``exit_error``/``exit_forfeit`` … → failed
=====================================  ==========================================================

Record types are ``history/<role>`` (:data:`KNOWN`); a history item of another role is kept
raw (in the document) and counted as unknown. ``source_version`` is ``info.swe_agent_version``.

Without ``info.exit_status`` (demonstrations) there is no end evidence: the run is ended
``crashed`` once stale, never ``completed``. SWE-agent's ``tokens_sent`` includes cached
prompt tokens (litellm ``prompt_tokens``); they cannot be separated.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

from agtrace.eventlog import MessageAdded, RunStarted, Usage, UsageReported

from ..adapters.base import title_of
from . import register
from .base import ImportContext, ImportError_
from .transcript import Transcript, diff_files, file_sha256, head, load_json_document, source_key

FORMAT = "swe-agent"
KNOWN = {"*": frozenset(f"history/{r}" for r in ("system", "user", "assistant", "tool"))}
_LIMIT = ("exit_cost", "exit_context", "exit_step_limit", "exit_total_cost", "exit_max_steps")
_TIMEOUT = ("exit_total_execution_time", "exit_command_timeout", "exit_timeout")


def _status(exit_status: str) -> tuple[str, str]:
    """``(status, reason)`` of an ``info.exit_status``."""
    if exit_status == "submitted":
        return "completed", ""
    inner = exit_status
    if exit_status.startswith("submitted (") and exit_status.endswith(")"):
        inner = exit_status[len("submitted ("):-1]
    if inner.startswith(_LIMIT):
        return "limit", exit_status
    if inner.startswith(_TIMEOUT):
        return "timeout", exit_status
    if exit_status.startswith("submitted"):
        return "completed", exit_status
    return "failed", exit_status


_EDITOR = {"create": "add", "str_replace": "modify", "insert": "modify"}


def edit_changes(action: str, state: Any) -> list[tuple[str, str]]:
    """``(path, change)`` of a step whose action is one of SWE-agent's edit tools."""
    if isinstance(state, str):
        try:
            state = json.loads(state)
        except ValueError:
            state = {}
    state = state if isinstance(state, dict) else {}
    words = action.split()
    if not words:
        return []
    path, change = "", "modify"
    if words[0] in ("edit", "insert") and state.get("open_file") not in (None, "", "n/a"):
        path = str(state["open_file"])
    elif words[0] == "create" and len(words) > 1:
        path, change = words[1], "add"
    elif words[0] == "str_replace_editor" and len(words) > 2 and words[1] in _EDITOR:
        path, change = words[2], _EDITOR[words[1]]
    if not path:
        return []
    root = str(state.get("working_dir") or "")
    if root and path.startswith(root.rstrip("/") + "/"):
        path = path[len(root.rstrip("/")) + 1:]
    return [(path, change)]


def _load_yaml(path: Path) -> tuple[Any, str]:
    try:
        import yaml
    except ImportError as exc:  # pragma: no cover - PyYAML ships with the test extras
        raise ImportError_(f"{path}: reading SWE-agent demo YAML needs PyYAML "
                           "(pip install pyyaml)") from exc
    text = path.read_text(encoding="utf-8")
    try:
        return yaml.safe_load(text), text
    except yaml.YAMLError as exc:
        raise ImportError_(f"{path}: not valid YAML ({exc}); the file is truncated or is not a "
                           "SWE-agent demo") from exc


def _config(doc: dict[str, Any]) -> dict[str, Any]:
    cfg = doc.get("replay_config")
    if isinstance(cfg, str):
        try:
            cfg = json.loads(cfg)
        except ValueError:
            return {}
    return cfg if isinstance(cfg, dict) else {}


def _get(d: Any, *keys: str) -> Any:
    for k in keys:
        d = d.get(k) if isinstance(d, dict) else None
    return d


def _content(value: Any) -> str:
    if isinstance(value, list):
        return "\n".join(str(c.get("text") or "") if isinstance(c, dict) else str(c) for c in value)
    return "" if value is None else str(value)


class SweAgentImporter:
    """``--format swe-agent``."""

    name = FORMAT
    known = KNOWN

    def detect(self, path: Path) -> bool:
        text = head(path)
        if path.suffix in (".yaml", ".yml"):
            return b"\nhistory:" in b"\n" + text and (b"replay_config:" in text
                                                      or b"demo file generated" in text)
        if not text.lstrip().startswith(b"{"):
            return False
        has_list = re.search(rb'"(trajectory|history)"\s*:\s*\[', text) is not None
        return has_list and (path.suffix == ".traj" or b'"message_type"' in text
                             or b'"execution_time"' in text)

    def read(self, path: Path, ctx: ImportContext) -> None:
        if path.suffix in (".yaml", ".yml"):
            doc, text = _load_yaml(path)
        else:
            doc, text = load_json_document(path, FORMAT)
        if not isinstance(doc, dict) or not isinstance(doc.get("history") or doc.get("trajectory"), list):
            raise ImportError_(f"{path}: not a SWE-agent trajectory (expected an object with "
                               "trajectory[] or history[])")
        cfg = _config(doc)
        info = doc.get("info") if isinstance(doc.get("info"), dict) else {}
        history = [h for h in doc.get("history") or [] if isinstance(h, dict)]
        task = next((h for h in history if h.get("role") == "user" and not h.get("is_demo")), {})
        prompt = _content(task.get("content"))
        task_id = str(_get(cfg, "problem_statement", "id") or path.name.split(".")[0])
        repo = _get(cfg, "env", "repo") or {}
        config = {k: v for k, v in (("image", _get(cfg, "env", "deployment", "image")),
                                    ("environment", doc.get("environment")),
                                    ("swe_rex_version", info.get("swe_rex_version"))) if v}
        started = RunStarted(
            agent="swe-agent", agent_version=str(info.get("swe_agent_version") or ""),
            model=str(_get(cfg, "agent", "model", "name") or ""), task_id=task_id, prompt=prompt,
            prompt_sha256=hashlib.sha256(prompt.encode()).hexdigest() if prompt else "",
            repo=str(repo.get("github_url") or repo.get("repo_name") or repo.get("path") or ""),
            base_commit=str(repo.get("base_commit") or ""), config=config,
            source=f"import:{FORMAT}", source_version=str(info.get("swe_agent_version") or ""))
        self.model = started.model
        sink = ctx.new_run(source_key(FORMAT, file_sha256(path), task_id), started, 0)
        if sink is None:
            return
        t = Transcript(sink, FORMAT, 0, types=KNOWN["*"])
        t.raw(text, path.name)
        for h in history:
            t.knows(f"history/{h.get('role')}")  # an unknown role is counted, and left out below
        for h in history:
            if h.get("is_demo") or h.get("role") not in ("system", "user"):
                continue
            t.emit(MessageAdded(role=str(h["role"]), text=_content(h.get("content"))))
            if h is task:
                break
        steps = [s for s in doc.get("trajectory") or [] if isinstance(s, dict)]
        if steps:
            for i, step in enumerate(steps):
                action = str(step.get("action") or "")
                self._step(t, f"step-{i + 1}", step.get("thought") or step.get("response"),
                           action, _content(step.get("observation")),
                           step.get("execution_time"), changes=edit_changes(action, step.get("state")))
        else:
            self._history(t, history)
        self._usage(t, info)
        submission = info.get("submission")
        if isinstance(submission, str) and submission.strip():
            changes = diff_files(submission)
            t.patch_part(changes, f"submission: {', '.join(c.path for c in changes)}")
        exit_status = info.get("exit_status")
        if isinstance(exit_status, str) and exit_status:
            t.end(*_status(exit_status))
        else:
            t.end_without_marker("no info.exit_status")

    def _step(self, t: Transcript, call_id: str, thought: Any, action: str, observation: str,
              seconds: Any, tool: str = "", arguments: Any = None,
              changes: list[tuple[str, str]] | None = None) -> None:
        n = t.parts.parts + 1
        if thought:
            t.emit(MessageAdded(role="assistant", text=str(thought)), n)
        command = action.strip()
        tool = tool or (command.split(None, 1)[0] if command else "action")
        try:
            duration = float(seconds) * 1000 if seconds is not None else None
        except (TypeError, ValueError):
            duration = None
        t.tool_part(call_id=call_id, tool=tool, arguments=arguments or {"action": action},
                    command=command, output=observation, duration_ms=duration,
                    changes=changes, title=title_of(command) or tool)

    def _history(self, t: Transcript, history: list[dict]) -> None:
        """Parts from ``history`` alone: an action message and the observation after it."""
        actions = [i for i, h in enumerate(history) if h.get("role") == "assistant"
                   and not h.get("is_demo")]
        for k, i in enumerate(actions):
            h = history[i]
            nxt = history[i + 1] if i + 1 < len(history) else {}
            observation = _content(nxt.get("content")) if nxt.get("role") in ("tool", "user") else ""
            calls = h.get("tool_calls")
            if isinstance(calls, str):
                calls = None
            call = calls[0] if isinstance(calls, list) and calls and isinstance(calls[0], dict) else {}
            fn = call.get("function") if isinstance(call.get("function"), dict) else {}
            args = fn.get("arguments")
            if isinstance(args, str):
                try:
                    args = json.loads(args)
                except ValueError:
                    pass
            action = str(h.get("action") or "") or (
                f"{fn.get('name', '')} {json.dumps(args)}" if fn else "")
            self._step(t, str(call.get("id") or f"action-{k + 1}"), h.get("thought") or h.get("content"),
                       action, observation, None, tool=str(fn.get("name") or ""),
                       arguments=args if fn else None)

    def _usage(self, t: Transcript, info: dict[str, Any]) -> None:
        stats = info.get("model_stats")
        if not isinstance(stats, dict):
            return
        where = f"{t.location} info.model_stats"
        sent = t.sink.count(stats.get("tokens_sent"), "tokens_sent", where)
        received = t.sink.count(stats.get("tokens_received"), "tokens_received", where)
        cost = stats.get("instance_cost")
        if not (sent or received or cost or stats.get("api_calls")):
            return
        usage = Usage(input=sent, output=received)
        t.emit(UsageReported(usage=usage, cost_usd=float(cost) if cost is not None else None,
                             request_id="run-total:info.model_stats", cumulative=usage,
                             model=self.model))


register(SweAgentImporter())
