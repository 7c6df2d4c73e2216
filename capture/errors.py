"""The exceptions of ``agtrace.capture``: one rooted tree.

::

    CaptureError
    ├── AgentNotFound       the agent command does not exist or cannot be executed
    └── WorkdirError        the workdir is missing or not usable for snapshots
"""

from __future__ import annotations


class CaptureError(Exception):
    """Root of every error raised by ``agtrace.capture``."""


class AgentNotFound(CaptureError):
    """The agent command cannot be started."""


class WorkdirError(CaptureError):
    """The workdir cannot be captured."""
