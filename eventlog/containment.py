"""The one path rule: a name that comes from data is checked here before any filesystem call.

Data names files in many places: blob addresses in events and in remote manifests, object keys
listed by a remote, run ids in a bucket, entry names of a git tree that replay writes. Each is
one of two shapes, and nothing else is ever joined to a directory:

* a **content address**: exactly 64 lowercase hex digits (a sha256), :func:`content_address`;
* a **relative path inside its root**: ``/``-separated components, none empty, ``.`` or ``..``,
  none holding a NUL or a backslash, not absolute (:func:`relative_parts`); where the path is
  written into a work tree, no component is ``.git`` (any case); where it is a remote key, no
  component is hidden (temp files of transfers are). The entry names of a git tree
  (``entry=True``) may hold a backslash on POSIX, where it is an ordinary name character (a
  legal file name the snapshot recorded, and still one component: nothing in it can climb);
  where the OS separates paths with a backslash (Windows) it is refused there too. :func:`inside` also refuses a path whose
  existing components under the root include a symbolic link, so nothing is read or written
  through a link planted in a remote directory or a store.

A name that breaks the rule raises :class:`~agtrace.eventlog.errors.UnsafePath` naming it and
where it came from; callers that can go on (a pull, a verify) report it and skip the object.
Normative copy in ``docs/format.md`` ("Names from data").
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

from .errors import UnsafePath

_ADDRESS = re.compile(r"[0-9a-f]{64}")

_BACKSLASH_SEPARATES = "\\" in (os.sep, os.altsep)
"""True where the OS reads a backslash in a path as a separator (Windows)."""


def is_content_address(value: object) -> bool:
    """True if ``value`` is a sha256 content address (64 lowercase hex digits)."""
    return type(value) is str and _ADDRESS.fullmatch(value) is not None


def content_address(value: object, what: str = "a blob address") -> str:
    """``value`` if it is a content address (see the module docstring), else UnsafePath."""
    if not is_content_address(value):
        raise UnsafePath(f"{what} {_show(value)} is not a content address (64 lowercase hex digits); refused")
    return value  # type: ignore[return-value]


def check_name(name: str, what: str = "a name", *, tree: bool = False, hidden: bool = True,
               entry: bool = False) -> str:
    """One path component: not empty, ``.``, ``..``; no ``/``, NUL or backslash (with ``entry``,
    a git tree's entry name, a backslash only where the OS separates paths with it); with
    ``tree`` not ``.git`` (any case); without ``hidden`` not starting with a dot."""
    if (type(name) is not str or name in ("", ".", "..") or "/" in name or "\0" in name
            or ("\\" in name and (_BACKSLASH_SEPARATES or not entry))
            or (tree and name.lower() == ".git") or (not hidden and name.startswith("."))):
        raise UnsafePath(f"{what} has an unsafe component {_show(name)}; refused (names from data must "
                         "stay inside their directory)")
    return name


def relative_parts(path: str, what: str = "a path", *, tree: bool = False, hidden: bool = True) -> list[str]:
    """The components of a relative path inside its root (see the module docstring)."""
    if type(path) is not str or not path or path.startswith("/"):
        raise UnsafePath(f"{what} {_show(path)} is not a relative path; refused")
    parts = path.split("/")
    for part in parts:
        check_name(part, f"{what} {_show(path)}", tree=tree, hidden=hidden)
    return parts


def inside(root: str | os.PathLike, path: str, what: str = "a path", *, hidden: bool = True) -> Path:
    """``root`` joined with the relative ``path``, which may not pass through a symbolic link
    under ``root`` (the components that exist are checked with lstat; the last one may be
    anything but a link)."""
    parts = relative_parts(path, what, hidden=hidden)
    current = Path(root)
    for part in parts:
        current = current / part
        try:
            mode = os.lstat(current).st_mode
        except FileNotFoundError:
            break
        except NotADirectoryError:
            raise UnsafePath(f"{what} {_show(path)} passes through a file under {root}; refused") from None
        if stat.S_ISLNK(mode):
            raise UnsafePath(f"{what} {_show(path)} passes through the symbolic link {current}; refused")
    return Path(root).joinpath(*parts)


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "…"
