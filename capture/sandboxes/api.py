"""The sandbox surface: a small Protocol over a remote machine, and helpers built on it.

Everything that runs in a sandbox (an agent's capture, snapshots, a scorer) is written against
:class:`SandboxAPI`, which has two implementations: ``ModalSandboxAPI`` (thin, calls Modal) and
``InMemorySandboxAPI`` (local subprocesses in a private temporary directory; the contract tests
use it). Exit codes are reported as a container reports them: ``128 + N`` for a process killed
by signal N (the capture's agent port turns that into its ``-N`` convention).
"""

from __future__ import annotations

import io
import os
import shlex
import tarfile
import time
from collections.abc import Iterator, Sequence
from typing import Protocol

from .. import process
from ..errors import SandboxError


class SandboxProcess(Protocol):
    """A command running in a sandbox."""

    def lines(self) -> Iterator[tuple[str, str, int]]:
        """``(stream, line, arrival ns)`` of stdout and stderr, interleaved in arrival order, each
        line without its newline, decoded as UTF-8 with replacement; ends when both streams are
        closed."""
        ...

    def pieces(self) -> Iterator[tuple[str, str, int, bool]]:
        """Like :meth:`lines`, for the agent's output: ``(stream, text, arrival ns, continued)``,
        a line longer than :data:`~agtrace.capture.process.MAX_LINE_BYTES` in pieces (``continued``
        on each but the last: :func:`~agtrace.capture.process.read_pieces`), each decoded with
        :func:`~agtrace.capture.port.decode_verbatim` so that bytes that are not UTF-8 are kept
        (a backend that reads text, Modal, gives them as U+FFFD)."""
        ...

    def wait(self) -> int:
        ...

    def poll(self) -> int | None:
        ...

    def write_stdin(self, data: bytes) -> None:
        """Send ``data`` to the command's stdin (only for a command exec'd with ``stdin=True``)."""
        ...

    def close_stdin(self) -> None:
        """End the command's stdin (it reads EOF)."""
        ...


class SandboxAPI(Protocol):
    """One live sandbox: a filesystem with ``workdir`` and a private ``scratch`` directory."""

    workdir: str
    scratch: str

    def exec(self, argv: Sequence[str], *, workdir: str | None = None, env: dict[str, str] | None = None,
             timeout: float | None = None, stdin: bool = False) -> SandboxProcess:
        """Start ``argv``; its stdin is empty unless ``stdin`` (then fed by ``write_stdin``)."""
        ...

    def read_file(self, path: str) -> bytes:
        ...

    def write_file(self, path: str, data: bytes) -> None:
        ...

    def describe(self) -> dict[str, str]:
        ...

    def terminate(self) -> None:
        ...


def split_line(text: str) -> Iterator[tuple[str, bool]]:
    """A line a backend read whole, as the pieces :func:`~agtrace.capture.process.read_pieces`
    would have read: ``(text, continued)``."""
    cap = process.MAX_LINE_BYTES
    if len(text) * 4 <= cap or len(data := text.encode("utf-8", "surrogateescape")) <= cap:
        yield text, False
        return
    for raw, continued in process.read_pieces(io.BytesIO(data)):
        yield raw.decode("utf-8", "surrogateescape"), continued


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
