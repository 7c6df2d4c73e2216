"""Reading an envoi-trace source into one normalized trace dict, whatever its era.

``load_source`` parses and checks everything (JSON, Parquet, the bundle's header) before the
importer touches the store, so a truncated or foreign file fails without leaving anything.
The normalized form is the era-A ``AgentTrace`` document: ``parts`` (deduplicated, sorted by
``part``), ``turns`` (without their part copies), ``evaluations`` keyed by commit (era C: rebuilt
from ``eval_events_delta``, the last event of an evaluation wins), ``session_end``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .base import ImportError_

TRACE_JSON = "agent_trace.json"
TRACE_PARQUET = "trace.parquet"
_JSON_COLUMNS = ("files", "tool_input", "tool_output", "tool_error", "token_usage", "envoi_calls",
                 "testing_state", "repo_checkpoint", "eval_events_delta", "task_params", "run_metadata",
                 "evaluations", "suites", "artifacts")


@dataclass
class TraceSource:
    trace: dict
    parts: list[dict]
    turns: list[dict]
    era: str
    trace_path: Path
    bundle: Path | None
    logs: list[dict] = field(default_factory=list)
    raw: list[tuple[str, str]] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)
    digest: str = ""


def _trace_file(path: Path) -> Path | None:
    if path.is_dir():
        for name in (TRACE_JSON, TRACE_PARQUET):
            if (path / name).is_file():
                return path / name
        return None
    return path


def sniff(path: Path) -> str | None:
    """The era (``A``, ``B``, ``C``) of an envoi-trace source, or None. Reads only a header."""
    trace = _trace_file(path)
    if trace is None or not trace.is_file():
        return None
    if trace.suffix == ".json":
        with open(trace, "rb") as fh:
            head = fh.read(65536)
        return "A" if b'"trajectory_id"' in head and b'"agent_model"' in head else None
    if trace.suffix == ".parquet":
        try:
            import pyarrow.parquet as pq

            names = set(pq.read_schema(trace).names)
        except Exception:  # noqa: BLE001 - not parquet (or pyarrow missing): not ours
            return None
        if {"trajectory_id", "part", "part_type"} <= names:
            return "C" if "trace_schema_version" in names else "B"
    return None


def load_source(path: Path) -> TraceSource:
    """Parse a trajectory directory or trace file (see the module docstring)."""
    trace_path = _trace_file(path)
    era = sniff(path)
    if trace_path is None or era is None:
        raise ImportError_(f"{path}: not an envoi-trace source (expected {TRACE_JSON} or {TRACE_PARQUET} "
                           "with trajectory_id and parts); pass the right --format")
    folder = trace_path.parent
    bundle = folder / "repo.bundle"
    bundle = bundle if bundle.is_file() else None
    if bundle is not None:
        with open(bundle, "rb") as fh:
            if not fh.readline().startswith(b"# v") :
                raise ImportError_(f"{bundle}: corrupt git bundle (no bundle header); download repo.bundle again")
    h = hashlib.sha256()
    if era == "A":
        data = trace_path.read_bytes()
        h.update(data)
        src = _from_json(trace_path, data)
    else:
        src = _from_parquet(trace_path, era, h)
    src.bundle = bundle
    if bundle is not None:
        with open(bundle, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    src.digest = h.hexdigest()
    return src


def _from_json(trace_path: Path, data: bytes) -> TraceSource:
    try:
        trace = json.loads(data)
    except UnicodeDecodeError as exc:
        raise ImportError_(f"{trace_path}: not UTF-8 JSON ({exc}); is it an agent_trace.json?") from None
    except json.JSONDecodeError as exc:
        if exc.pos >= len(data.rstrip()) - 1 or data.rstrip()[-1:] not in (b"}", b"]"):
            raise ImportError_(f"{trace_path}: truncated: the JSON ends at byte {len(data)} in the middle of a "
                               "value (envoi rewrites this file after every part; an interrupted upload leaves "
                               "it cut); download it again") from None
        raise ImportError_(f"{trace_path}: invalid JSON at line {exc.lineno} column {exc.colno} "
                           f"(byte {exc.pos}): {exc.msg}") from None
    if not isinstance(trace, dict) or "trajectory_id" not in trace:
        raise ImportError_(f"{trace_path}: JSON without trajectory_id; not an envoi agent_trace.json")
    src = TraceSource(trace=trace, parts=[], turns=[], era="A", trace_path=trace_path, bundle=None)
    src.raw.append((trace_path.name, data.decode()))
    top = [p for p in trace.get("parts") or [] if isinstance(p, dict)]
    copies = [p for t in trace.get("turns") or [] if isinstance(t, dict) for p in t.get("parts") or []
              if isinstance(p, dict)]
    src.parts = _dedupe_parts(top, copies, src)
    src.turns = [{k: v for k, v in t.items() if k != "parts"} for t in trace.get("turns") or [] if isinstance(t, dict)]
    return src


def _dedupe_parts(top: list[dict], copies: list[dict], src: TraceSource) -> list[dict]:
    """Top-level parts, numbered; turn copies only fill in numbers missing at top level."""
    out: dict[int, dict] = {}
    prev = 0
    for i, rec in enumerate(top):
        n = rec.get("part")
        if not isinstance(n, int) or isinstance(n, bool):
            n = prev + 1
            rec = {**rec, "part": n}
        if n in out:
            src.problems.append((f"{src.trace_path.name}#parts[{i}]", f"duplicate part {n}; the first one was kept"))
            continue
        out[n] = rec
        prev = n
    for rec in copies:
        n = rec.get("part")
        if isinstance(n, int) and n not in out:
            out[n] = rec
    return [out[n] for n in sorted(out)]


def _parse_json(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _read_parquet(path: Path, h) -> list[dict]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ImportError_(f"{path}: reading Parquet needs pyarrow; pip install pyarrow") from None
    data = path.read_bytes()
    h.update(data)
    try:
        return pq.read_table(path).to_pylist()
    except Exception as exc:  # noqa: BLE001 - pyarrow's errors are not one tree
        raise ImportError_(f"{path}: truncated or corrupt Parquet file ({exc}); download it again") from None


def _from_parquet(trace_path: Path, era: str, h) -> TraceSource:
    rows = _read_parquet(trace_path, h)
    if not rows:
        raise ImportError_(f"{trace_path}: a trace.parquet without rows; nothing to import")
    for row in rows:
        for key in _JSON_COLUMNS:
            if key in row:
                row[key] = _parse_json(row[key])
    first, last = rows[0], rows[-1]
    trace = {k: first.get(k) for k in ("trajectory_id", "session_id", "agent", "agent_model", "started_at",
                                       "environment", "task_params", "run_metadata", "trace_schema_version",
                                       "sandbox_id", "sandbox_provider", "suites", "artifacts")}
    ended = [r for r in rows if r.get("session_end_reason")]
    if ended:
        e = ended[-1]
        trace["session_end"] = {"reason": e["session_end_reason"], "total_parts": e.get("session_end_total_parts"),
                                "total_turns": e.get("session_end_total_turns"),
                                "final_git_commit": e.get("session_end_final_commit")}
    src = TraceSource(trace=trace, parts=[], turns=[], era=era, trace_path=trace_path, bundle=None)
    for i, row in enumerate(rows):
        src.raw.append((f"{trace_path.name}#row={i}", json.dumps(row, ensure_ascii=False, default=str)))
    parts = sorted(rows, key=lambda r: (r.get("part") is None, r.get("part") or 0))
    src.parts = _dedupe_parts(parts, [], src)
    src.turns = _turns_from_rows(src.parts)
    evals = last.get("evaluations") if isinstance(last.get("evaluations"), dict) else {}
    trace["evaluations"] = evals or _evaluations_from_deltas(src.parts)
    logs = trace_path.parent / "logs.parquet"
    if era == "C" and logs.is_file():
        src.logs = _read_parquet(logs, h)
        for i, row in enumerate(src.logs):
            src.raw.append((f"logs.parquet#row={i}", json.dumps(row, ensure_ascii=False, default=str)))
    return src


def _turns_from_rows(parts: list[dict]) -> list[dict]:
    turns: dict[int, dict] = {}
    for rec in parts:
        t = rec.get("turn")
        if not isinstance(t, int):
            continue
        turn = turns.setdefault(t, {"turn": t, "part_start": rec["part"], "part_end": rec["part"],
                                    "timestamp": rec.get("timestamp"), "prompt": None})
        turn["part_start"] = min(turn["part_start"], rec["part"])
        turn["part_end"] = max(turn["part_end"], rec["part"])
        if turn["prompt"] is None and isinstance(rec.get("turn_user_message"), str):
            turn["prompt"] = rec["turn_user_message"]
    return [turns[t] for t in sorted(turns)]


def _evaluations_from_deltas(parts: list[dict]) -> dict[str, dict]:
    """Era C: fold every part's ``eval_events_delta`` into one record per evaluation."""
    out: dict[str, dict] = {}
    for rec in parts:
        for ev in rec.get("eval_events_delta") or []:
            if not isinstance(ev, dict):
                continue
            commit = ev.get("target_commit") or ""
            key = ev.get("eval_id") or f"{ev.get('kind')}:{commit}"
            row = out.setdefault(key, {"commit": commit, "part": ev.get("trigger_part") or rec.get("part")})
            for k, v in ev.items():
                if v is not None:
                    row["completed_at" if k == "finished_at" else k] = v
            row["commit"] = commit or row["commit"]
    return out
