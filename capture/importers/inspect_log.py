"""Importer of Inspect AI eval logs: ``.eval`` (zip) and ``.json`` (``--format inspect``).

Each sample (``id`` × ``epoch``) is one run; its key is the file's sha256 plus the sample id and
epoch. ``.eval`` members are zstd (method 93, Inspect ≥ 0.3.2xx) or DEFLATE (older logs):
Python < 3.14 cannot read zstd members, so the zip's central directory is read with
:mod:`zipfile` and each member's raw data is decompressed here (stored, DEFLATE, zstd).
Raw records: the sample's own member (``file#samples/<id>_epoch_<e>.json``) and ``header.json``
verbatim (a ``.json`` log: the whole document).

Strings ``attachment://<hash>`` are resolved from the sample's ``attachments``; a
``ModelEvent`` whose ``input`` was condensed into ``input_refs`` is resolved from
``events_data.messages`` (or the older ``message_pool``). What becomes what:

======================================  =========================================================
event                                   events
======================================  =========================================================
``model`` input messages not seen yet   ``message_added(system|user)`` once per message (by id,
(the sample input, later user turns)    else by content)
``model`` output                        ``model_called`` (ok, or failed with ``error``) +
                                        reasoning blocks as ``reasoning_added`` parts + the text
                                        as a ``message_added(assistant)`` part +
                                        ``usage_reported`` (``output.usage``) on that part
``tool``                                one tool part (``function``, ``arguments``, ``result``;
                                        ``error`` → status error; ``working_time``) [+
                                        ``tests_ran`` for test commands]
``score``                               ``scored`` in the run's score stream (where re-scores go;
                                        ``agtrace scores`` lists them), named by its ``scorer``:
                                        ``value`` (``C`` 1, ``I`` 0, ``P`` 0.5, numbers and
                                        booleans as they are), the answer and explanation in
                                        ``output_tail``, ``scorer_digest`` = sha256 of the
                                        scorer's name and ``scorer_args``, on the last part
                                        (logs whose score events carry no ``scorer`` name
                                        them by the sample's ``scores``, in order)
``compaction``                          ``message_added(system)`` "[compacted …]"
``error`` / ``sample.error``            ``error_occurred`` and the run ``failed`` with its message
``sample_limit`` / ``sample.limit``     the run ends ``limit`` (``timeout`` for time limits)
======================================  =========================================================

Record types are the events' ``event`` (:data:`KNOWN`, the 23 event types of Inspect's schema);
an event of another type is kept raw (in the sample member) and counted as unknown.
``source_version`` is the ``inspect_ai`` version that wrote the log (``eval.packages``), else
the log format's ``v<version>``.

A sample without error or limit ended ``completed`` when it has ``completed_at`` or scores;
else (a log still being written, a crashed eval) ``crashed`` once stale. Inspect reports
``input_tokens`` per provider convention (some include cache reads); they are kept as given
with ``input_tokens_cache_read``/``_write`` as cache counts.
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
import zipfile
import zlib
from pathlib import Path
from typing import Any

import zstandard

from agtrace.eventlog import (
    ErrorOccurred,
    MessageAdded,
    ModelCalled,
    RunStarted,
    Scored,
    Usage,
    UsageReported,
)

from ..adapters.base import title_of
from ..usage import token_count
from . import register
from .base import ImportContext, ImportError_
from .transcript import (
    Transcript,
    file_sha256,
    head,
    load_json_document,
    parse_ts,
    source_key,
    text_of,
)

FORMAT = "inspect"
KNOWN = {"*": frozenset((
    "sample_init", "sample_limit", "sandbox", "state", "store", "model", "tool", "anchor",
    "approval", "branch", "checkpoint", "compaction", "input", "interrupt", "score", "score_edit",
    "error", "logger", "info", "span_begin", "span_end", "step", "subtask"))}
_ATTACHMENT = re.compile(r"^attachment://([0-9a-f]+)$")
_SAMPLE = re.compile(r"^samples/[^/]+\.json$")


# -- reading .eval zips ---------------------------------------------------------------------------


def read_eval_members(path: Path, want: Any) -> dict[str, str]:
    """The members of an ``.eval`` zip whose names ``want(name)`` accepts, decompressed."""
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ImportError_(f"{path}: not a readable .eval zip ({exc}); the file is truncated or "
                           "is not an Inspect log") from exc
    out: dict[str, str] = {}
    with zf, open(path, "rb") as fh:
        for info in zf.infolist():
            if not want(info.filename):
                continue
            fh.seek(info.header_offset)
            local = fh.read(30)
            if len(local) < 30 or local[:4] != b"PK\x03\x04":
                raise ImportError_(f"{path}#{info.filename}: bad local header; the zip is corrupt")
            name_len, extra_len = struct.unpack("<HH", local[26:30])
            fh.seek(info.header_offset + 30 + name_len + extra_len)
            raw = fh.read(info.compress_size)
            if len(raw) < info.compress_size:
                raise ImportError_(f"{path}#{info.filename}: member data is truncated")
            try:
                if info.compress_type == zipfile.ZIP_STORED:
                    data = raw
                elif info.compress_type == zipfile.ZIP_DEFLATED:
                    data = zlib.decompress(raw, -15)
                elif info.compress_type == 93:
                    data = zstandard.ZstdDecompressor().decompress(
                        raw, max_output_size=max(info.file_size, 1))
                else:
                    raise ImportError_(f"{path}#{info.filename}: unsupported zip compression "
                                       f"method {info.compress_type}")
            except (zlib.error, zstandard.ZstdError) as exc:
                raise ImportError_(f"{path}#{info.filename}: cannot decompress ({exc}); the "
                                   "zip is corrupt") from exc
            if len(data) != info.file_size or zlib.crc32(data) != info.CRC:
                raise ImportError_(f"{path}#{info.filename}: the member does not match its CRC-32 and size "
                                   "in the zip directory; the file is damaged, nothing of it was imported")
            out[info.filename] = data.decode("utf-8")
    return out


# -- helpers --------------------------------------------------------------------------------------


def _resolve(value: Any, attachments: dict[str, str]) -> Any:
    if isinstance(value, str):
        m = _ATTACHMENT.match(value)
        return attachments.get(m.group(1), value) if m else value
    if isinstance(value, list):
        return [_resolve(v, attachments) for v in value]
    if isinstance(value, dict):
        return {k: _resolve(v, attachments) for k, v in value.items()}
    return value


def _content_text(content: Any) -> tuple[str, list[str]]:
    """``(text, reasoning blocks)`` of a ChatMessage ``content`` (a string or content blocks)."""
    if isinstance(content, str):
        return content, []
    texts, reasoning = [], []
    for block in content or []:
        if not isinstance(block, dict):
            continue
        if block.get("type") == "text":
            texts.append(str(block.get("text") or ""))
        elif block.get("type") == "reasoning":
            reasoning.append(str(block.get("reasoning") or block.get("summary") or ""))
    return "\n".join(texts), reasoning


def _score_value(value: Any) -> tuple[float | None, bool | None]:
    if isinstance(value, bool):
        return float(value), value
    if isinstance(value, int | float):
        return float(value), value >= 1
    if isinstance(value, str):
        letters = {"C": 1.0, "I": 0.0, "P": 0.5, "N": 0.0}
        if value in letters:
            return letters[value], value == "C"
        try:
            v = float(value)
        except ValueError:
            return None, None
        return v, v >= 1
    return None, None


def _usage(u: dict[str, Any]) -> Usage:
    return Usage(input=token_count(u.get("input_tokens")), output=token_count(u.get("output_tokens")),
                 cache_read=token_count(u.get("input_tokens_cache_read")),
                 cache_write=token_count(u.get("input_tokens_cache_write")),
                 reasoning=token_count(u.get("reasoning_tokens")))


# -- the importer ---------------------------------------------------------------------------------


class InspectImporter:
    """``--format inspect``."""

    name = FORMAT
    known = KNOWN

    def detect(self, path: Path) -> bool:
        if path.suffix == ".eval":
            return zipfile.is_zipfile(path)
        text = head(path, 4096).lstrip()
        return text.startswith(b"{") and b'"eval"' in text and b'"version"' in text and (
            b'"status"' in text)

    def read(self, path: Path, ctx: ImportContext) -> None:
        digest = file_sha256(path)
        if path.suffix == ".eval" or zipfile.is_zipfile(path):
            members = read_eval_members(path, lambda n: n in ("header.json", "_journal/start.json")
                                        or bool(_SAMPLE.match(n)))
            meta_name = "header.json" if "header.json" in members else "_journal/start.json"
            if meta_name not in members:
                raise ImportError_(f"{path}: no header.json or _journal/start.json; not an "
                                   "Inspect .eval log")
            header = json.loads(members[meta_name])
            samples = [(f"{path.name}#{n}", members[n], json.loads(members[n]))
                       for n in sorted(members) if _SAMPLE.match(n)]
            shared = [(f"{path.name}#{meta_name}", members[meta_name])]
        else:
            header, text = load_json_document(path, FORMAT)
            if not isinstance(header, dict) or not isinstance(header.get("eval"), dict):
                raise ImportError_(f"{path}: not an Inspect log (no eval object)")
            samples = [("", "", s) for s in header.get("samples") or [] if isinstance(s, dict)]
            shared = [(path.name, text)]
        if not samples:
            raise ImportError_(f"{path}: the log holds no samples (status "
                               f"{header.get('status')!r}); nothing to import")
        for location, text, sample in samples:
            self._sample(path, ctx, digest, header, shared, location, text, sample)

    def _sample(self, path: Path, ctx: ImportContext, digest: str, header: dict,
                shared: list[tuple[str, str]], location: str, text: str, sample: dict) -> None:
        spec = header.get("eval") if isinstance(header.get("eval"), dict) else {}
        attachments = sample.get("attachments") if isinstance(sample.get("attachments"), dict) else {}
        sid, epoch = str(sample.get("id")), str(sample.get("epoch") or 1)
        inp = _resolve(sample.get("input"), attachments)
        prompt = inp if isinstance(inp, str) else "\n".join(
            _content_text(m.get("content"))[0] for m in inp or [] if isinstance(m, dict))
        events = [e for e in sample.get("events") or [] if isinstance(e, dict)]
        started_ts = (parse_ts(sample.get("started_at")) or next(
            (ts for e in events if (ts := parse_ts(e.get("timestamp")))), None)
            or parse_ts(spec.get("created")) or 0)
        task = str(spec.get("task") or "")
        packages = spec.get("packages") if isinstance(spec.get("packages"), dict) else {}
        started = RunStarted(
            agent="inspect", agent_version=str(packages.get("inspect_ai") or ""),
            model=str(spec.get("model") or ""), task_id=f"{task}/{sid}" if task else sid,
            prompt=prompt, prompt_sha256=hashlib.sha256(prompt.encode()).hexdigest() if prompt else "",
            config={k: spec[k] for k in ("task_file", "task_args", "model_args", "sandbox", "solver")
                    if spec.get(k)},
            attempt=int(epoch) if epoch.isdigit() else 1,
            tags={k: str(v) for k, v in (("eval_id", spec.get("eval_id")), ("run_id", spec.get("run_id")),
                                         ("task", task), ("sample_id", sid), ("epoch", epoch)) if v},
            source=f"import:{FORMAT}",
            source_version=str(packages.get("inspect_ai") or "") or (
                f"v{header['version']}" if isinstance(header.get("version"), int) else ""))
        sink = ctx.new_run(source_key(FORMAT, digest, f"{sid}#epoch{epoch}"), started, started_ts)
        if sink is None:
            return
        t = Transcript(sink, FORMAT, started_ts, types=KNOWN["*"])
        for loc, raw in shared:
            t.raw(raw, loc)
        if text:
            t.raw(text, location)
        t.location = location or path.name
        _Sample(t, sample, attachments).write(events)


class _Sample:
    def __init__(self, t: Transcript, sample: dict, attachments: dict[str, str]):
        self.t = t
        self.where = t.location  # the event being read, for warnings
        self.sample = sample
        self.attachments = attachments
        data = sample.get("events_data") if isinstance(sample.get("events_data"), dict) else {}
        pool = data.get("messages") if isinstance(data.get("messages"), list) else sample.get("message_pool")
        self.pool = pool if isinstance(pool, list) else []
        self.seen: set[str] = set()
        self.error = ""
        self.limit = ""
        scores = sample.get("scores") if isinstance(sample.get("scores"), dict) else {}
        self.scorers = list(scores)  # older logs name a score event's scorer only here, in order
        self.unnamed = 0

    def write(self, events: list[dict]) -> None:
        t = self.t
        for i, e in enumerate(events):
            where = self.where = f"{t.location} events[{i}]"
            t.at(t.time_of(e.get("completed"), where) or t.time_of(e.get("timestamp"), where))
            kind = e.get("event")
            if not isinstance(kind, str):
                t.bad(f"an event without an event type ({e.get('uuid') or 'no uuid'})")
                continue
            if not t.knows(kind):
                continue
            try:
                if kind == "model":
                    self.model(_resolve(e, self.attachments))
                elif kind == "tool":
                    self.tool(_resolve(e, self.attachments))
                elif kind == "score":
                    self.score(_resolve(e, self.attachments))
                elif kind == "error":
                    err = e.get("error") if isinstance(e.get("error"), dict) else {}
                    self.error = str(err.get("message") or "error")
                    t.emit(ErrorOccurred(message=self.error, origin="agent", fatal=True))
                elif kind == "sample_limit":
                    self.limit = str(e.get("type") or "limit")
                    t.emit(ErrorOccurred(message=str(e.get("message") or f"{self.limit} limit"),
                                         origin="agent", error_type="sample_limit"))
                elif kind == "compaction":
                    t.emit(MessageAdded(role="system", text=f"[compacted: {e.get('type') or ''}, "
                                        f"tokens {e.get('tokens_before')} → {e.get('tokens_after')}]"))
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                t.bad(f"{kind} event {e.get('uuid') or ''}: {type(exc).__name__}: {exc}")
        self.finish()

    def model(self, e: dict[str, Any]) -> None:
        t = self.t
        messages = e.get("input") or []
        if not messages and isinstance(e.get("input_refs"), list):
            messages = [m for a, b in e["input_refs"] for m in self.pool[a:b]]
            messages = _resolve(messages, self.attachments)
        for m in messages:
            if not isinstance(m, dict) or m.get("role") not in ("system", "user"):
                continue
            text, _ = _content_text(m.get("content"))
            key = str(m.get("id") or "") or hashlib.sha256(f"{m['role']}\0{text}".encode()).hexdigest()
            if key not in self.seen:
                self.seen.add(key)
                t.emit(MessageAdded(role=m["role"], text=text, message_id=str(m.get("id") or "")))
        output = e.get("output") if isinstance(e.get("output"), dict) else {}
        model = str(output.get("model") or e.get("model") or "")
        seconds = e.get("working_time")
        duration = float(seconds) * 1000 if isinstance(seconds, int | float) else None
        if e.get("error"):
            message = text_of(e["error"])
            t.emit(ModelCalled(model=model, ok=False, error=message, duration_ms=duration,
                               retry=t.sink.count(e.get("retries"), "retries", self.where)))
            t.emit(ErrorOccurred(message=message, origin="model"))
            return
        t.emit(ModelCalled(model=model, ok=True, duration_ms=duration,
                           retry=t.sink.count(e.get("retries"), "retries", self.where)))
        before = t.parts.parts
        for choice in output.get("choices") or []:
            msg = choice.get("message") if isinstance(choice, dict) else None
            if not isinstance(msg, dict):
                continue
            text, reasoning = _content_text(msg.get("content"))
            for r in reasoning:
                t.reasoning_part(r, encrypted=not r)
            if text:
                t.message_part("assistant", text, message_id=str(msg.get("id") or ""), model=model)
            if msg.get("id"):
                self.seen.add(str(msg["id"]))
        if isinstance(output.get("usage"), dict):
            t.emit(UsageReported(usage=_usage(output["usage"]), model=model),
                   t.parts.parts if t.parts.parts > before else None)

    def tool(self, e: dict[str, Any]) -> None:
        args = e.get("arguments") if isinstance(e.get("arguments"), dict) else {}
        command = str(args.get("cmd") or args.get("command") or args.get("code") or "")
        result = e.get("result")
        output = _content_text(result)[0] if isinstance(result, list) else text_of(result)
        err = e.get("error") if isinstance(e.get("error"), dict) else None
        seconds = e.get("working_time")
        function = str(e.get("function") or "tool")
        self.t.tool_part(
            call_id=str(e.get("id") or ""), tool=function, arguments=args or e.get("arguments"),
            command=command, status="error" if err or e.get("failed") else "ok", output=output,
            error=str((err or {}).get("message") or ("tool failed" if e.get("failed") else "")),
            duration_ms=float(seconds) * 1000 if isinstance(seconds, int | float) else None,
            title=title_of(f"{function}: {command}" if command else function))

    def score(self, e: dict[str, Any]) -> None:
        score = e.get("score") if isinstance(e.get("score"), dict) else {}
        value, _ = _score_value(score.get("value"))
        scorer = str(e.get("scorer") or "")
        if not scorer and not e.get("intermediate"):
            scorer = self.scorers[self.unnamed] if self.unnamed < len(self.scorers) else ""
            self.unnamed += 1
        scorer = scorer or "score"
        identity = json.dumps({"inspect_scorer": scorer, "args": e.get("scorer_args")},
                              sort_keys=True, default=str)
        tail = "\n".join(f"{k}: {text_of(v)}" for k, v in (
            ("value", score.get("value")), ("answer", score.get("answer")),
            ("explanation", score.get("explanation")), ("target", e.get("target")),
            ("intermediate", e.get("intermediate") or None)) if v is not None)
        part = self.t.parts.parts or None
        self.t.sink.score(Scored(scorer=scorer, scorer_digest=hashlib.sha256(identity.encode()).hexdigest(),
                                 tree_id="", scored_part=part, value=value, output_tail=tail[-2000:]),
                          part, self.t.ts)

    def finish(self) -> None:
        t = self.t
        s = self.sample
        err = s.get("error")
        t.at_time(s.get("completed_at"))
        if err:
            message = str(err.get("message") if isinstance(err, dict) else err) or "sample error"
            if message != self.error:
                t.emit(ErrorOccurred(message=message, origin="agent", fatal=True))
            t.end("failed", message)
        elif s.get("limit") or self.limit:
            limit = s.get("limit")
            kind = str(limit.get("type") if isinstance(limit, dict) else limit or self.limit)
            t.end("timeout" if kind in ("time", "working") else "limit", f"{kind} limit reached")
        elif self.error:
            t.end("failed", self.error)
        elif s.get("completed_at") or s.get("scores") or s.get("output"):
            t.end("completed")
        else:
            t.end_without_marker("the sample has no completed_at, output or score")


register(InspectImporter())
