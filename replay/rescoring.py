"""Re-scoring: run a scorer on the reconstructed tree of chosen parts of old runs.

Contracts:

* **Append-only.** Each result is a ``scored`` event appended to the run's *score stream*
  (``runs/<id>/scores/``, its own lock); the run's own segments are never touched. A scorer's
  result and the results reused from it are fsynced together before the next one is appended.
* **Scored once.** The scorer's identity is its name and digest: sha256 of the command, the
  sandbox's :meth:`~agtrace.replay.sandbox.Sandbox.describe`, the result parser's settings and
  (local sandbox) the program the command starts (:func:`~agtrace.replay.sandbox.command_program`).
  An identical (tree, name, digest) is run once, across parts and runs and across invocations; the
  other parts get a ``scored`` event with the same result and ``reused_from = "<run>:<seq>"``
  naming the original (their ``output_tail`` is left empty: the output is stored once).
* **Resumable.** A (part, tree, final) of a run that already has a ``scored`` event with the same
  name and digest is skipped, so an interrupted rescore continues where it stopped and a repeated one
  runs nothing. Timeouts count as results (rerun with another ``--timeout`` = same digest, so
  they stay; change the command or name to force a rerun).
* **Bounded.** A scorer that runs past ``timeout`` is killed with its process group and
  recorded with status ``timeout`` (the local sandbox also kills, when a scorer ends, whatever
  it left running, and the scratch tree survives whatever the scorer did to it, see
  :class:`~agtrace.replay.checkout_cache.ScratchTree`); a scorer that cannot start (exit 126/127), is killed by a
  signal, or whose result cannot be parsed has status ``error``, with its output tail and why;
  only a sandbox that cannot work at all stops the rescore (:class:`RescoreError`; nothing is
  recorded for the part it was on). :attr:`RescoreReport.failed` counts both kinds.
* **Store-wide.** A run or part that cannot be scored (no repository state, no tree) is left out
  with its reason (:attr:`RescoreReport.unscored_reasons`); the rest goes on. A selection that
  names a part a run does not have (or an empty range) is bad input, as in every command that
  reads parts: :class:`~agtrace.eventlog.BadPartSelection`, raised before any scorer runs
  (ranges and words such as ``all`` take what each run has).
* **Per name.** Results are skipped and reused within one scorer name: a second name whose
  digest equals another's is run again under its own name (it reuses none of the other's).

Work runs on ``jobs`` threads (with ``jobs`` 1, on the calling thread), each with one scratch
directory switched from tree to tree (:class:`~agtrace.replay.checkout_cache.ScratchTree`), so a
part costs the paths it changed, not the whole tree. Events and catalog rows are written by the
calling thread only.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec

from agtrace.eventlog import (
    EventlogError,
    Redactor,
    Scored,
    SnapshotTaken,
    Store,
    find_score,
    leftover_tag,
    parse_parts,
    remove_stale,
    score_rows,
    scored_parts,
)

from .checkout_cache import ScratchTree
from .errors import RescoreError
from .results import ResultSpec, parse_result
from .sandbox import Sandbox, command_program
from .workspace import base_tree, missing_trees_reason, resolve_parts, snapshots

if TYPE_CHECKING:  # pygit2 loads when a rescore opens a repository, not with `agtrace scores`
    from agtrace.eventlog import GitStore

OUTPUT_TAIL_CHARS = 4000
ROOT_PREFIX = "agtrace-rescore-"
"""Workers' temp roots, ``agtrace-rescore-@<host>-<pid>@…``; a dead owner's are removed next time."""
PARTS = ("last", "first", "all", "changed")
"""The words of a part selection (``final`` is accepted for ``last``); ranges and lists too."""


@dataclass
class RescoreReport:
    """What a rescore did. ``results`` has one dict per selected (run, part), in order."""

    scorer: str
    scorer_digest: str
    runs: list[str]
    selected: int = 0
    ran: int = 0
    reused: int = 0
    skipped: int = 0
    ok: int = 0
    error: int = 0
    timeout: int = 0
    duration_s: float = 0.0
    results: list[dict] = field(default_factory=list)
    unscored: int = 0
    """Runs and parts left out for a reason (no repository state, no tree, no such part)."""
    unscored_reasons: list[dict] = field(default_factory=list)
    """``{"run_id", "part", "reason"}`` for each of them (``part`` None: the whole run)."""

    @property
    def failed(self) -> int:
        """Results that are no score: the scorer could not run, was killed or timed out, or
        its result could not be read (statuses ``error`` and ``timeout``)."""
        return self.error + self.timeout

    def not_scored(self, run_id: str, part: int | None, reason: str) -> None:
        self.unscored += 1
        self.unscored_reasons.append({"run_id": run_id, "part": part, "reason": reason})

    def to_dict(self) -> dict:
        return {**self.__dict__, "failed": self.failed}


def scorer_digest(cmd: str, sandbox: Sandbox, result: ResultSpec) -> str:
    """sha256 of the command, the sandbox's environment description, the parser settings and,
    for the local sandbox, the program the command starts (:func:`command_program`): an
    upgraded ``go`` or ``cargo`` is another scorer, whose results are not reused."""
    environment = sandbox.describe()
    doc = {"cmd": cmd, "environment": environment, "result": result.describe()}
    if environment.get("sandbox") == "local":
        doc["program"] = command_program(cmd, getattr(sandbox, "env", os.environ).get("PATH"))
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def select_parts(
    store: Store, run_id: str, parts: str | Sequence[int] = "last", *, left_out: list[int] | None = None
) -> list[tuple[int, str, bool]]:
    """``(part, tree id, final)`` to score, for a part selection in the one vocabulary
    (:mod:`agtrace.eventlog.part_selection`): ``last`` (alias ``final``: the run's last tree,
    its final snapshot, recorded under the last part, ``final`` when it is not that part's own
    tree), ``all`` (every part with a tree),
    ``changed`` (parts whose tree differs from the previous one's), ``first``, ranges ``3-7``
    and lists ``1,5,9`` (0 = the base tree). Parts without a tree are left out (and appended to
    ``left_out``) when the selection is a word or a range; a part named by number without one
    is a :class:`RescoreError`, and so is a run whose events cannot be read to their end (a
    damaged segment: ``agtrace verify`` says what). Words that cannot be read as parts, a part the run does not have
    and an empty range raise :class:`~agtrace.eventlog.BadPartSelection`, as every command that
    reads parts does (bad input)."""
    store.sync(run_id)
    damage = store.damage(run_id)
    if damage is not None:  # its parts and trees past the damage are not known
        raise RescoreError(f"not rescored: {damage}")
    rows = [r for r in store.catalog.part_rows(run_id) if r["tree_id"]]
    selection = parse_parts(parts)
    if selection.items == ("last",):
        return _final(store, run_id, rows)
    by_part = {r["part"]: r["tree_id"] for r in rows}
    numbers = resolve_parts(store, run_id, parts, base=True)
    named = {n for n in selection.items if isinstance(n, int)}
    out = []
    for n in numbers:
        tree = base_tree(store, run_id) if n == 0 else by_part.get(n)
        if tree:
            out.append((n, tree, False))
        elif n not in named:
            if left_out is not None:
                left_out.append(n)
        else:
            raise RescoreError(
                f"run {run_id} has no tree for part {n}; `agtrace show {run_id}` lists its parts"
            )
    return out


def _final(store: Store, run_id: str, rows: list[dict]) -> list[tuple[int, str, bool]]:
    """The run's final tree under its last part: ``final`` when the work after that part ended
    changed the tree (the part's own tree is another score's, ``--parts all``'s)."""
    if not rows:
        base = base_tree(store, run_id)
        return [(0, base, False)] if base else []
    last = rows[-1]
    tree = last["tree_id"]
    for rec in store.read(run_id, last["last_seq"]):
        if isinstance(rec.event, SnapshotTaken) and rec.event.final:
            tree = rec.event.tree_id
    return [(last["part"], tree, tree != last["tree_id"])]


@dataclass
class _Job:
    tree_id: str
    repo: str
    targets: list[tuple[str, int, bool]]  # (run, part, final) in order; the first gets the original event


def rescore(
    store: Store,
    run_ids: Sequence[str],
    *,
    name: str,
    cmd: str,
    sandbox: Sandbox,
    parts: str | Sequence[int] = "last",
    jobs: int = 1,
    timeout: float = 600.0,
    result: ResultSpec | None = None,
    progress: Callable[[int, int], None] | None = None,
    scratch_dir: str | Path | None = None,
    reuse: bool = True,
) -> RescoreReport:
    """Score the selected parts of ``run_ids`` with ``cmd`` (see the module docstring).

    ``reuse=False`` runs the scorer for every selected part even when its (tree, digest) was
    scored before (to measure a flaky scorer); parts this digest already scored are still skipped.

    ``progress(done, total)`` is called on the calling thread after each (run, part) is
    recorded. Returns when every selected part has a ``scored`` event with this digest.
    """
    store.require_writable("record scores in it")  # before any scorer runs
    started = time.perf_counter()
    result = result or ResultSpec()
    digest = scorer_digest(cmd, sandbox, result)
    report = RescoreReport(scorer=name, scorer_digest=digest, runs=list(run_ids))
    todo: dict[str, _Job] = {}
    for run_id in run_ids:
        left_out: list[int] = []
        try:
            chosen = select_parts(store, run_id, parts, left_out=left_out)
        except RescoreError as exc:
            report.not_scored(run_id, None, str(exc))
            continue
        for part in left_out:
            report.not_scored(run_id, part, f"part {part} of run {run_id} recorded no tree")
        if not chosen:
            report.not_scored(run_id, None, missing_trees_reason(store, run_id)
                              or f"run {run_id} has no part with a tree among {parts!r}")
            continue
        reason = missing_trees_reason(store, run_id)
        if reason:
            report.not_scored(run_id, None, reason)
            continue
        done = scored_parts(store, run_id, digest, name)
        report.selected += len(chosen)
        pending = [c for c in chosen if c not in done]
        report.skipped += len(chosen) - len(pending)
        repo = snapshots(store, run_id).path if pending else ""
        for part, tree, final in pending:
            job = todo.setdefault(tree if reuse else f"{tree}:{run_id}:{part}", _Job(tree, repo, []))
            job.targets.append((run_id, part, final))
    total = sum(len(j.targets) for j in todo.values())
    recorder = _Recorder(store, name, digest, report, progress, total)
    try:
        to_run = []
        for job in todo.values():
            original = find_score(store, digest, job.tree_id, name) if reuse else None
            if original is not None:
                origin = f"{original['run_id']}:{original['seq']}"
                recorder.reuse(job, origin, _scored_event(store, original) or original)
            else:
                to_run.append(job)
        _run_jobs(to_run, cmd, sandbox, result, timeout, max(1, jobs), scratch_dir, recorder)
    finally:
        recorder.close()
    order = {run_id: i for i, run_id in enumerate(run_ids)}
    report.results.sort(key=lambda r: (order[r["run_id"]], r["final"], -1 if r["part"] is None else r["part"]))
    report.duration_s = time.perf_counter() - started
    return report


def _scored_event(store: Store, row: dict) -> Scored | None:
    """The ``scored`` event a scores-table row was folded from: it has every count (errors,
    skipped), the row only some of them. None if it cannot be read (the row is used then)."""
    try:
        for rec in store.read(row["run_id"], row["seq"], row["seq"], stream="scores"):
            if isinstance(rec.event, Scored):
                return rec.event
    except (EventlogError, OSError):  # the row holds the result all the same
        return None
    return None


class _Recorder:
    """Appends results (calling thread only): one score-stream writer per run, opened lazily.
    Each batch (an original and its reuses) is fsynced before progress is reported."""

    def __init__(self, store, name, digest, report, progress, total):
        self.store, self.name, self.digest, self.report = store, name, digest, report
        self.progress, self.total, self.done = progress, total, 0
        self.writers: dict = {}
        self.redactor = Redactor.from_env(os.environ)  # a scorer's output can print secrets too
        self._redacting = threading.Lock()

    def output_tail(self, output: str) -> str:
        """The last :data:`OUTPUT_TAIL_CHARS` of a scorer's output, redacted before it is cut
        (a secret that straddles the cut would no longer look like one). Any thread."""
        with self._redacting:
            return self.redactor.redact(output)[0][-OUTPUT_TAIL_CHARS:]

    def _append(self, run_id: str, event: Scored) -> int:
        writer = self.writers.get(run_id)
        if writer is None:
            writer = self.store.open_writer(run_id, stream="scores")
            self.writers[run_id] = writer
        ts = time.time_ns()
        event = self.redactor.redact_event(event)[0]
        seq = writer.append(event, part=event.scored_part, ts=ts).seq
        row = {k: getattr(event, k) for k in _REPORTED}
        self.report.results.append({"run_id": run_id, "part": event.scored_part, "seq": seq, **row})
        setattr(self.report, event.status, getattr(self.report, event.status) + 1)
        return seq

    def _batch_done(self, n: int) -> None:
        for writer in self.writers.values():
            writer.flush()
        self.done += n
        if self.progress:
            self.progress(self.done, self.total)

    def record(self, job: _Job, event: Scored) -> None:
        run_id, part, final = job.targets[0]
        seq = self._append(run_id, msgspec.structs.replace(event, scored_part=part, final=final))
        self.report.ran += 1
        self.reuse(_Job(job.tree_id, job.repo, job.targets[1:]), f"{run_id}:{seq}", event, counted=1)

    def reuse(self, job: _Job, origin: str, source, counted: int = 0) -> None:
        """Append ``source``'s result (an event or a table row) for every target of ``job``."""
        get = source.get if isinstance(source, dict) else lambda k: getattr(source, k)
        copied = {k: get(k) for k in _COPIED}
        for run_id, part, final in job.targets:
            event = Scored(
                scorer=self.name,
                scorer_digest=self.digest,
                tree_id=job.tree_id,
                scored_part=part,
                final=final,
                reused_from=origin,
                **copied,
            )
            self._append(run_id, event)
            self.report.reused += 1
        self._batch_done(counted + len(job.targets))

    def close(self) -> None:
        for writer in self.writers.values():
            writer.close()


_COPIED = ("value", "passed", "failed", "errors", "skipped", "total", "status", "exit_code",
           "duration_ms")
_REPORTED = ("tree_id", "final", "status", "value", "passed", "failed", "total", "reused_from")


def _run_jobs(
    jobs_: list[_Job], cmd, sandbox, result, timeout, jobs, scratch_dir, recorder
) -> None:
    """Run the scorer once per job on ``jobs`` worker threads; record on this thread. With one
    job at a time, no thread: the work runs here, so a first checkout of a big tree may fork a
    second writer (a process with other threads never forks one, see ``CHECKOUT_JOBS``)."""
    if not jobs_:
        return
    temp = Path(scratch_dir) if scratch_dir is not None else Path(tempfile.gettempdir())
    remove_stale(temp, ROOT_PREFIX)  # what a killed rescore (SIGKILL) left
    # each worker a private root (0700, named by host and pid): a scorer that deletes its
    # scratch's parent removes no sibling worker's tree
    roots = [Path(tempfile.mkdtemp(prefix=f"{ROOT_PREFIX}{leftover_tag()}", dir=temp))
             for _ in range(min(jobs, len(jobs_)))]
    if jobs == 1:
        scratch, repos = ScratchTree(roots[0] / "w0"), {}
        try:
            for job in jobs_:
                try:
                    scored = _score_one(job, scratch, repos, cmd, sandbox, result, timeout, recorder)
                except Exception as exc:  # as a worker thread's failure is (an interrupt stays one)
                    raise _sandbox_failed(job, exc) from exc
                recorder.record(job, scored)
        finally:
            scratch.remove()
            for root in roots:
                shutil.rmtree(root, ignore_errors=True)
        return
    work: queue.Queue = queue.Queue()
    for job in jobs_:
        work.put(job)
    done: queue.Queue = queue.Queue()
    stop = threading.Event()

    def worker(index: int) -> None:
        scratch = ScratchTree(roots[index] / f"w{index}")
        repos: dict[str, GitStore] = {}
        try:
            while not stop.is_set():
                try:
                    job = work.get_nowait()
                except queue.Empty:
                    return
                try:
                    done.put((job, _score_one(job, scratch, repos, cmd, sandbox, result, timeout, recorder)))
                except BaseException as exc:  # noqa: BLE001 - handed to the calling thread
                    done.put((job, exc))
                    return
        finally:
            scratch.remove()

    threads = [
        threading.Thread(target=worker, args=(i,), daemon=True, name=f"agtrace-rescore-{i}")
        for i in range(min(jobs, len(jobs_)))
    ]
    for t in threads:
        t.start()
    try:
        for _ in range(len(jobs_)):
            job, outcome = done.get()
            if isinstance(outcome, BaseException):
                raise _sandbox_failed(job, outcome) from outcome
            recorder.record(job, outcome)
    finally:
        stop.set()
        cancel = getattr(sandbox, "cancel", None)
        if cancel is not None and any(t.is_alive() for t in threads):
            cancel()
        for t in threads:
            t.join(timeout=30)
        for root in roots:
            shutil.rmtree(root, ignore_errors=True)


def _score_one(job: _Job, scratch: ScratchTree, repos: dict[str, GitStore], cmd, sandbox, result, timeout,
               recorder: _Recorder) -> Scored:
    """One job: its tree shown in ``scratch`` (repositories opened once, kept in ``repos``), the
    scorer run on it, its result read."""
    from agtrace.eventlog import GitStore

    git = repos.get(job.repo) or repos.setdefault(job.repo, GitStore.open(job.repo))
    scratch.show(git, job.tree_id)
    ran = sandbox.run(scratch.path, cmd, timeout, files=result.files)
    return _scored(recorder, job, ran, result)


def _sandbox_failed(job: _Job, exc: BaseException) -> RescoreError:
    return RescoreError(f"the sandbox failed on tree {job.tree_id}: {exc}; nothing was recorded for it; fix "
                        "the sandbox and rerun to resume")


def _scored(recorder: _Recorder, job: _Job, ran, spec: ResultSpec) -> Scored:
    tail = recorder.output_tail(ran.output)
    score = None
    broken = _broken(ran.exit_code)
    if ran.timed_out:
        status = "timeout"
    elif broken:
        status = "error"
        tail = (tail + f"\n[agtrace: {broken}]")[-OUTPUT_TAIL_CHARS:]
    else:
        score = parse_result(spec, ran.exit_code, ran.output, ran.files)
        status = score.status
        if score.error:
            tail = (tail + f"\n[agtrace: result not read: {score.error}]")[-OUTPUT_TAIL_CHARS:]
    return Scored(
        scorer=recorder.name,
        scorer_digest=recorder.digest,
        tree_id=job.tree_id,
        value=score.value if score else None,
        passed=score.passed if score else None,
        failed=score.failed if score else None,
        errors=score.errors if score else None,
        skipped=score.skipped if score else None,
        total=score.total if score else None,
        status=status,
        exit_code=ran.exit_code,
        duration_ms=round(ran.duration_ms, 3),
        output_tail=tail,
    )


def _broken(exit_code: int | None) -> str:
    """Why an exit code says the scorer did not run to a result ("" when it may have): the
    shell could not find or execute the command (127, 126), or a signal killed it."""
    if exit_code == 127:
        return "the scorer could not start: command not found (exit 127); check --cmd"
    if exit_code == 126:
        return "the scorer could not start: command not executable (exit 126); check --cmd and its permissions"
    if exit_code is not None and exit_code < 0:
        return f"the scorer was killed by signal {-exit_code} ({_signal_name(-exit_code)})"
    if exit_code is not None and 128 < exit_code <= 128 + 64:
        return f"the scorer was killed by signal {exit_code - 128} ({_signal_name(exit_code - 128)}; exit {exit_code})"
    return ""


def _signal_name(number: int) -> str:
    import signal

    try:
        return signal.Signals(number).name
    except ValueError:
        return "unknown signal"


def scores(store: Store, run_id: str, name: str | None = None) -> list[dict]:
    """Every ``scored`` event of a run (one scorer's with ``name``), oldest first, as rows with
    ``scorer, scorer_digest, scored_part, tree_id, status, value, passed, failed, total, …``."""
    return score_rows(store, run_id, name)
