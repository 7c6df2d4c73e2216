"""A Modal sandbox behind :class:`~agtrace.capture.sandboxes.api.SandboxAPI`.

The only module of agtrace that imports ``modal`` (lazily, inside :meth:`ModalSandboxAPI.create`
and :meth:`ModalSandboxAPI.describe`). Tested with modal 1.6.4. The Modal surface used, all of it::

    modal.App.lookup(name, create_if_missing=True)
    modal.Image.debian_slim(python_version=…).apt_install("git").pip_install(*packages)
    modal.Sandbox.create(app=, image=, timeout=, workdir=)       # a sleeping container
    sb.exec(*argv, workdir=, env=, timeout=, text=True, bufsize=1)  # -> ContainerProcess
    proc.stdout / proc.stderr                                     # iterated line by line
    proc.wait() -> int, proc.poll() -> int | None
    proc.stdin.write(data), proc.stdin.write_eof(), proc.stdin.drain()
    sb.filesystem.read_bytes(path), sb.filesystem.write_bytes(data, path)   # (sb.open() is gone in 1.6)
    sb.terminate()
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator, Sequence

from ..errors import SandboxError
from ..process import without_line_end
from .api import run_checked, split_line

MODAL_TESTED_VERSION = "1.6.4"
DEFAULT_PACKAGES = ("agtrace",)


class _ModalProcess:
    def __init__(self, proc):
        self.proc = proc

    def lines(self) -> Iterator[tuple[str, str, int]]:
        q: queue.Queue = queue.Queue()

        def pump(reader, name: str) -> None:
            try:
                for line in reader:
                    q.put((name, without_line_end(line), time.time_ns()))
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

    def pieces(self) -> Iterator[tuple[str, str, int, bool]]:
        # Modal reads each line whole (text mode); it is stored in the same pieces as elsewhere
        for name, line, ts in self.lines():
            for piece, continued in split_line(line):
                yield name, piece, ts, continued

    def wait(self) -> int:
        return self.proc.wait()

    def poll(self) -> int | None:
        return self.proc.poll()

    def write_stdin(self, data: bytes) -> None:
        self.proc.stdin.write(data)
        self.proc.stdin.drain()

    def close_stdin(self) -> None:
        self.proc.stdin.write_eof()
        self.proc.stdin.drain()


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

    def exec(self, argv, *, workdir=None, env=None, timeout=None, stdin=False) -> _ModalProcess:
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
