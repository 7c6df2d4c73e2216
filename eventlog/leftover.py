"""Temp files and directories that name their owner, so a later process can clean up after a
killed one.

A name made by :func:`tag` holds the host and pid of the process that made it
(``<host>-<pid>``). :func:`is_stale` says whether such a name's owner is gone: a process of this
host that no longer exists, or, for another host (a shared remote directory), a file untouched
for :data:`FOREIGN_AFTER_S`. Names without a tag are never stale (someone else's files).

:func:`temp_beside` names the temp sibling an output (``export -o``, ``report -o``) is built in
before its rename into place, tagged, after removing those of the same output whose owner died.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path

FOREIGN_AFTER_S = 24 * 3600
"""A temp file of another host is left alone until it is this old (its owner may be alive)."""

_TAG = re.compile(r"@([A-Za-z0-9._-]+)-([0-9]+)@")


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", os.uname().nodename) or "host"


def tag() -> str:
    """``@<host>-<pid>@``: what to put in a temp name so that :func:`is_stale` can judge it."""
    return f"@{_host()}-{os.getpid()}@"


def is_tagged(name: str) -> bool:
    """Whether ``name`` holds a :func:`tag` (so :func:`is_stale` can judge its owner)."""
    return _TAG.search(name) is not None


def is_stale(name: str, mtime: float) -> bool:
    """Whether the owner of a temp file or directory named ``name`` (see :func:`tag`) is gone."""
    m = _TAG.search(name)
    if m is None:
        return False
    if m.group(1) != _host():
        return time.time() - mtime > FOREIGN_AFTER_S
    pid = int(m.group(2))
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def remove_stale(directory: str | os.PathLike, prefix: str = "") -> None:
    """Remove the files and directories in ``directory`` whose names start with ``prefix`` and
    whose owner is gone (:func:`is_stale`); a live owner's, and untagged names, are kept."""
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return
    for entry in entries:
        if not entry.name.startswith(prefix):
            continue
        try:
            if not is_stale(entry.name, entry.stat(follow_symlinks=False).st_mtime):
                continue
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                os.unlink(entry.path)
        except FileNotFoundError:
            pass  # another process cleaned it meanwhile


def temp_beside(dest: str | os.PathLike, *, directory: bool = False) -> Path:
    """A temp path beside ``dest`` to build it in before renaming it into place, unique to this
    process and call: ``.<name>.@<host>-<pid>@<random>`` (``.tmp`` appended for a file). A
    directory is made (mode 0700); a file is only named, for the caller to open. First the temp
    siblings of ``dest`` that a killed process left (its owner gone, see :func:`is_stale`) are
    removed; a live process's, and untagged names, are kept."""
    import secrets
    import tempfile

    dest = Path(dest)
    prefix = f".{dest.name}.@"
    remove_stale(dest.parent, prefix)
    if directory:
        return Path(tempfile.mkdtemp(prefix=f".{dest.name}.{tag()}", dir=dest.parent))
    return dest.with_name(f".{dest.name}.{tag()}{secrets.token_hex(4)}.tmp")
