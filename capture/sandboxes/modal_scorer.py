"""Scorers in sandboxes: :class:`ModalScorer` runs each scorer command in a fresh sandbox.

Satisfies ``agtrace.replay.sandbox.Sandbox`` by shape (capture does not import replay) and
returns :class:`agtrace.eventlog.CommandResult`, like the local scorer sandbox.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

from agtrace.eventlog import CommandResult

from .api import SandboxAPI, upload_tree
from .modal_api import ModalSandboxAPI

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

    def run(self, tree_dir: Path, cmd: str, timeout: float, *, files: Sequence[str] = ()) -> CommandResult:
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
            return CommandResult(exit_code=None if timed_out else code, output=text[-OUTPUT_KEEP_CHARS:],
                                 duration_ms=duration, timed_out=timed_out, files=got)
        finally:
            api.terminate()
