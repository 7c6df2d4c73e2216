"""The exceptions of ``agtrace.capture``: one rooted tree.

::

    CaptureError
    ├── AgentNotFound       the agent command does not exist or cannot be executed
    ├── WorkdirError        the workdir is missing or not usable for snapshots
    ├── SandboxError        a sandbox (local or Modal) cannot be created or used
    └── ImportError_        a source cannot be imported (importers/)
        └── UnknownFormat   no importer recognises the source
"""

from __future__ import annotations


class CaptureError(Exception):
    """Root of every error raised by ``agtrace.capture``."""


class AgentNotFound(CaptureError):
    """The agent command cannot be started."""


class WorkdirError(CaptureError):
    """The workdir cannot be captured."""


class SandboxError(CaptureError):
    """A sandbox cannot be created or used (no bash, no Modal token, the sandbox is gone)."""


class ImportError_(CaptureError):  # noqa: N801 - the trailing _ keeps clear of the builtin
    """A source cannot be imported; the message names the file and what to do."""


class UnknownFormat(ImportError_):
    """No importer recognises the source."""
