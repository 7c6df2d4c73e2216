"""Importing many sources at once: format detection per source, a process pool, one result each.

``import_paths`` is what ``agtrace import`` wraps. Each source is imported all or nothing
(``import_source``); sources are independent, so one failing never undoes another. With
``jobs > 1`` sources are imported in worker processes, each opening its own :class:`Store` on
the same directory (runs are adopted by rename; the catalog is SQLite in WAL mode).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from agtrace.eventlog import Store

from . import IMPORTERS
from .base import ImportResult, UnknownFormat, detect, import_source


def plan(paths: list[Path], fmt: str = "auto") -> list[ImportResult | tuple[Path, str]]:
    """``(source, format)`` for every source named by ``paths`` (a directory that is not a
    source itself is a directory of sources); an :class:`ImportResult` with the error for a
    path that cannot be imported: missing, of unknown format, or not of the forced ``fmt``."""
    out: list[ImportResult | tuple[Path, str]] = []
    for path in paths:
        if not path.exists():
            out.append(ImportResult(str(path), fmt, error=f"{path}: no such file or directory"))
            continue
        if fmt != "auto":
            importer = IMPORTERS[fmt]
            if _accepts(importer, path):
                out.append((path, fmt))
                continue
            children = sorted(p for p in path.iterdir() if not p.name.startswith(".")) if path.is_dir() else []
            matched = [c for c in children if _accepts(importer, c)]
            if matched:
                out.extend((c, fmt) for c in matched)
                continue
            try:
                other = f" (it looks like {detect(path, IMPORTERS).name})"
            except UnknownFormat:
                other = ""
            out.append(ImportResult(str(path), fmt, error=f"{path}: not a {fmt} source{other}; pass the right "
                                                          "--format or --format auto"))
            continue
        try:
            out.append((path, detect(path, IMPORTERS).name))
            continue
        except UnknownFormat as exc:
            error = str(exc)
        found = False
        if path.is_dir():
            for child in sorted(p for p in path.iterdir() if not p.name.startswith(".")):
                try:
                    out.append((child, detect(child, IMPORTERS).name))
                    found = True
                except UnknownFormat:
                    continue
        if not found:
            out.append(ImportResult(str(path), "auto", error=error))
    return out


def _accepts(importer, path: Path) -> bool:
    try:
        return bool(importer.detect(path))
    except OSError:
        return False


def _import_one(root: str, source: str, fmt: str, repo: str | None) -> ImportResult:
    with Store(root) as store:
        return import_source(store, Path(source), IMPORTERS[fmt], repo=Path(repo) if repo else None)


def import_paths(store: Store, paths: list[Path], *, fmt: str = "auto", repo: Path | None = None, jobs: int = 1,
                 progress: Callable[[int, int], None] | None = None) -> list[ImportResult]:
    """Import every source under ``paths`` into ``store``; one result per source, in order."""
    planned = plan(paths, fmt)
    results: list[ImportResult | None] = [p if isinstance(p, ImportResult) else None for p in planned]
    todo = [(i, p) for i, p in enumerate(planned) if not isinstance(p, ImportResult)]
    done = len(planned) - len(todo)
    total = len(planned)
    repo_s = str(repo) if repo else None
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
