"""Importer of mini-SWE-agent trajectories, ``*.traj.json`` (``--format mini-swe-agent``).

One file = one run; the document is kept verbatim as one ``raw_recorded``. The document is
``{info, messages, trajectory_format}`` (``DefaultAgent.serialize``); two versions are known:

* ``mini-swe-agent-1.1`` (2.x): assistant messages carry ``tool_calls`` of the ``bash`` tool
  and ``extra.actions``; each result is a ``tool`` message with ``tool_call_id`` and
  ``extra.{raw_output, returncode, exception_info}``.
* ``mini-swe-agent-1`` (1.x): text only; the action is the assistant message's ``bash`` code
  block (``extra.actions`` when present), the result is the next ``user`` message
  (``<returncode>N</returncode>`` + ``<output>…</output>``).

=====================================  ==========================================================
source                                 events
=====================================  ==========================================================
``info.mini_version``, the model       ``run_started``: agent version; model = the first
                                       response's ``model`` (as called), else
                                       ``info.config.model.model_name``; ``instance_id``
first ``system``/``user`` messages     ``message_added(system|user)``, no part; the first user
                                       message is the prompt
assistant message                      one part per action: its text (the thought) as
                                       ``message_added(assistant)``, ``tool_called`` (bash),
                                       ``tool_returned`` (output, exit code) [+ ``tests_ran``];
                                       a message without action is a ``message`` part
``extra.response``                     ``model_called`` + ``usage_reported`` (litellm usage,
                                       ``extra.cost``) once per response id, on that part
later ``user`` messages (format        ``message_added(user)`` (no part)
errors, interrupts)
``exit`` message                       ``run_ended``: ``Submitted`` → completed,
                                       ``LimitsExceeded`` → limit, ``TimeExceeded`` → timeout,
                                       anything else → failed; ``submission`` → a ``patch`` part
=====================================  ==========================================================

A message role other than these is a record type of a newer version: kept (the document is
raw) and counted as unknown. Without an ``exit`` message (a run killed mid-way) the run ends
``crashed`` once stale.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

from agtrace.eventlog import MessageAdded, ModelCalled, RunStarted, UsageReported

from ..adapter import known_types
from ..adapters.base import title_of
from ..usage import usage_from_litellm
from . import register
from .base import ImportContext, ImportError_
from .transcript import (
    Transcript,
    diff_files,
    file_sha256,
    head,
    load_json_document,
    parse_ts,
    source_key,
)

FORMAT = "mini-swe-agent"
ROLES = frozenset({"system", "user", "assistant", "tool", "exit"})
KNOWN = {"1": ROLES, "1.1": ROLES, "*": ROLES}  # by the number of trajectory_format
_BASH_BLOCK = re.compile(r"```(?:bash|mswea_bash_command)\s*\n(.*?)\n```", re.S)
_RETURNCODE = re.compile(r"<returncode>\s*(-?\d+)\s*</returncode>")
_OUTPUT = re.compile(r"<output>\n?(.*?)</output>", re.S)
_STATUS = {"Submitted": "completed", "LimitsExceeded": "limit", "TimeExceeded": "timeout"}


def _content(value: Any) -> str:
    if isinstance(value, list):
        return "\n".join(str(c.get("text") or "") if isinstance(c, dict) else str(c) for c in value)
    return "" if value is None else str(value)


def _extra(m: dict[str, Any]) -> dict[str, Any]:
    return m["extra"] if isinstance(m.get("extra"), dict) else {}


class MiniSweAgentImporter:
    """``--format mini-swe-agent``."""

    name = FORMAT
    known = KNOWN

    def detect(self, path: Path) -> bool:
        if not path.is_file():
            return False
        text = head(path, 256 * 1024)
        if not text.lstrip().startswith(b"{"):
            return False
        if b'"trajectory_format": "mini-swe-agent' in text or b'"mini_version"' in text:
            return True
        with open(path, "rb") as fh:  # trajectory_format is the document's last key
            fh.seek(max(0, path.stat().st_size - 4096))
            return b'"trajectory_format": "mini-swe-agent' in fh.read()

    def read(self, path: Path, ctx: ImportContext) -> None:
        doc, text = load_json_document(path, FORMAT)
        if not isinstance(doc, dict) or not isinstance(doc.get("messages"), list):
            raise ImportError_(f"{path}: not a mini-SWE-agent trajectory (expected an object with "
                               "messages[])")
        info = doc.get("info") if isinstance(doc.get("info"), dict) else {}
        messages = [m for m in doc["messages"] if isinstance(m, dict)]
        version = str(doc.get("trajectory_format") or "")
        prompt = next((_content(m.get("content")) for m in messages if m.get("role") == "user"), "")
        config = info.get("config") if isinstance(info.get("config"), dict) else {}
        model_cfg = config.get("model") if isinstance(config.get("model"), dict) else {}
        model = next((str(r["model"]) for m in messages
                      if isinstance(r := _extra(m).get("response"), dict) and r.get("model")),
                     str(model_cfg.get("model_name") or ""))
        task_id = str(doc.get("instance_id") or path.name.split(".")[0])
        started_ts = next((ts for m in messages if (ts := parse_ts(_extra(m).get("timestamp")))), 0)
        started = RunStarted(
            agent="mini-swe-agent", agent_version=str(info.get("mini_version") or ""), model=model,
            task_id=task_id, prompt=prompt,
            prompt_sha256=hashlib.sha256(prompt.encode()).hexdigest() if prompt else "",
            config={k: v for k, v in (("agent_type", config.get("agent_type")),
                                      ("model_type", config.get("model_type")),
                                      ("environment_type", config.get("environment_type"))) if v},
            source=f"import:{FORMAT}", source_version=version)
        sink = ctx.new_run(source_key(FORMAT, file_sha256(path), task_id), started, started_ts)
        if sink is None:
            return
        t = Transcript(sink, FORMAT, started_ts)
        t.raw(text, path.name)
        types = known_types(KNOWN, version.rsplit("-", 1)[-1])
        _Trajectory(t, model, path.name, types).write(messages, info)


class _Trajectory:
    def __init__(self, t: Transcript, model: str, name: str, types: frozenset[str]):
        self.t = t
        self.types = types
        self.model = model
        self.name = name
        self.responses: set[str] = set()

    def write(self, messages: list[dict[str, Any]], info: dict[str, Any]) -> None:
        t = self.t
        results = {str(m.get("tool_call_id")): m for m in messages if m.get("role") == "tool"}
        exit_msg: dict[str, Any] | None = None
        consumed: set[int] = set()  # 1.x observations, read with their action
        for i, m in enumerate(messages):
            t.location = f"{self.name}#messages[{i}]"
            t.at_time(_extra(m).get("timestamp"))
            role = m.get("role")
            if role not in self.types:
                t.sink.unknown(t.location, f"message:{role}")
                continue
            if role in ("system", "user"):
                if i not in consumed:
                    t.emit(MessageAdded(role=str(role), text=_content(m.get("content"))))
            elif role == "assistant":
                following = messages[i + 1] if i + 1 < len(messages) else {}
                if self.assistant(m, results, following):
                    consumed.add(i + 1)
            elif role == "exit":
                exit_msg = m
        self.end(exit_msg, info)

    def assistant(self, m: dict[str, Any], results: dict[str, dict], following: dict) -> bool:
        """Write one assistant message's parts; True when the following message was its result."""
        t = self.t
        observed = False
        extra = _extra(m)
        thought = _content(m.get("content"))
        actions = [a for a in extra.get("actions") or [] if isinstance(a, dict)]
        if not actions and not m.get("tool_calls"):
            actions = [{"command": c} for c in _BASH_BLOCK.findall(thought)]
        first = t.parts.parts + 1
        if not actions:
            t.message_part("assistant", thought, model=self.model)
        for k, action in enumerate(actions):
            call_id = str(action.get("tool_call_id") or "")
            if call_id:
                res = results.get(call_id, {})
                rextra = _extra(res)
                output = str(rextra.get("raw_output", _content(res.get("content"))))
                code = rextra.get("returncode")
                error = str(rextra.get("exception_info") or "")
            else:  # 1.x: the observation is the next user message
                obs = _content(following.get("content")) if following.get("role") == "user" else ""
                rc = _RETURNCODE.search(obs)
                out = _OUTPUT.search(obs)
                output, code, error = (out.group(1) if out else obs), (int(rc.group(1)) if rc else None), ""
                if k == 0 and obs:
                    observed = True
            exit_code = code if isinstance(code, int) and not isinstance(code, bool) else None
            command = str(action.get("command") or "")
            if k == 0 and thought:
                t.emit(MessageAdded(role="assistant", text=thought, model=self.model), first)
            failed = bool(error) or exit_code not in (None, 0)
            t.tool_part(call_id=call_id or f"action-{first + k}", tool="bash",
                        arguments={"command": command}, command=command,
                        status="error" if failed else "ok", output=output, exit_code=exit_code,
                        error=(error or f"exit code {exit_code}") if failed else "",
                        title=title_of(command) or "bash")
        self.usage(extra, first if t.parts.parts >= first else None)
        return observed

    def usage(self, extra: dict[str, Any], part: int | None) -> None:
        resp = extra.get("response")
        if not isinstance(resp, dict):
            return
        rid = str(resp.get("id") or "")
        if rid and rid in self.responses:
            return
        self.responses.add(rid)
        model = str(resp.get("model") or self.model)
        self.t.emit(ModelCalled(model=model, ok=True, request_id=rid), part)
        if isinstance(resp.get("usage"), dict):
            cost = extra.get("cost")
            self.t.emit(UsageReported(usage=usage_from_litellm(resp["usage"]), model=model,
                                      request_id=rid,
                                      cost_usd=float(cost) if isinstance(cost, int | float) and cost else None),
                        part)

    def end(self, exit_msg: dict[str, Any] | None, info: dict[str, Any]) -> None:
        t = self.t
        extra = _extra(exit_msg) if exit_msg else {}
        status_name = str(extra.get("exit_status") or info.get("exit_status") or "")
        submission = extra.get("submission", info.get("submission"))
        if isinstance(submission, str) and submission.strip():
            changes = diff_files(submission)
            t.patch_part(changes, f"submission: {', '.join(c.path for c in changes)}")
        if not status_name:
            t.end_without_marker("no exit message and no info.exit_status")
            return
        status = _STATUS.get(status_name, "failed")
        reason = "" if status == "completed" else str(extra.get("exception_str") or status_name)
        t.end(status, reason.strip()[:500])


register(MiniSweAgentImporter())
