"""The exceptions of ``agtrace.replay``: one rooted tree.

::

    ReplayError
    ├── PartNotFound        the run has no such part (or no snapshot for it)
    ├── OutputNotEmpty      the output directory has files and --force was not given
    ├── RescoreError        re-scoring could not proceed (no such parts, the sandbox failed)
    ├── ExportError         the export cannot be made (bad format or kind, unusable output)
    ├── CompareError        the runs cannot be compared as asked
    └── FileNotInTree       the tree at that part has no file at that path
"""

from __future__ import annotations


class ReplayError(Exception):
    """Root of every error raised by ``agtrace.replay``."""


class PartNotFound(ReplayError):
    """The run has no such part, or the part has no tree."""


class OutputNotEmpty(ReplayError):
    """Refusing to write into a non-empty directory."""


class RescoreError(ReplayError):
    """Re-scoring could not proceed: no such parts, or the sandbox failed."""


class ExportError(ReplayError):
    """The export cannot be made (bad format or kind, unusable output); the message says why."""


class CompareError(ReplayError):
    """The runs cannot be compared as asked (for example, fewer than one run)."""


class FileNotInTree(ReplayError):
    """The run's tree at that part has no file at that path."""
