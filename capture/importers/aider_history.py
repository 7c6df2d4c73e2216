"""Importer of Aider chat histories, ``.aider.chat.history.md`` (``--format aider``).

Aider appends every session to the repository's ``.aider.chat.history.md`` (``InputOutput``):
``# aider chat started at <local time>`` opens a session, ``#### `` lines are the user's
messages, ``> `` lines are Aider's own output (version, model, applied edits, commits, token
reports, errors), and every other line is the model's reply. One session = one run; its lines
are kept verbatim as one ``raw_recorded`` (location ``<file>:<first line>``).

=====================================  ==========================================================
lines                                  events
=====================================  ==========================================================
``> Aider vX``, ``> Model: M with …``  ``run_started`` agent version and model (``Main model:``
(``Main model:``)                      in older releases)
``#### text``                          ``turn_started`` + ``message_added(user)``
reply lines                            a ``message`` part, with ``model_called``
``> Tokens: 1.2k sent, 40 received.``  ``usage_reported`` on that reply (a per-message report,
[``Cost: $x message``]                 never a running total); ``cache write``/``cache hit``
                                       become cache tokens. Aider prints counts of 1,000 and more
                                       rounded (``1.2k``, ``12k``): they are imported as printed
``> Applied edit to F``                one ``patch`` part per reply: ``file_changed`` (``add``
                                       when Aider asked "Create new file?" for F first)
``> Running CMD``                      a ``shell`` tool part (``/run``, ``/test``); its output is
                                       not in the history, only ``Added N lines of output``
``> litellm.…Error``, ``> Error…``,    ``error_occurred``
``did not conform to the edit format``
=====================================  ==========================================================

Aider writes no end marker. Status from evidence: a session whose last reply was followed by
its token report (Aider reports usage after the reply is complete) and no error after it is
``completed``; one that ends on an error is ``failed``; otherwise no end (``crashed`` once
stale). A ``#`` heading other than the session start is an unknown record type (a newer
Aider): kept raw, counted. ``.aider.llm.history`` holds the messages sent and received but no
token counts, so it adds nothing to import.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

from agtrace.eventlog import (
    ErrorOccurred,
    FileChanged,
    MessageAdded,
    ModelCalled,
    PartEnded,
    RunStarted,
    TurnStarted,
    Usage,
    UsageReported,
)

from ..adapter import known_types
from ..adapters.base import title_of
from . import register
from .base import ImportContext, ImportError_
from .transcript import Transcript, file_sha256, parse_ts, source_key

FORMAT = "aider"
KNOWN = {"*": frozenset({"heading:#", "heading:####"})}  # session start, user message
_START = re.compile(r"^# aider chat started at (.+?)\s*$")
_VERSION = re.compile(r"^Aider v(\S+)")
_MODEL = re.compile(r"^(?:Main )?[Mm]odel: (\S+)")
_TOKENS = re.compile(r"^Tokens: (.+?) sent(?:, (.+?) cache write)?(?:, (.+?) cache hit)?, (.+?) received\.")
_COST = re.compile(r"Cost: \$([\d.]+) message")
_APPLIED = re.compile(r"^Applied edit to (.+?)\s*$")
_CREATE = "Create new file?"
_RUNNING = re.compile(r"^Running (.+?)\s*$")
_ERROR = re.compile(r"^(litellm\.\w*Error|Error|.*did not conform to the edit format)")


def count(text: str) -> int:
    """A token count as Aider prints it: ``27``, ``1.2k``, ``12k``."""
    text = text.strip().replace(",", "")
    if text.endswith("k"):
        return round(float(text[:-1]) * 1000)
    return int(float(text))


@dataclass
class Session:
    """One ``# aider chat started at`` block: its lines and where they start."""

    started: str
    first_line: int
    lines: list[str] = field(default_factory=list)


def sessions(text: str) -> list[Session]:
    out: list[Session] = []
    for n, line in enumerate(text.split("\n"), 1):
        m = _START.match(line)
        if m:
            out.append(Session(m.group(1), n, [line]))
        elif out:
            out[-1].lines.append(line)
    return out


class AiderImporter:
    """``--format aider``."""

    name = FORMAT
    known = KNOWN

    def detect(self, path: Path) -> bool:
        if not path.is_file():
            return False
        if path.name.endswith("aider.chat.history.md"):
            return True
        with open(path, "rb") as fh:
            for n, line in enumerate(fh):
                if n >= 200 or fh.tell() > 256 * 1024:
                    return False
                if line.strip():
                    return line.startswith(b"# aider chat started at ")
        return False

    def read(self, path: Path, ctx: ImportContext) -> None:
        data = path.read_bytes()
        text = data.decode("utf-8", "replace")
        found = sessions(text)
        if not found:
            raise ImportError_(f"{path}: no '# aider chat started at' line; not an Aider chat history")
        digest = file_sha256(path)
        for s in found:
            self._session(path, ctx, digest, s)

    def _session(self, path: Path, ctx: ImportContext, digest: str, s: Session) -> None:
        info = [ln[2:].rstrip() for ln in s.lines if ln.startswith("> ")]
        version = next((m.group(1) for ln in info if (m := _VERSION.match(ln))), "")
        model = next((m.group(1) for ln in info if (m := _MODEL.match(ln))), "")
        prompt = next((ln[5:].rstrip() for ln in s.lines if ln.startswith("#### ")), "")
        ts = parse_ts(s.started.replace(" ", "T")) or 0
        started = RunStarted(
            agent="aider", agent_version=version, model=model, prompt=prompt,
            prompt_sha256=hashlib.sha256(prompt.encode()).hexdigest() if prompt else "",
            source=f"import:{FORMAT}", source_version=version, tags={"file": path.name})
        sink = ctx.new_run(source_key(FORMAT, digest, str(s.first_line)), started, ts)
        if sink is None:
            return
        t = Transcript(sink, FORMAT, ts)
        t.raw("\n".join(s.lines), f"{path.name}:{s.first_line}")
        _Writer(t, model, path.name, s).write()


class _Writer:
    def __init__(self, t: Transcript, model: str, name: str, s: Session):
        self.t = t
        self.model = model
        self.name = name
        self.s = s
        self.turn = 0
        self.reply: list[str] = []
        self.reply_part: int | None = None
        self.edits: list[tuple[str, str]] = []
        self.creating: set[str] = set()
        self.last_output = ""
        self.reported = False  # the last reply got its token report
        self.error = ""

    def write(self) -> None:
        t = self.t
        user: list[str] = []
        for n, line in enumerate(self.s.lines[1:], self.s.first_line + 1):
            t.location = f"{self.name}:{n}"
            if line.startswith("#### "):
                self.flush_reply()
                user.append(line[5:].rstrip())
                continue
            if user:
                self.user("\n".join(user))
                user = []
            if line.startswith("> "):
                self.flush_reply()
                self.output(line[2:].rstrip())
            elif line.startswith("#") and line.lstrip("#").startswith(" ") and line.strip() != "#":
                kind = "heading:" + line.split(" ", 1)[0]
                if kind not in known_types(KNOWN):
                    t.sink.unknown(t.location, kind)
            elif line.strip() or self.reply:
                self.reply.append(line)
        if user:
            self.user("\n".join(user))
        self.flush_reply()
        self.flush_edits()
        if self.error:
            t.end("failed", self.error)
        elif self.reply_part is not None and self.reported:
            t.end("completed")
        else:
            t.end_without_marker("the session does not end with a reported reply")

    def user(self, text: str) -> None:
        self.flush_edits()
        self.turn += 1
        self.t.emit(TurnStarted(turn=self.turn, prompt=text))
        self.t.emit(MessageAdded(role="user", text=text))
        self.error = ""

    def flush_reply(self) -> None:
        text = "\n".join(self.reply).strip("\n")
        self.reply = []
        if not text.strip():
            return
        self.flush_edits()
        self.reply_part = self.t.message_part("assistant", text, model=self.model)
        self.t.emit(ModelCalled(model=self.model, ok=True), self.reply_part)
        self.reported = False
        self.error = ""

    def output(self, line: str) -> None:
        t = self.t
        tokens = _TOKENS.match(line)
        if tokens:
            sent, write, hit, received = (count(g) if g else 0 for g in tokens.groups())
            cost = _COST.search(line)
            t.emit(UsageReported(usage=Usage(input=max(0, sent - write), output=received, cache_read=hit,
                                             cache_write=write), model=self.model,
                                 cost_usd=float(cost.group(1)) if cost and float(cost.group(1)) else None),
                   self.reply_part)
            self.reported = True
            return
        applied = _APPLIED.match(line)
        if applied:
            f = applied.group(1)
            self.edits.append((f, "add" if f in self.creating else "modify"))
            return
        if line.startswith(_CREATE):
            self.creating.add(self.last_output)
        running = _RUNNING.match(line)
        if running:
            self.flush_edits()
            cmd = running.group(1)
            t.tool_part(call_id=f"run-{t.location}", tool="shell", arguments={"command": cmd},
                        command=cmd, title=title_of(cmd))
        elif _ERROR.match(line):
            self.error = title_of(line)
            t.emit(ErrorOccurred(message=line, origin="model" if line.startswith("litellm") else "agent"))
        self.last_output = line

    def flush_edits(self) -> None:
        if not self.edits:
            return
        t = self.t
        n = t.next_part()
        for f, change in self.edits:
            t.emit(FileChanged(path=f, change=change, origin="agent"), n)
        t.emit(PartEnded(part_kind="patch", title=title_of("edit: " + ", ".join(f for f, _ in self.edits))), n)
        self.edits = []


register(AiderImporter())
