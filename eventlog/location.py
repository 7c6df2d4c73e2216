"""Where a store may be: the checks a store's root directory passes before anything is made in it.

Contracts: with ``create=False`` nothing is created and a path that is no store (missing, a
file, a directory with neither ``runs/`` nor ``catalog.db``) raises :class:`StoreNotFound`;
with ``claim_directory=False`` (the CLI) an existing directory that holds other files never
becomes a store, so a store is never mixed into someone's files. An empty directory (``mktemp
-d``, a fresh volume with only ``lost+found``) may become one. :func:`is_writable` tells a
store that can only be read (a read-only mount).
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import ReadOnlyStore, StoreNotFound


def is_store(root: Path) -> bool:
    """Whether ``root`` holds a store (its ``runs/`` or its ``catalog.db``)."""
    return (root / "runs").is_dir() or os.path.lexists(root / "catalog.db")


def prepare_root(root: Path, *, create: bool, claim_directory: bool) -> None:
    """Check ``root`` as a store's directory, creating it when missing and ``create``."""
    if not root.exists():
        if not create:
            raise StoreNotFound(f"no store at {root} (nothing was created); check --store or AGTRACE_HOME, "
                                "or make one by capturing a run (`agtrace demo`, `agtrace run`, `agtrace new`)")
        root.mkdir(parents=True, exist_ok=True)  # another process (a second pull) may make it meanwhile
    elif not root.is_dir():
        raise StoreNotFound(f"{root} is not a directory, so not a store; pass --store DIR pointing at a store")
    elif not create and not is_store(root):
        raise StoreNotFound(f"{root} is not an agtrace store (it has neither runs/ nor catalog.db; "
                            "nothing was created); check --store or AGTRACE_HOME")
    elif not claim_directory and not is_store(root):
        _refuse_foreign(root)


def _refuse_foreign(root: Path) -> None:
    entries = sorted(e for e in os.listdir(root) if e != "lost+found")
    if entries:
        shown = ", ".join(entries[:3]) + (f" and {len(entries) - 3} more" if len(entries) > 3 else "")
        raise StoreNotFound(f"{root} is not an agtrace store and is not empty (it holds {shown}); nothing was "
                            "created in it; name a new or empty directory, or an existing store")


def is_writable(root: Path) -> bool:
    """Whether a catalog can be written in ``root``: the directory (where SQLite makes the
    ``-wal`` and ``-shm``) and ``catalog.db`` if there is one. ``os.access`` answers for the
    filesystem too: a read-only mount is not writable, even for root."""
    catalog = root / "catalog.db"
    return os.access(root, os.W_OK) and (not catalog.exists() or os.access(catalog, os.W_OK))


def read_only_error(root: Path, what: str) -> ReadOnlyStore:
    """The error of a command that would ``what`` (``"write run X"``) in the read-only store at ``root``."""
    return ReadOnlyStore(f"the store {root} is read-only (a read-only mount or directory), so agtrace cannot "
                         f"{what}; commands that only read it work. Copy it to a writable place (`cp -a {root} "
                         "DIR`) and pass --store DIR to change it")
