"""The exceptions of ``agtrace.replay``: one rooted tree.

::

    ReplayError
    ├── PartNotFound        the run has no such part (or no snapshot for it)
    │   └── NoSuchPart      no part of that name: a bad input (the CLI exits 2)
    ├── OutputNotEmpty      the output directory has files and --force was not given
    ├── RescoreError        re-scoring could not proceed (a named part has no tree, the sandbox failed)
    ├── ExportError         the export cannot be made (bad format or kind, unusable output)
    ├── CompareError        the runs cannot be compared as asked
    └── FileNotInTree       the tree at that part has no file at that path
"""

from __future__ import annotations


class ReplayError(Exception):
    """Root of every error raised by ``agtrace.replay``."""


class PartNotFound(ReplayError):
    """The run has no such part, or the part has no tree."""


class NoSuchPart(PartNotFound):
    """The run has no part of that name (a number past its last part, a selection that cannot
    be read, no part named at all): bad input, as an unknown run id is, so the CLI exits 2 here
    as it does for the same words from ``log``, ``metrics`` or ``note``
    (:class:`~agtrace.eventlog.BadPartSelection`). A part that exists but has no tree stays a
    plain :class:`PartNotFound` (exit 1: the run lacks what was asked of it)."""


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
