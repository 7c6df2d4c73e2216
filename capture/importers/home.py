"""Agents' homes: where each agent CLI keeps its sessions, and importing what is new there.

``agtrace import --from claude|codex|opencode|gemini`` wraps :func:`import_home`:

=============  ==========================================================  ====================
agent          its sessions (the tool's own override first)                format
=============  ==========================================================  ====================
``claude``     ``$CLAUDE_CONFIG_DIR/projects``, else ``~/.claude/projects``  ``claude-session``
``codex``      ``$CODEX_HOME/sessions`` and ``…/archived_sessions``, else  ``codex-rollout``
               ``~/.codex/…``
``opencode``   ``$OPENCODE_DB`` (relative to the data directory), and the   ``opencode-storage``
               data directory ``$XDG_DATA_HOME/opencode``, else
               ``~/.local/share/opencode`` (its ``opencode*.db`` and the
               older ``storage/``)
``gemini``     ``$GEMINI_CLI_HOME/.gemini/tmp``, else ``~/.gemini/tmp``      ``gemini-cli``
               (``<project>/chats/session-*.json``)
=============  ==========================================================  ====================

(The paths are those of the tools' own sources: Claude Code's config dir, Codex's
``CODEX_HOME``, OpenCode's ``Global.Path.data`` and database path, Gemini CLI's
``Storage.getGlobalGeminiDir``.)

**What is new.** Every source under the home is imported at most once (run ids are derived
from the content, see ``base.py``), so an import of the home is always safe to repeat. To keep
repeating it cheap, the sources imported without error are remembered by path, size and
modification time in ``<store>/cache/imports/<agent>.json``; an unchanged source is not read
again. The file is a cache: deleting it costs one slower import, never a duplicate.

**A session that went on** (a Claude transcript, a Codex rollout appended to after a resume, an
OpenCode session that got more messages) changed its content: it is imported again as a new
run of the whole session whose ``parent_run`` is the run of its previous import. Nothing is
overwritten; the latest run of a session is a query (``ls``, by ``parent_run``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from agtrace.eventlog import Store

from ..errors import ImportError_
from . import IMPORTERS
from .base import ImportResult
from .batch import Planned, find_sources, import_planned

AGENTS = ("claude", "codex", "opencode", "gemini")


@dataclass(frozen=True)
class AgentHome:
    """Where one agent keeps its sessions."""

    agent: str
    format: str
    roots: tuple[Path, ...]
    """The directories (or files) searched for sources; only those that exist."""
    looked: tuple[Path, ...]
    """Every place looked at, existing or not (for messages)."""


@dataclass
class HomeImport:
    """What :func:`import_home` did."""

    home: AgentHome
    results: list[ImportResult] = field(default_factory=list)
    unchanged: int = 0
    """Sources skipped because they were imported before and have not changed since."""

    def to_dict(self) -> dict:
        return {"agent": self.home.agent, "format": self.home.format,
                "roots": [str(r) for r in self.home.roots], "unchanged": self.unchanged,
                "results": [r.to_dict() for r in self.results]}


def find_home(agent: str, env: Mapping[str, str] | None = None) -> AgentHome:
    """The home of ``agent`` (one of :data:`AGENTS`) from ``env`` (default ``os.environ``)."""
    env = os.environ if env is None else env
    home = Path(env.get("HOME") or Path.home())
    if agent == "claude":
        looked = [Path(env["CLAUDE_CONFIG_DIR"]) / "projects" if env.get("CLAUDE_CONFIG_DIR")
                  else home / ".claude" / "projects"]
        fmt = "claude-session"
    elif agent == "codex":
        base = Path(env["CODEX_HOME"]) if env.get("CODEX_HOME") else home / ".codex"
        looked = [base / "sessions", base / "archived_sessions"]
        fmt = "codex-rollout"
    elif agent == "opencode":
        data = (Path(env["XDG_DATA_HOME"]) if env.get("XDG_DATA_HOME")
                else home / ".local" / "share") / "opencode"
        looked = [data]
        db = env.get("OPENCODE_DB", "")
        if db and db != ":memory:":
            path = Path(db) if os.path.isabs(db) else data / db
            if data not in path.parents:
                looked.append(path)
        fmt = "opencode-storage"
    elif agent == "gemini":
        base = Path(env["GEMINI_CLI_HOME"]) if env.get("GEMINI_CLI_HOME") else home
        looked = [base / ".gemini" / "tmp"]
        fmt = "gemini-cli"
    else:
        raise ImportError_(f"no home known for agent {agent!r}; --from takes one of: "
                           f"{', '.join(AGENTS)}")
    return AgentHome(agent, fmt, tuple(p for p in looked if p.exists()), tuple(looked))


def import_home(store: Store, agent: str, *, env: Mapping[str, str] | None = None, jobs: int = 1,
                progress: Callable[[int, int], None] | None = None) -> HomeImport:
    """Import what is new in ``agent``'s home (see the module docstring)."""
    home = find_home(agent, env)
    if home.format not in IMPORTERS:
        raise ImportError_(f"there is no {home.format} importer in this agtrace, so --from {agent} "
                           "cannot import its sessions yet")
    if not home.roots:
        where = " or ".join(str(p) for p in home.looked)
        raise ImportError_(f"no {agent} sessions found: {where} does not exist; set the tool's "
                           "own home variable (see `agtrace import --help`) or pass the directory")
    cache_path = store.root / "cache" / "imports" / f"{agent}.json"
    seen = _load(cache_path)
    out = HomeImport(home)
    todo: list[Planned] = []
    for root in home.roots:
        for source, fmt in find_sources(root, home.format):
            if seen.get(str(source)) == _stamp(source):
                out.unchanged += 1
            else:
                todo.append((source, fmt))
    out.results = import_planned(store, todo, jobs=jobs, progress=progress)
    for (source, _), result in zip(todo, out.results, strict=True):
        if not result.error:
            seen[str(source)] = _stamp(source)
    _save(cache_path, seen)
    return out


def _stamp(path: Path) -> list[int]:
    """``[size, mtime_ns]`` of a file (with its SQLite WAL, where new rows land first), or the
    total size and newest time of the files under a directory."""
    files = [path, *[p for p in (path.with_name(path.name + "-wal"),) if p.is_file()]] \
        if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    stats = [p.stat() for p in files]
    return [sum(s.st_size for s in stats), max((s.st_mtime_ns for s in stats), default=0)]


def _load(path: Path) -> dict[str, list[int]]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _save(path: Path, seen: dict[str, list[int]]) -> None:
    """Written to a temporary file and renamed: a crash leaves the old cache or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(seen, sort_keys=True))
    os.replace(tmp, path)
