"""The exceptions of ``agtrace.replay``: one rooted tree.

::

    ReplayError
    ├── PartNotFound        the run has no such part (or no snapshot for it)
    └── OutputNotEmpty      the output directory has files and --force was not given
"""

from __future__ import annotations


class ReplayError(Exception):
    """Root of every error raised by ``agtrace.replay``."""


class PartNotFound(ReplayError):
    """The run has no such part, or the part has no tree."""


class OutputNotEmpty(ReplayError):
    """Refusing to write into a non-empty directory."""
