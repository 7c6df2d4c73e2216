"""A sandbox on this machine: the real, local implementation of :class:`SandboxAPI`.

Commands run as local subprocesses, each in its own session, inside a private temporary
directory (``work/`` is the workdir, ``agtrace/`` the scratch directory). Processes report exit
codes as a container does (``128 + N`` when killed by signal N), and :meth:`terminate` kills
every process ever started in the sandbox, also those that left its sessions, and deletes the
files, as a container going away would. It exists so that the sandbox path (capture, snapshots,
scoring) runs, and is tested, without Modal.
"""

from __future__ import annotations

import os
import queue
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from ..errors import SandboxError
from ..port import decode_verbatim
from ..process import read_pieces


class _LocalProcess:
    def __init__(self, popen: subprocess.Popen, timeout: float | None):
        self.popen = popen
        self._q: queue.Queue = queue.Queue()
        for pipe, name in ((popen.stdout, "stdout"), (popen.stderr, "stderr")):
            threading.Thread(target=self._pump, args=(pipe, name), daemon=True).start()
        if timeout is not None:
            timer = threading.Timer(timeout, self._kill)
            timer.daemon = True  # a command that ended must not keep this process alive
            timer.start()

    def _pump(self, pipe, name: str) -> None:
        try:
            for raw, continued in read_pieces(pipe):
                self._q.put((name, raw, time.time_ns(), continued))
        finally:
            self._q.put((name, None, 0, False))

    def _kill(self) -> None:
        if self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def _raw_pieces(self) -> Iterator[tuple[str, bytes, int, bool]]:
        open_streams = 2
        while open_streams:
            name, raw, ts, continued = self._q.get()
            if raw is None:
                open_streams -= 1
            else:
                yield name, raw, ts, continued

    def pieces(self) -> Iterator[tuple[str, str, int, bool]]:
        for name, raw, ts, continued in self._raw_pieces():
            yield name, decode_verbatim(raw), ts, continued

    def lines(self) -> Iterator[tuple[str, str, int]]:
        held: dict[str, list[bytes]] = {}
        for name, raw, ts, continued in self._raw_pieces():
            held.setdefault(name, []).append(raw)
            if not continued:
                yield name, b"".join(held.pop(name)).decode("utf-8", errors="replace"), ts

    def wait(self) -> int:
        code = self.popen.wait()
        return 128 - code if code < 0 else code  # like a container: 128 + signal

    def poll(self) -> int | None:
        code = self.popen.poll()
        return None if code is None else (128 - code if code < 0 else code)

    def write_stdin(self, data: bytes) -> None:
        self.popen.stdin.write(data)
        self.popen.stdin.flush()

    def close_stdin(self) -> None:
        self.popen.stdin.close()


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

    def exec(self, argv, *, workdir=None, env=None, timeout=None, stdin=False) -> _LocalProcess:
        if self.terminated:
            raise SandboxError("the sandbox was terminated; create a new one")
        popen = subprocess.Popen(list(argv), cwd=workdir or self.workdir, env={**self.env, **(env or {})},
                                 stdin=subprocess.PIPE if stdin else subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
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
