"""Importing many sources at once: format detection per source, a process pool, one result each.

``import_paths`` is what ``agtrace import`` wraps. Each source is imported all or nothing
(``import_source``); sources are independent, so one failing never undoes another. With
``jobs > 1`` sources are imported in worker processes, each opening its own :class:`Store` on
the same directory (runs are adopted by rename; the catalog is SQLite in WAL mode).

Planning (:func:`plan`): a path in a known format is a source; a directory that is not a source
itself is searched **recursively** (``~/.codex/sessions/2026/`` finds every
``MM/DD/rollout-*.jsonl``), in sorted order, skipping hidden entries; a directory found to be a
source (an ISO-Bench item, an envoi trajectory, OpenCode's storage) is not searched further.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from agtrace.eventlog import Store

from . import IMPORTERS
from .base import MALFORMED, Importer, ImportResult, UnknownFormat, detect, import_source

Planned = ImportResult | tuple[Path, str]


def plan(paths: list[Path], fmt: str = "auto") -> list[Planned]:
    """``(source, format)`` for every source named by ``paths`` (see the module docstring); an
    :class:`ImportResult` with the error for a path that cannot be imported: missing, of
    unknown format, or not of the forced ``fmt``."""
    out: list[Planned] = []
    for path in paths:
        if not path.exists():
            out.append(ImportResult(str(path), fmt, error=f"{path}: no such file or directory"))
            continue
        special = _special_file(path)
        if special:  # `import <(zcat x.gz)`: it said "format not recognised"
            out.append(ImportResult(str(path), fmt, error=f"{path}: {special}, not a file; a source is read more "
                                    "than once (its format, then its records): save it to a file first"))
            continue
        left: list[ImportResult] = []
        found = list(find_sources(path, fmt, left))
        if found:
            out.extend(found)
            out.extend(left)
            continue
        if fmt == "auto" and path.is_dir() and any(r.error for r in left):
            out.extend(left)
            continue
        if fmt != "auto":
            try:
                other = f" (it looks like {detect(path, IMPORTERS).name})"
            except UnknownFormat:
                other = ""
            holds = " and holds none" if path.is_dir() else ""
            out.append(ImportResult(str(path), fmt, error=f"{path}: not a {fmt} source{other}"
                                    f"{holds}; pass the right --format or --format auto"))
            continue
        try:
            detect(path, IMPORTERS)
        except UnknownFormat as exc:
            error = str(exc)
            if path.is_dir():
                error = f"{path}: no source of a known format in it (searched recursively)"
            out.append(ImportResult(str(path), "auto", error=error))
    return out


TRACE_SUFFIXES = (".jsonl", ".eval", ".traj")
"""A file under a searched directory with one of these names is meant to be a trace: if no
format recognises it (``--format auto``), it failed (damaged, truncated); any other file that
is no source is skipped (a README, a config, a result file, a file of another format than the
forced one), and both are reported."""


def find_sources(path: Path, fmt: str = "auto", left: list[ImportResult] | None = None,
                 ) -> Iterator[tuple[Path, str]]:
    """``(source, format)`` at or under ``path``: itself if it is one, else its children,
    recursively (see the module docstring); nothing for a path that holds no source. Files and
    directories met on the way that are no source go to ``left`` (when given) as results
    with ``skipped`` or, when unreadable or a damaged trace, ``error`` set."""
    name = _format_of(path, fmt)
    if name:
        yield path, name
        return
    if not path.is_dir():
        if left is not None:
            left.append(_left_over(path, fmt))
        return
    try:
        children = sorted(p for p in path.iterdir() if not p.name.startswith("."))
    except OSError as exc:
        if left is not None:
            left.append(ImportResult(str(path), fmt, error=f"{path}: cannot be read ({exc.strerror or exc}); "
                                     "check its permissions"))
        return
    for child in children:
        if child.is_symlink() and child.is_dir():
            if left is not None:
                left.append(ImportResult(str(child), fmt, skipped="a link to a directory (never followed)"))
            continue  # never follow a directory link out of the tree (loops, other trees)
        special = _special_file(child)
        if special:  # opening a named pipe blocks until someone writes to it: the import hung
            if left is not None:
                left.append(ImportResult(str(child), fmt, skipped=f"not a regular file ({special}; never opened)"))
            continue
        yield from find_sources(child, fmt, left)


def _special_file(path: Path) -> str:
    """What ``path`` is when it is neither a regular file nor a directory (links followed), else ""."""
    import stat

    try:
        mode = path.stat().st_mode
    except OSError:
        return ""  # a broken or looping link: reported as unreadable by :func:`_left_over`
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return ""
    return ("a named pipe" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode)
            else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not a file")


def _left_over(path: Path, fmt: str) -> ImportResult:
    """The result of a file under a searched directory that no format accepted."""
    try:
        with open(path, "rb") as fh:
            fh.read(1)
    except OSError as exc:
        return ImportResult(str(path), fmt, error=f"{path}: cannot be read ({exc.strerror or exc}); check it")
    if fmt == "auto" and path.suffix in TRACE_SUFFIXES:
        return ImportResult(str(path), fmt, error=f"{path}: named like a trace, but no format recognises its "
                            "content (damaged or truncated?); pass --format to see why it does not read")
    what = "not a trace of a known format" if fmt == "auto" else f"not a {fmt} source"
    return ImportResult(str(path), fmt, skipped=what)


def _format_of(path: Path, fmt: str) -> str:
    if fmt != "auto":
        return fmt if _accepts(IMPORTERS[fmt], path) else ""
    try:
        return detect(path, IMPORTERS).name
    except UnknownFormat:
        return ""


def _accepts(importer: Importer, path: Path) -> bool:
    try:
        return bool(importer.detect(path))
    except MALFORMED:
        return False


def _import_one(root: str, source: str, fmt: str, repo: str | None) -> ImportResult:
    with Store(root) as store:
        return import_source(store, Path(source), IMPORTERS[fmt], repo=Path(repo) if repo else None)


def import_paths(store: Store, paths: list[Path], *, fmt: str = "auto", repo: Path | None = None, jobs: int = 1,
                 progress: Callable[[int, int], None] | None = None) -> list[ImportResult]:
    """Import every source under ``paths`` into ``store``; one result per source, in order,
    and one per file met in a searched directory that is no source (``skipped`` says why;
    ``error`` when it cannot be read or is a damaged trace, see :data:`TRACE_SUFFIXES`)."""
    return import_planned(store, plan(paths, fmt), repo=repo, jobs=jobs, progress=progress)


def import_planned(store: Store, planned: list[Planned], *, repo: Path | None = None, jobs: int = 1,
                   progress: Callable[[int, int], None] | None = None) -> list[ImportResult]:
    """Import what :func:`plan` found; one result per entry, in order."""
    results: list[ImportResult | None] = [p if isinstance(p, ImportResult) else None for p in planned]
    todo = [(i, p) for i, p in enumerate(planned) if not isinstance(p, ImportResult)]
    done = len(planned) - len(todo)
    total = len(planned)
    repo_s = str(repo) if repo else None
    if progress:
        progress(done, total)
    if jobs <= 1 or len(todo) <= 1:
        for i, (source, name) in todo:
            results[i] = import_source(store, source, IMPORTERS[name], repo=repo)
            done += 1
            if progress:
                progress(done, total)
    else:
        with ProcessPoolExecutor(max_workers=min(jobs, len(todo), os.cpu_count() or 1)) as pool:
            futures = {pool.submit(_import_one, str(store.root), str(source), name, repo_s): i
                       for i, (source, name) in todo}
            for fut in as_completed(futures):
                results[futures[fut]] = fut.result()
                done += 1
                if progress:
                    progress(done, total)
        for result in results:
            for run_id in (result.runs if result else []):
                store.sync(run_id)
    return [r for r in results if r is not None]
