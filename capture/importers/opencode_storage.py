"""Importer of OpenCode's own storage (``--format opencode-storage``): every session OpenCode
keeps, without running ``opencode export`` for each.

Two layouts, under OpenCode's data directory (``$XDG_DATA_HOME/opencode``, else
``~/.local/share/opencode``):

* the database of OpenCode 1.2 and later: ``opencode.db`` (``opencode-<channel>.db`` for other
  release channels, ``$OPENCODE_DB`` when set), SQLite tables ``session``, ``message``
  (``data`` = the message without its ids), ``part`` (``data`` = the part without its ids);
* the JSON storage of older releases: ``storage/session/<project>/<session>.json``,
  ``storage/message/<session>/<message>.json``, ``storage/part/<message>/<part>.json``.

A source is the database file or the ``storage`` directory; each session is one run. Each
session is assembled into the shape of ``opencode export`` (``{info, messages: [{info,
parts}]}``, messages and parts in id order, which is creation order) and imported by the export
importer's code (``opencode_export.write_session``), so both map alike. Raw records: every row
(as a JSON object of its columns, ``data`` verbatim; location ``opencode.db#message/<id>``) or
every file (its bytes; location its path under ``storage/``). A session's key is the sha256 of
its records, so a session that went on imports as a new run continuing the earlier one.

The database is opened read-only (``mode=ro``); OpenCode may be writing it meanwhile (WAL): the
import sees a consistent snapshot.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path
from typing import Any

from agtrace.eventlog import UnsafePath, check_name

from . import register
from .base import ImportContext, ImportError_
from .opencode_export import KNOWN, write_session

FORMAT = "opencode-storage"


def is_database(path: Path) -> bool:
    if not (path.is_file() and path.name.startswith("opencode") and path.suffix == ".db"):
        return False
    with open(path, "rb") as fh:
        if fh.read(16) != b"SQLite format 3\x00":
            return False
    try:
        with _connect(path) as conn:
            names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except sqlite3.Error:
        return False
    return {"session", "message", "part"} <= names


def is_storage(path: Path) -> bool:
    return path.is_dir() and path.name == "storage" and (path / "session").is_dir() and (
        path / "message").is_dir()


def _connect(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)


class OpenCodeStorageImporter:
    """``--format opencode-storage``."""

    name = FORMAT
    known = KNOWN

    def detect(self, path: Path) -> bool:
        return is_database(path) or is_storage(path)

    def read(self, path: Path, ctx: ImportContext) -> None:
        if is_database(path):
            sessions = _from_database(path)
        elif is_storage(path):
            sessions = _from_storage(path)
        else:
            raise ImportError_(f"{path}: not OpenCode's storage (an opencode.db with session, "
                               "message and part tables, or its storage/ directory)")
        for doc, raws, problems in sessions:
            digest = hashlib.sha256("\0".join(text for _, text in raws).encode()).hexdigest()
            write_session(ctx, doc, FORMAT, digest, raws, f"{path.name}#{doc['info']['id']}",
                          problems)


Session = tuple[dict[str, Any], list[tuple[str, str]], list[tuple[str, str]]]
"""``(export-shaped document, raw records, bad records)`` of one session."""


def _from_database(path: Path) -> list[Session]:
    try:
        with _connect(path) as conn:
            conn.row_factory = sqlite3.Row
            sessions = [dict(r) for r in conn.execute("SELECT * FROM session ORDER BY time_created, id")]
            out = []
            for row in sessions:
                sid = row["id"]
                raws = [(f"{path.name}#session/{sid}", json.dumps(row, ensure_ascii=False))]
                messages = []
                for m in conn.execute("SELECT * FROM message WHERE session_id = ? ORDER BY id", [sid]):
                    m = dict(m)
                    raws.append((f"{path.name}#message/{m['id']}", json.dumps(m, ensure_ascii=False)))
                    parts = []
                    for p in conn.execute("SELECT * FROM part WHERE message_id = ? ORDER BY id",
                                          [m["id"]]):
                        p = dict(p)
                        raws.append((f"{path.name}#part/{p['id']}", json.dumps(p, ensure_ascii=False)))
                        parts.append({"id": p["id"], "sessionID": sid, "messageID": m["id"],
                                      **_data(p["data"], path, p["id"])})
                    messages.append({"info": {"id": m["id"], "sessionID": sid,
                                              **_data(m["data"], path, m["id"])}, "parts": parts})
                out.append(({"info": _session_info(row), "messages": messages}, raws, []))
            return out
    except sqlite3.Error as exc:
        raise ImportError_(f"{path}: cannot read OpenCode's database ({exc}); is it an "
                           "opencode.db of a release this importer knows?") from exc


def _data(text: Any, path: Path, row_id: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except (TypeError, ValueError):
        data = None
    if not isinstance(data, dict):
        raise ImportError_(f"{path}#{row_id}: its data column is not a JSON object")
    return data


def _session_info(row: dict[str, Any]) -> dict[str, Any]:
    """A session row as ``Session.Info`` (what ``opencode export`` prints as ``info``)."""
    info = {"id": row["id"], "slug": row.get("slug"), "projectID": row.get("project_id"),
            "directory": row.get("directory"), "title": row.get("title"),
            "version": row.get("version"), "parentID": row.get("parent_id"),
            "time": {"created": row.get("time_created"), "updated": row.get("time_updated")}}
    return {k: v for k, v in info.items() if v is not None}


def _from_storage(root: Path) -> list[Session]:
    """The sessions of a JSON storage. Session and message ids come from the files' content and
    name directories (``message/<session>/``, ``part/<message>/``): an id that is not a plain
    name (:func:`~agtrace.eventlog.check_name`: no ``/``, backslash, NUL, ``.`` or ``..``) is a
    bad record of its file, and nothing is looked up under it (its messages or parts are not
    read)."""
    out = []
    for session_file in sorted((root / "session").glob("*/*.json")):
        raws: list[tuple[str, str]] = []
        bad: list[tuple[str, str]] = []
        info = _json_file(session_file, root, raws, bad)
        sid = str(info.get("id") or session_file.stem)
        messages = []
        if _plain_id(sid, "its session id", session_file, root, bad, "its messages"):
            for message_file in sorted((root / "message" / sid).glob("*.json")):
                minfo = _json_file(message_file, root, raws, bad)
                mid = str(minfo.get("id") or message_file.stem)
                if not _plain_id(mid, "its message id", message_file, root, bad, "the message and its parts"):
                    continue
                parts = [p for f in sorted((root / "part" / mid).glob("*.json"))
                         if (p := _json_file(f, root, raws, bad))]
                if minfo:
                    messages.append({"info": minfo, "parts": parts})
        out.append(({"info": {**info, "id": sid}, "messages": messages}, raws, bad))
    return out


def _plain_id(value: str, what: str, path: Path, root: Path, bad: list[tuple[str, str]],
              skipped: str) -> bool:
    """True if ``value`` may name a directory under ``root``; else a bad record of ``path``."""
    try:
        check_name(value, what)
    except UnsafePath as exc:
        bad.append((_location(path, root), f"{exc}; {skipped} were not read"))
        return False
    return True


def _location(path: Path, root: Path) -> str:
    return f"{root.name}/{path.relative_to(root)}"


def _json_file(path: Path, root: Path, raws: list[tuple[str, str]],
               bad: list[tuple[str, str]]) -> dict[str, Any]:
    """A storage file's object; {} (and a bad record) when it is not one (a torn write)."""
    location = _location(path, root)
    text = path.read_text(encoding="utf-8", errors="replace")
    raws.append((location, text))
    try:
        doc = json.loads(text)
    except ValueError as exc:
        bad.append((location, f"not valid JSON ({exc}); OpenCode was writing it, or it is damaged"))
        return {}
    if not isinstance(doc, dict):
        bad.append((location, f"expected a JSON object, got {type(doc).__name__}"))
        return {}
    return doc


register(OpenCodeStorageImporter())
