"""Capture and scoring in a remote sandbox (Modal), streaming events back as they happen.

The only module of agtrace that imports ``modal`` (lazily, inside :class:`ModalSandboxAPI`).
Tested with modal 1.6.4. The Modal surface used, all of it::

    modal.App.lookup(name, create_if_missing=True)
    modal.Image.debian_slim(python_version=…).apt_install("git").pip_install(*packages)
    modal.Sandbox.create(app=, image=, timeout=, workdir=)       # a sleeping container
    sb.exec(*argv, workdir=, env=, timeout=, text=True, bufsize=1)  # -> ContainerProcess
    proc.stdout / proc.stderr                                     # iterated line by line
    proc.wait() -> int, proc.poll() -> int | None
    sb.filesystem.read_bytes(path), sb.filesystem.write_bytes(data, path)   # (sb.open() is gone in 1.6)
    sb.terminate()

Everything else is built on :class:`SandboxAPI`, the small surface above as a Protocol, with two
implementations: :class:`ModalSandboxAPI` (thin, calls Modal) and :class:`InMemorySandboxAPI`
(runs the commands as local subprocesses in a private temp directory; the contract tests use it).

Contracts of :func:`run_agent_in_sandbox`:

* Every stdout/stderr line of the agent is stored as it arrives, through the same adapter and
  recorder path as local capture (``runner._store_line``), so the events are the same.
* When a part ends, the agent's process group is stopped (SIGSTOP inside the sandbox), the
  workdir is snapshotted *inside the sandbox* into a shadow repository with its own GIT_DIR
  (``git add -A && git write-tree``), the new objects come back as an incremental git bundle
  and are fetched into the run's local shadow repository, and the agent is continued. So the
  local store holds every flushed event and every snapshot taken so far: a preempted or killed
  sandbox loses nothing that was streamed back (the run then ends ``failed`` with the reason).
* Trees are git trees of the same bytes, so a tree id taken in the sandbox equals the one a
  local snapshot of the same files gives. Differences from local snapshots: a nested repository
  is recorded by git as a gitlink (locally: its files), and lines arrive with network latency,
  so the freeze happens slightly later than locally.
"""

from __future__ import annotations

import io
import os
import queue
import shlex
import shutil
import signal
import subprocess
import tarfile
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from agtrace.eventlog import Excluded, PartEnded, SnapshotTaken, Store
from agtrace.eventlog.gitstore import GitStore

from .errors import SandboxError
from .recorder import PartDone, Recorder
from .runner import RunSummary, _adapter, _store_line, model_from_argv, run_warnings
from .snapshot import SnapshotPolicy, write_next_bundle
from .status import derive_status

MODAL_TESTED_VERSION = "1.6.4"
DEFAULT_PACKAGES = ("agtrace",)
SHADOW = "shadow.git"


# -- the surface ---------------------------------------------------------------------------------


class SandboxProcess(Protocol):
    """A command running in a sandbox."""

    def lines(self) -> Iterator[tuple[str, str, int]]:
        """``(stream, line, arrival ns)`` of stdout and stderr, interleaved in arrival order, each
        line without its newline; ends when both streams are closed."""
        ...

    def wait(self) -> int:
        ...

    def poll(self) -> int | None:
        ...


class SandboxAPI(Protocol):
    """One live sandbox: a filesystem with ``workdir`` and a private ``scratch`` directory."""

    workdir: str
    scratch: str

    def exec(self, argv: Sequence[str], *, workdir: str | None = None, env: dict[str, str] | None = None,
             timeout: float | None = None) -> SandboxProcess:
        ...

    def read_file(self, path: str) -> bytes:
        ...

    def write_file(self, path: str, data: bytes) -> None:
        ...

    def describe(self) -> dict[str, str]:
        ...

    def terminate(self) -> None:
        ...


def run_checked(api: SandboxAPI, script: str, env: dict[str, str] | None = None, what: str = "") -> str:
    """Run ``bash -c script`` in the sandbox; its stdout, or :class:`SandboxError` with stderr."""
    proc = api.exec(["bash", "-c", script], env=env)
    out, err = [], []
    for stream, line, _ts in proc.lines():
        (out if stream == "stdout" else err).append(line)
    code = proc.wait()
    if code != 0:
        raise SandboxError(f"{what or 'a sandbox command'} failed with exit code {code}: {' | '.join(err)[-800:]}")
    return "\n".join(out)


def upload_tree(api: SandboxAPI, local_dir: str | os.PathLike, remote_dir: str) -> None:
    """Copy a local directory (with its ``.git``) into the sandbox as one tar file."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(str(local_dir), arcname=".")
    tmp = f"{api.scratch}/upload-{time.time_ns()}.tar.gz"
    api.write_file(tmp, buf.getvalue())
    run_checked(api, f"mkdir -p {shlex.quote(remote_dir)} && tar -xzf {tmp} -C {shlex.quote(remote_dir)} && rm {tmp}",
                what=f"unpacking {local_dir} into the sandbox")


# -- the in-memory (local) implementation ----------------------------------------------------------


class _LocalProcess:
    def __init__(self, popen: subprocess.Popen, timeout: float | None):
        self.popen = popen
        self._q: queue.Queue = queue.Queue()
        for pipe, name in ((popen.stdout, "stdout"), (popen.stderr, "stderr")):
            threading.Thread(target=self._pump, args=(pipe, name), daemon=True).start()
        if timeout is not None:
            threading.Timer(timeout, self._kill).start()

    def _pump(self, pipe, name: str) -> None:
        try:
            for raw in iter(pipe.readline, b""):
                self._q.put((name, raw.decode("utf-8", errors="replace").rstrip("\r\n"), time.time_ns()))
        finally:
            self._q.put((name, None, 0))

    def _kill(self) -> None:
        if self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def lines(self) -> Iterator[tuple[str, str, int]]:
        open_streams = 2
        while open_streams:
            name, line, ts = self._q.get()
            if line is None:
                open_streams -= 1
            else:
                yield name, line, ts

    def wait(self) -> int:
        code = self.popen.wait()
        return 128 - code if code < 0 else code  # like a container: 128 + signal

    def poll(self) -> int | None:
        code = self.popen.poll()
        return None if code is None else (128 - code if code < 0 else code)


class InMemorySandboxAPI:
    """A sandbox on this machine: commands run as local subprocesses (each in its own session)
    inside a private temporary directory, which :meth:`terminate` deletes. A real implementation
    of :class:`SandboxAPI` for tests and for running the sandbox path without Modal."""

    def __init__(self, root: str | os.PathLike | None = None, *, env: dict[str, str] | None = None):
        self.root = Path(root or tempfile.mkdtemp(prefix="agtrace-sandbox-"))
        self.workdir = str(self.root / "work")
        self.scratch = str(self.root / "agtrace")
        os.makedirs(self.workdir, exist_ok=True)
        os.makedirs(self.scratch, exist_ok=True)
        self.env = dict(os.environ if env is None else env)
        # every process started here carries this mark, so terminate() finds them all, even
        # those that left our sessions (setsid) — as a container's teardown would
        self._mark = f"AGTRACE_SANDBOX_ID={uuid.uuid4().hex}"
        self.env["AGTRACE_SANDBOX_ID"] = self._mark.split("=", 1)[1]
        self.terminated = False
        self._procs: list[subprocess.Popen] = []

    def exec(self, argv, *, workdir=None, env=None, timeout=None) -> _LocalProcess:
        if self.terminated:
            raise SandboxError("the sandbox was terminated; create a new one")
        popen = subprocess.Popen(list(argv), cwd=workdir or self.workdir, env={**self.env, **(env or {})},
                                 stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 start_new_session=True)
        self._procs.append(popen)
        return _LocalProcess(popen, timeout)

    def read_file(self, path: str) -> bytes:
        return Path(path).read_bytes()

    def write_file(self, path: str, data: bytes) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_bytes(data)

    def describe(self) -> dict[str, str]:
        return {"sandbox": "in-memory"}

    def terminate(self) -> None:
        """Kill every process still running (like a container going away), delete the files."""
        self.terminated = True
        for popen in self._procs:
            if popen.poll() is None:
                try:
                    os.killpg(popen.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for pid in self._marked_pids():
            try:
                os.kill(pid, signal.SIGKILL)  # also kills stopped processes (no SIGCONT needed)
            except (ProcessLookupError, PermissionError):
                pass
        shutil.rmtree(self.root, ignore_errors=True)

    def _marked_pids(self) -> list[int]:
        mark = self._mark.encode() + b"\0"
        pids = []
        for entry in os.listdir("/proc"):
            if entry.isdigit() and int(entry) != os.getpid():
                try:
                    with open(f"/proc/{entry}/environ", "rb") as fh:
                        if mark in fh.read() + b"\0":
                            pids.append(int(entry))
                except OSError:
                    continue
        return pids


# -- the Modal implementation --------------------------------------------------------------------


class _ModalProcess:
    def __init__(self, proc):
        self.proc = proc

    def lines(self) -> Iterator[tuple[str, str, int]]:
        q: queue.Queue = queue.Queue()

        def pump(reader, name: str) -> None:
            try:
                for line in reader:
                    q.put((name, line.rstrip("\r\n"), time.time_ns()))
            finally:
                q.put((name, None, 0))

        for reader, name in ((self.proc.stdout, "stdout"), (self.proc.stderr, "stderr")):
            threading.Thread(target=pump, args=(reader, name), daemon=True).start()
        open_streams = 2
        while open_streams:
            name, line, ts = q.get()
            if line is None:
                open_streams -= 1
            else:
                yield name, line, ts

    def wait(self) -> int:
        return self.proc.wait()

    def poll(self) -> int | None:
        return self.proc.poll()


class ModalSandboxAPI:
    """A Modal sandbox. Needs a Modal token (``modal token new`` or MODAL_TOKEN_ID/SECRET)."""

    def __init__(self, sandbox, *, image_label: str = "", workdir: str = "/root/work",
                 scratch: str = "/tmp/agtrace"):
        self.sb = sandbox
        self.workdir = workdir
        self.scratch = scratch
        self.image_label = image_label

    @classmethod
    def create(cls, *, app_name: str = "agtrace", image: str | None = None, packages: Sequence[str] = DEFAULT_PACKAGES,
               python_version: str = "3.11", timeout: int = 3600, workdir: str = "/root/work") -> ModalSandboxAPI:
        """Start a sandbox: ``image`` is a registry image (``python:3.11-slim``...) or None for
        Modal's Debian slim; git and ``packages`` (pip) are installed on top."""
        try:
            import modal
        except ImportError:
            raise SandboxError("the modal backend needs the modal package: pip install 'modal>=1.5'") from None
        try:
            app = modal.App.lookup(app_name, create_if_missing=True)
            base = modal.Image.from_registry(image) if image else modal.Image.debian_slim(python_version=python_version)
            img = base.apt_install("git")
            if packages:
                img = img.pip_install(*packages)
            sb = modal.Sandbox.create("sleep", "infinity", app=app, image=img, timeout=timeout, workdir=workdir)
            api = cls(sb, image_label=image or f"debian_slim-{python_version}", workdir=workdir)
            run_checked(api, f"mkdir -p {workdir} {api.scratch}", what="preparing the sandbox")
            return api
        except modal.exception.AuthError as exc:
            raise SandboxError(f"Modal rejected the credentials ({exc}); run `modal token new`") from None
        except modal.exception.Error as exc:
            raise SandboxError(f"could not start a Modal sandbox: {exc}") from None

    def exec(self, argv, *, workdir=None, env=None, timeout=None) -> _ModalProcess:
        proc = self.sb.exec(*argv, workdir=workdir or self.workdir, env=env,
                            timeout=int(timeout) if timeout else None, text=True, bufsize=1)
        return _ModalProcess(proc)

    def read_file(self, path: str) -> bytes:
        return self.sb.filesystem.read_bytes(path)

    def write_file(self, path: str, data: bytes) -> None:
        self.sb.filesystem.write_bytes(data, path)

    def describe(self) -> dict[str, str]:
        import modal

        return {"sandbox": "modal", "image": self.image_label, "modal": modal.__version__}

    def terminate(self) -> None:
        self.sb.terminate()


# -- snapshots inside the sandbox ------------------------------------------------------------------

_INIT = r"""
set -e
env -u GIT_WORK_TREE -u GIT_DIR git init -q --bare "$GIT_DIR"
git config core.bare false
for kv in core.autocrlf=false core.safecrlf=false core.filemode=true core.symlinks=true \
          core.ignorecase=false core.precomposeunicode=false core.logAllRefUpdates=false gc.auto=0; do
  git config "${kv%%=*}" "${kv#*=}"
done
mkdir -p "$GIT_DIR/info" "$AGT_SCRATCH/bundles"
printf '* -text !eol -ident -filter !working-tree-encoding\n' > "$GIT_DIR/info/attributes"
git config core.attributesFile "$GIT_DIR/info/attributes"
printf '%s\n' "$AGT_EXCLUDES" > "$GIT_DIR/info/exclude"
if [ -f "$GIT_WORK_TREE/.git/info/exclude" ]; then cat "$GIT_WORK_TREE/.git/info/exclude" >> "$GIT_DIR/info/exclude"; fi
"""

_TAKE = r"""
set -e
cd "$GIT_WORK_TREE"
big=$(find . -path ./.git -prune -o -type f -size +"$AGT_MAX_BYTES"c -printf '%s %P\n' 2>/dev/null || true)
: > "$AGT_SCRATCH/size-exclude"
if [ -n "$big" ]; then printf '%s\n' "$big" | cut -d' ' -f2- | sed 's|^|/|' > "$AGT_SCRATCH/size-exclude"; fi
git -c core.excludesFile="$AGT_SCRATCH/size-exclude" add -A .
if [ -n "$big" ]; then printf '%s\n' "$big" | cut -d' ' -f2- | while IFS= read -r p; do
  git rm -q --cached --ignore-unmatch -- "$p" >/dev/null; done; fi
tree=$(git write-tree)
parent=$(git rev-parse -q --verify refs/agtrace/snapshots || true)
if [ -n "$parent" ] && [ "$(git rev-parse "$parent^{tree}")" = "$tree" ]; then
  echo "same $tree $parent"
else
  commit=$(git commit-tree "$tree" ${parent:+-p "$parent"} -m "$AGT_LABEL")
  git update-ref refs/agtrace/snapshots "$commit"
  git bundle create -q "$AGT_SCRATCH/bundles/$AGT_N.bundle" refs/agtrace/snapshots ${parent:+"^$parent"}
  echo "new $tree $commit"
fi
if [ -n "$big" ]; then printf '%s\n' "$big" | sed 's/^/big /'; fi
"""


class RemoteSnapshotter:
    """Takes snapshots inside the sandbox and brings them into the run's local shadow repository.

    Duck-types :class:`~agtrace.capture.snapshot.Snapshotter` (``take``, ``seal``, ``tree_id``),
    so the :class:`Recorder` stores ``snapshot_taken`` events exactly as for local capture.
    """

    def __init__(self, api: SandboxAPI, run_dir: Path, policy: SnapshotPolicy | None = None):
        self.api = api
        self.workdir = api.workdir  # a path inside the sandbox (agents report paths under it)
        self.policy = policy or SnapshotPolicy()
        self.run_dir = Path(run_dir)
        self.git = GitStore.init(self.run_dir / "repo.git")
        self.tree_id: str | None = None
        self.commit_id: str | None = None
        self._bundled: str | None = None
        self._n = 0
        self.env = {
            "GIT_DIR": f"{api.scratch}/{SHADOW}", "GIT_WORK_TREE": api.workdir,
            "GIT_INDEX_FILE": f"{api.scratch}/{SHADOW}.index", "AGT_SCRATCH": api.scratch,
            "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_TERMINAL_PROMPT": "0",
            "GIT_AUTHOR_NAME": "agtrace", "GIT_AUTHOR_EMAIL": "agtrace@localhost",
            "GIT_COMMITTER_NAME": "agtrace", "GIT_COMMITTER_EMAIL": "agtrace@localhost",
            "AGT_EXCLUDES": "\n".join(self.policy.exclude), "AGT_MAX_BYTES": str(self.policy.max_file_bytes),
        }
        run_checked(api, _INIT, self.env, "creating the shadow repository in the sandbox")

    def take(self, label: str, *, part_ended_ts: int | None = None, final: bool = False) -> SnapshotTaken:
        started = time.perf_counter()
        self._n += 1
        out = run_checked(self.api, _TAKE, {**self.env, "AGT_LABEL": label, "AGT_N": str(self._n)},
                          f"snapshot {label!r} in the sandbox")
        lines = out.splitlines()
        state, tree, _remote_commit = lines[0].split()
        excluded = []
        for line in lines[1:]:
            _, size, path = line.split(" ", 2)
            excluded.append(Excluded(path=path, reason="size", size=int(size)))
        if state == "new":
            bundle = f"{self.api.scratch}/bundles/{self._n}.bundle"
            with tempfile.TemporaryDirectory(prefix="agtrace-bundle-") as tmp:
                local = Path(tmp) / "snap.bundle"
                local.write_bytes(self.api.read_file(bundle))
                self.git.import_bundle(local)
        previous = self.tree_id
        if tree != previous:
            self.commit_id = self.git.commit_tree(tree, self.commit_id, label)
        changes = self.git.diff(previous, tree) if tree != previous else []
        self.tree_id = tree
        by = {"added": [], "modified": [], "deleted": []}
        for c in changes:
            by[c.status].append(c.path)
        return SnapshotTaken(
            tree_id=tree, commit_id=self.commit_id or "", added=by["added"], modified=by["modified"],
            deleted=by["deleted"], lines_added=sum(c.lines_added for c in changes),
            lines_removed=sum(c.lines_removed for c in changes), excluded=excluded,
            policy={**self.policy.as_dict(), "sandbox": True}, part_ended_ts=part_ended_ts,
            duration_ms=round((time.perf_counter() - started) * 1000, 3), final=final,
        )

    def seal(self) -> Path | None:
        """Same as :meth:`Snapshotter.seal`: the next bundle of the local shadow repository."""
        path = write_next_bundle(self.git, self.run_dir, self.commit_id, self._bundled)
        if path is not None:
            self._bundled = self.commit_id
        return path


# -- capture -------------------------------------------------------------------------------------


class RemoteAgentRun:
    """An agent command running in a sandbox, its process group frozen while snapshots are taken."""

    def __init__(self, api: SandboxAPI, command: Sequence[str], *, env: dict[str, str] | None = None,
                 timeout: float | None = None):
        self.api = api
        self.pgid_file = f"{api.scratch}/agent.pgid"
        wrapper = f'echo $$ > {shlex.quote(self.pgid_file)}; exec "$@"'
        self.proc = api.exec(["setsid", "bash", "-c", wrapper, "agtrace-agent", *command], env=env, timeout=timeout)

    def _signal(self, sig: str) -> None:
        p = shlex.quote(self.pgid_file)
        proc = self.api.exec(["bash", "-c", f"[ -s {p} ] && kill -{sig} -- -$(cat {p}) 2>/dev/null || true"])
        for _ in proc.lines():
            pass
        proc.wait()

    def freeze(self) -> None:
        self._signal("STOP")

    def thaw(self) -> None:
        self._signal("CONT")

    def stop(self) -> None:
        self._signal("TERM")


def run_agent_in_sandbox(
    store: Store,
    api: SandboxAPI,
    command: list[str],
    *,
    agent: str = "raw",
    agent_name: str = "",
    agent_version: str = "",
    task: str = "",
    task_id: str = "",
    model: str = "",
    max_parts: int | None = None,
    timeout: float | None = None,
    durability: str = "normal",
    env: dict[str, str] | None = None,
    tags: dict[str, str] | None = None,
    parent_run: str = "",
    policy: SnapshotPolicy | None = None,
    adapter_options: dict | None = None,
    on_start: Callable[[str], None] | None = None,
    on_part: Callable[[PartDone], None] | None = None,
) -> RunSummary:
    """Run ``command`` in ``api.workdir`` inside the sandbox and capture it as a new local run.

    Same arguments and result as :func:`agtrace.capture.runner.run_agent` (the workdir is the
    sandbox's). See the module docstring for the contracts. The sandbox is not terminated.
    """
    adapter = _adapter(agent, adapter_options or {})
    model = model or model_from_argv(command)
    base = run_checked(api, "git rev-parse --verify -q HEAD || true", what="reading the workdir's HEAD").strip()
    recorder = Recorder(
        store, workdir=None, agent=agent_name or agent, agent_version=agent_version, model=model, task=task,
        task_id=task_id, base_commit=base, command=command, durability=durability, tags=tags,
        parent_run=parent_run, on_part=on_part,
        config={"max_parts": max_parts, "timeout": timeout, "adapter": adapter.name, "backend": "sandbox",
                "sandbox": api.describe(), "sandbox_workdir": api.workdir},
    )
    # TODO(lead): a `snapshotter=` argument on Recorder would replace these two lines.
    recorder.snapshots = RemoteSnapshotter(api, store.run_dir(recorder.run_id), policy)
    recorder.emit(recorder.snapshots.take("base"))
    if on_start:
        on_start(recorder.run_id)
    started = time.monotonic()
    stop_reason, failure = "", ""
    exit_code: int | None = None
    fetched = recorder.snapshots

    def sandbox_lost(exc: BaseException) -> None:
        """Snapshots are no longer possible: parts end without a tree, the run will end failed."""
        nonlocal failure
        failure = failure or f"the sandbox was lost: {type(exc).__name__}: {exc}"
        recorder.snapshots = None

    def emit_all(emits) -> None:
        for emit in emits:
            try:
                recorder.emit(emit.event, emit.part, emit.ts)
            except Exception as exc:  # noqa: BLE001 - the snapshot failed before anything was appended
                if recorder.snapshots is None:
                    raise
                sandbox_lost(exc)
                recorder.emit(emit.event, emit.part, emit.ts)

    try:
        remote = RemoteAgentRun(api, command, env=env)
        line_no = {"stdout": 0, "stderr": 0}
        for stream, text, ts in remote.proc.lines():
            line_no[stream] += 1
            emits = adapter.feed(text, stream)
            ends = [i for i, e in enumerate(emits) if isinstance(e.event, PartEnded)]
            frozen = bool(ends) and recorder.snapshots is not None
            if frozen:
                remote.freeze()
            try:
                _store_line(recorder, adapter, stream, text, ts, line_no[stream], emits)
            except Exception as exc:  # noqa: BLE001
                if not ends or recorder.snapshots is None:
                    raise
                sandbox_lost(exc)  # the part's snapshot failed: store the part's end without it
                emit_all(emits[ends[0]:])
            finally:
                if frozen:  # thaw even when the snapshot failed (sandbox_lost clears snapshots)
                    remote.thaw()
            if not stop_reason:
                if timeout is not None and time.monotonic() - started > timeout:
                    stop_reason = "timeout"
                elif max_parts is not None and recorder.parts >= max_parts:
                    stop_reason = "limit"
                if stop_reason:
                    remote.stop()
        exit_code = remote.proc.wait()
    except KeyboardInterrupt:
        stop_reason = "interrupted"
    except Exception as exc:  # noqa: BLE001 - the sandbox went away: keep what was streamed back
        sandbox_lost(exc)
    emit_all(adapter.finish())
    sig = exit_code - 128 if exit_code is not None and exit_code > 128 else None
    if not failure:
        status, reason = derive_status(
            exit_code=-sig if sig else (exit_code if exit_code is not None else -signal.SIGINT),
            stop_reason=stop_reason, state=adapter.state, parts=recorder.parts, max_parts=max_parts,
            timeout=timeout, structured=adapter.name != "raw",
        )
        try:
            ended = recorder.end(status, reason, exit_code=exit_code, signal=sig)
        except Exception as exc:  # noqa: BLE001 - the final snapshot failed: nothing was appended
            sandbox_lost(exc)
    if failure:
        status, reason = "failed", failure
        ended = recorder.end(status, reason, exit_code=exit_code, signal=sig)
        fetched.seal()  # the snapshots fetched before the loss
    bundles = sorted((store.run_dir(recorder.run_id) / "bundles").glob("*.bundle"))
    return RunSummary(
        run_id=recorder.run_id, status=status, reason=reason, exit_code=exit_code, parts=recorder.parts,
        tokens=recorder.tokens, duration_s=round(time.monotonic() - started, 3), redactions=ended.redactions,
        agent=agent_name or agent, model=adapter.state.model or model,
        agent_version=adapter.state.agent_version or agent_version, bundle=str(bundles[-1]) if bundles else None,
        warnings=run_warnings(recorder, adapter),
    )


# -- scoring -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScorerResult:
    """Same fields as ``agtrace.replay.sandbox.SandboxResult`` (capture does not import replay)."""

    exit_code: int | None
    output: str
    duration_ms: float
    timed_out: bool = False
    files: dict[str, bytes] = field(default_factory=dict)


OUTPUT_KEEP_CHARS = 4 * 1024 * 1024


class ModalScorer:
    """Runs scorer commands in sandboxes; satisfies ``agtrace.replay.sandbox.Sandbox`` by shape.

    Each :meth:`run` gets a fresh sandbox from ``factory`` (default: a Modal sandbox), uploads
    the tree, runs ``bash -c CMD`` with the timeout, and terminates the sandbox, so calls from
    several threads do not share state.
    """

    def __init__(self, factory: Callable[[], SandboxAPI] | None = None, *, label: str = "modal",
                 describe: dict[str, str] | None = None):
        self.factory = factory or ModalSandboxAPI.create
        self.label = label
        self._description = describe

    def describe(self) -> dict[str, str]:
        if self._description is None:
            api = self.factory()
            try:
                self._description = {**api.describe(), "label": self.label}
            finally:
                api.terminate()
        return dict(self._description)

    def run(self, tree_dir: Path, cmd: str, timeout: float, *, files: Sequence[str] = ()) -> ScorerResult:
        api = self.factory()
        try:
            upload_tree(api, tree_dir, api.workdir)
            started = time.perf_counter()
            proc = api.exec(["bash", "-c", f"exec 2>&1; {cmd}"], timeout=timeout)
            out: list[str] = []
            for _stream, line, _ts in proc.lines():
                out.append(line)
            code = proc.wait()
            duration = (time.perf_counter() - started) * 1000
            timed_out = duration >= timeout * 1000 and code != 0
            got = {}
            if not timed_out:
                for name in files:
                    try:
                        got[name] = api.read_file(f"{api.workdir}/{name}")
                    except (OSError, Exception):  # noqa: BLE001 - an absent result file is not an error
                        continue
            text = "\n".join(out) + ("\n" if out else "")
            return ScorerResult(exit_code=None if timed_out else code, output=text[-OUTPUT_KEEP_CHARS:],
                                duration_ms=duration, timed_out=timed_out, files=got)
        finally:
            api.terminate()


__all__ = [
    "MODAL_TESTED_VERSION", "InMemorySandboxAPI", "ModalSandboxAPI", "ModalScorer", "RemoteAgentRun",
    "RemoteSnapshotter", "SandboxAPI", "SandboxError", "SandboxProcess", "ScorerResult", "run_agent_in_sandbox",
    "upload_tree",
]
