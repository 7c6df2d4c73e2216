"""Runs as ATIF trajectories: the Agent Trajectory Interchange Format of Harbor / Terminal-Bench.

:func:`export_atif` writes one trajectory per run, ``out/<run id>.json``, which Harbor's own
models (``harbor.models.trajectories.Trajectory``) load and validate. The mapping is in
``docs/export.md``; in short: a user (or system) step per prompt and per user message outside a
part, one step per part (its assistant messages, reasoning, tool calls, and their results as the
step's observation), a system step per error outside a part. Per-step metrics are the part's
metrics and final metrics the run's, both read from the metrics projection: this module never
adds up tokens itself. Costs are the priced ones of the costs projection (``agtrace show``'s):
``total_cost_usd`` and a step's ``cost_usd`` are given only when every call of the run (the
part) was priced, else left out with ``extra.cost_left_out`` saying which calls were not;
what the agent itself reported is ``extra.reported_cost_usd``.

Contracts:

* **All or nothing.** ``out`` must not exist. The trajectories are written (each fsynced) into a
  temporary sibling directory that is renamed to ``out`` once every run is written; a failed or
  interrupted export leaves nothing under ``out``.
* **Streaming.** A trajectory is written step by step while the run is read: what is held at
  once is the events of the parts still open and the run's part-metrics rows, never the run.
* **Deterministic.** The same events give the same bytes (no clock, no random ids). A run still
  being written is exported up to the event its metrics were folded to when its turn came.
* **Complete texts.** Texts too large to inline are read from the blob store; a missing blob
  fails the export (``CorruptBlob``) instead of writing a truncated trajectory.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import BinaryIO

import msgspec

from agtrace.eventlog import (
    CorruptLog,
    Record,
    RunCost,
    RunEnded,
    RunMetrics,
    RunNotFound,
    RunStarted,
    Store,
    part_cost_details,
    part_metrics,
    run_costs,
    run_metrics,
    temp_beside,
)

from .atif_step import StepBuilder, cost_fields, iso_time, prompt_tokens
from .errors import ExportError, OutputNotEmpty
from .export import ExportReport, output_error

SCHEMA_VERSION = "ATIF-v1.7"
"""The ATIF version written: the oldest one with every field this module uses (the ``extra``
of tool calls and observation results came in v1.7)."""

_encode = msgspec.json.Encoder().encode


def trajectory(store: Store, run_id: str) -> dict:
    """The ATIF trajectory of a run as a dict (what :func:`write_trajectory` writes)."""
    buf = io.BytesIO()
    write_trajectory(store, run_id, buf)
    return json.loads(buf.getvalue())


def write_trajectory(store: Store, run_id: str, fh: BinaryIO) -> int:
    """Write the ATIF trajectory of a run to ``fh`` as JSON; return the number of steps."""
    return _write(store, run_id, fh)[0]


def export_atif(
    store: Store,
    run_ids: Iterable[str],
    *,
    out: str | os.PathLike,
    progress: Callable[[int, int], None] | None = None,
) -> ExportReport:
    """Write ``out/<run id>.json``, one ATIF trajectory per run; see the module docstring.

    ``progress(done, total)`` is called after each run with the runs written so far.

    Raises:
        ExportError: ``out`` is a URL (write locally, then copy).
        OutputNotEmpty: ``out`` already exists.
        RunNotFound: a run id is not in the store.
    """
    started = time.perf_counter()
    out_str = os.fspath(out)
    if "://" in out_str:
        raise ExportError(f"ATIF export writes a local directory, not {out_str}; "
                          "export to a path and copy it (agtrace push ships runs themselves)")
    run_ids = list(run_ids)
    missing = [r for r in run_ids if not store.has_run(r)]
    if missing:
        raise RunNotFound(f"no run {missing[0]} in {store.root}; `agtrace ls` lists the runs")
    dest = Path(out_str).expanduser()
    if dest.exists():
        raise OutputNotEmpty(f"{dest} already exists; an export never overwrites: remove it or pick another -o")
    dest.parent.mkdir(parents=True, exist_ok=True)
    report = ExportReport(format="atif", out=str(dest), runs=len(run_ids))
    building = temp_beside(dest, directory=True)  # a killed export's is removed by the next one
    try:
        target = building / "atif"
        target.mkdir()
        for i, run_id in enumerate(run_ids):
            path = target / f"{run_id}.json"
            try:
                with open(path, "wb") as fh:
                    steps, events = _write(store, run_id, fh)
                    fh.flush()
                    os.fsync(fh.fileno())
            except CorruptLog as exc:  # a damaged run is left out, named; the others go on
                path.unlink()
                report.add_damaged(store, run_id, exc)
                continue
            report.steps += steps
            report.events += events
            report.files += 1
            report.bytes += path.stat().st_size
            if progress:
                progress(i + 1, len(run_ids))
        os.rename(target, dest)
    except OSError as exc:
        raise output_error(exc, building) from None
    finally:
        shutil.rmtree(building, ignore_errors=True)
    report.duration_s = time.perf_counter() - started
    return report


# -- writing ---------------------------------------------------------------------------------


def _write(store: Store, run_id: str, fh: BinaryIO) -> tuple[int, int]:
    """Write one trajectory; return (steps, events read)."""
    run = run_metrics(store, run_id)
    damage = store.damage(run_id)  # the metrics stop at the damage: half a run must not pass as whole
    if damage is not None:
        raise CorruptLog(damage)
    parts = {p.part: p for p in part_metrics(store, run_id)}
    records = store.read(run_id, 1, run.events)  # the events the metrics are of, for a live run too
    first = next(records, None)
    start = first.event if first is not None and isinstance(first.event, RunStarted) else RunStarted()
    model = store.info(run_id).model or start.model  # the model as called, when the start did not name it
    steps = StepBuilder(store, parts, model, part_cost_details(store, run_id))
    fh.write(b'{"schema_version":"%s","session_id":%s,"trajectory_id":%s,"agent":%s,"steps":['
             % (SCHEMA_VERSION.encode(), _encode(run_id), _encode(run_id), _encode(_agent(start, model))))
    ended: RunEnded | None = None
    events = 0
    for rec in _chain(first, records):
        events += 1
        if isinstance(rec.event, RunEnded):
            ended = rec.event
        for step in steps.feed(rec):
            _put(fh, steps, step)
    for step in steps.finish():
        _put(fh, steps, step)
    if steps.count == 0:
        status = run.status or (ended.status if ended else "")
        _put(fh, steps, {"timestamp": iso_time(first.ts) if first else None, "source": "system",
                         "message": f"no message, prompt or part was recorded (run {status or 'empty'})"})
    tail = {"final_metrics": _final_metrics(run, run_costs(store, [run_id])[run_id], steps.count)}
    notes = _notes(run, steps)
    if notes:
        tail["notes"] = notes
    tail["extra"] = _run_extra(start, ended, run)
    fh.write(b"\n]," + _encode(tail)[1:] + b"\n")
    return steps.count, events


def _chain(first: Record | None, rest: Iterable[Record]):
    if first is not None:
        yield first
    yield from rest


def _put(fh: BinaryIO, steps: StepBuilder, step: dict) -> None:
    steps.count += 1
    step = {"step_id": steps.count, **{k: v for k, v in step.items() if v is not None}}
    if step.get("metrics"):
        steps.step_prompt_tokens += step["metrics"]["prompt_tokens"]
        steps.step_completion_tokens += step["metrics"]["completion_tokens"]
    fh.write((b"\n" if steps.count == 1 else b",\n") + _encode(step))


def _agent(start: RunStarted, model: str) -> dict:
    agent = {"name": start.agent or "unknown", "version": start.agent_version or "unknown"}
    if model:
        agent["model_name"] = model
    extra = {k: v for k, v in (("command", start.command), ("config", start.config)) if v}
    if extra:
        agent["extra"] = extra
    return agent


def _final_metrics(run: RunMetrics, cost: RunCost, steps: int) -> dict:
    """ATIF's run totals; ``total_cost_usd`` is the run's priced cost when whole (see
    :func:`cost_fields`); ``extra.agtrace_metrics`` is ``agtrace metrics --json`` (``cost`` is
    the priced cost object, as :meth:`~agtrace.eventlog.RunCost.cost_object` gives it)."""
    out = {"total_prompt_tokens": prompt_tokens(run), "total_completion_tokens": run.tokens_output,
           "total_cached_tokens": run.tokens_cache_read}
    priced, extra = cost_fields(cost)
    if priced is not None:
        out["total_cost_usd"] = priced
    out["total_steps"] = steps
    out["extra"] = {"cache_creation_input_tokens": run.tokens_cache_write,
                    "reasoning_tokens": run.tokens_reasoning, **extra,
                    "agtrace_metrics": {**run.to_dict(), "cost": cost.cost_object()}}
    return out


def _notes(run: RunMetrics, steps: StepBuilder) -> str:
    prompt = prompt_tokens(run) - steps.step_prompt_tokens
    completion = run.tokens_output - steps.step_completion_tokens
    if not (prompt or completion):
        return ""
    return (f"{prompt:,} prompt and {completion:,} completion tokens were reported outside any agent "
            "step (before the first part, or in a user part); final_metrics counts them, no step does. "
            "total_steps is the number of steps; each agent step is one agtrace part.")


def _run_extra(start: RunStarted, ended: RunEnded | None, run: RunMetrics) -> dict:
    items = {"task_id": start.task_id, "repo": start.repo, "base_commit": start.base_commit,
             "prompt_sha256": start.prompt_sha256, "parent_run": start.parent_run, "tags": start.tags,
             "source": start.source, "status": run.status, "reason": run.reason,
             "exit_code": ended.exit_code if ended else None}
    extra = {"agtrace_run_id": run.run_id, **{k: v for k, v in items.items() if v not in ("", None, {})}}
    if start.attempt != 1:
        extra["attempt"] = start.attempt
    return extra


__all__ = ["SCHEMA_VERSION", "export_atif", "trajectory", "write_trajectory"]
