"""Secrets already in the store: a sweep of stored runs with today's rules (``verify --secrets``).

Redaction happens at capture and import, with the rules of that version and the secrets of that
environment. A run stored before a rule was added (base64 forms wrapped over lines, percent-encoded
values, provider token shapes, credential files by content) keeps what it recorded then, and so does
a run captured where a secret was not in the environment. :func:`find_stored_secrets` looks again,
read-only, at everything a run keeps with the current rules and the given environment:

* every event and score, as the JSON line `append` would read (the capture's
  :class:`~agtrace.eventlog.Redactor`, built from the environment's secret-named variables, with its
  shapes and labelled values; blocks of events screened at once, ``redact_json_lines``): an event
  that it would redact now is named by its seq, kind and part, with the kinds of what it would
  replace (``env:OPENAI_API_KEY``, ``github_token``);
* every blob an event names (large outputs, raw records), the same way;
* every file of every recorded tree, by the snapshot's credential rules (a credential file by name,
  a token by its shape, or a secret of this environment in any form): named by path and the first
  part whose tree holds it. Each tree and blob is read once per run (what a part did not change is
  skipped).

What cannot be read (damage, a newer format: ``verify`` reports it) is not looked at. It never
prints or returns a secret: only where it is and what kind it is. Nothing is changed; what
to do with a finding (remove the run, import its source again) is the caller's to say.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from agtrace.eventlog import (
    CorruptLog,
    GitStoreError,
    NewerFormat,
    Redactor,
    SnapshotTaken,
    Store,
    blob_refs,
    credential_content,
    credential_name,
    event_to_json,
    json_name,
    quote_name,
    secret_values,
)

from .errors import PartNotFound
from .workspace import has_trees, snapshots

_PLACEHOLDER = re.compile(rb"\[REDACTED:([^\]\s]{1,80})\]")

FILE_KINDS = {
    "credential": "a credential file by name",
    "token": "a token or key by its shape",
    "env": "a secret of this environment (in some form)",
}
"""What a file finding's ``found`` says, by kind."""


@dataclass(frozen=True)
class StoredSecret:
    """One place of a run that holds a secret by today's rules: ``where`` is ``event``, ``score``,
    ``blob`` (named by an event at ``seq``) or ``file`` (``path``, first held at ``part`` in
    ``tree``); ``found`` the kinds (placeholders a redaction would write, or a file kind)."""

    run_id: str
    where: str
    found: tuple[str, ...]
    seq: int | None = None
    kind: str = ""
    part: int | None = None
    path: str = ""
    tree: str = ""

    def describe(self) -> str:
        """Where, in words, without the secret."""
        found = ", ".join(self.found)
        if self.where == "file":
            return f"file {quote_name(self.path)}, first in the tree of part {self.part}: {found}"
        at = f"{self.kind}, part {self.part}" if self.part is not None else self.kind
        what = "the blob of seq" if self.where == "blob" else f"{self.where} seq"
        return f"{what} {self.seq} ({at}): {found}"

    def to_dict(self) -> dict:
        return {"run_id": self.run_id, "where": self.where, "found": list(self.found), "seq": self.seq,
                "kind": self.kind, "part": self.part, "path": json_name(self.path), "tree": self.tree}


def find_stored_secrets(store: Store, run_ids: list[str], environ: Mapping[str, str],
                        progress: Callable[[int, int], None] | None = None) -> list[StoredSecret]:
    """Every place of ``run_ids`` that holds a secret by today's rules and ``environ``'s secrets
    (see the module docstring), in run order, then seq, then path. ``progress(runs done, runs)``."""
    values = secret_values(environ)
    found: list[StoredSecret] = []
    for done, run_id in enumerate(run_ids):
        redactor = Redactor.from_env(environ)  # per run: what it learns in one run stays there
        trees: list[tuple[int, str]] = []
        found += _in_records(store, run_id, redactor, trees)
        found += _in_trees(store, run_id, trees, values)
        if progress is not None:
            progress(done + 1, len(run_ids))
    return found


def _new_kinds(before: bytes, after: bytes) -> tuple[str, ...]:
    """The placeholders ``after`` has more of than ``before`` (what a redaction added)."""
    added = Counter(_PLACEHOLDER.findall(after)) - Counter(_PLACEHOLDER.findall(before))
    return tuple(sorted(kind.decode("utf-8", "replace") for kind in added))


def _in_records(store: Store, run_id: str, redactor: Redactor, trees: list[tuple[int, str]]) -> list[StoredSecret]:
    """The events, scores and blobs that hold a secret; appends ``(part, tree id)`` of each
    snapshot to ``trees`` on the way (0 for the base)."""
    out: list[StoredSecret] = []
    seen_blobs: set[str] = set()
    for stream, where in (("events", "event"), ("scores", "score")):
        batch: list = []
        for rec in _readable(store, run_id, stream):
            event = rec.event
            if isinstance(event, SnapshotTaken) and event.tree_id:
                trees.append((rec.part or 0, event.tree_id))
            batch.append(rec)
            if len(batch) == _BATCH:
                out += _in_events(run_id, where, batch, redactor)
                batch = []
            for digest in blob_refs(event):
                if digest in seen_blobs or not store.blobs.has(digest):
                    continue  # a missing blob is verify's to report
                seen_blobs.add(digest)
                try:
                    data = store.blobs.get(digest)
                except CorruptLog:
                    continue
                cleaned, n = redactor.redact_bytes(data)
                if n:
                    kinds = _new_kinds(data, cleaned) or ("secret",)
                    out.append(StoredSecret(run_id, "blob", kinds, seq=rec.seq, kind=rec.kind, part=rec.part))
        out += _in_events(run_id, where, batch, redactor)
    return sorted(out, key=lambda s: (s.where == "score", s.seq or 0, s.where == "blob"))


_BATCH = 4096
"""Events screened as one block of JSON lines."""


def _in_events(run_id: str, where: str, batch: list, redactor: Redactor) -> list[StoredSecret]:
    """The events of ``batch`` that `append` would redact now, each as JSON: the block is screened
    in C and only the lines that may hold a secret are redacted (``Redactor.redact_json_lines``)."""
    if not batch:
        return []
    lines = [event_to_json(rec.event) for rec in batch]
    redacted, counts = redactor.redact_json_lines(lines)
    return [StoredSecret(run_id, where, _new_kinds(lines[i], redacted[i]) or ("secret",), seq=batch[i].seq,
                         kind=batch[i].kind, part=batch[i].part) for i in sorted(counts)]


def _readable(store: Store, run_id: str, stream: str):
    """The records of ``stream`` up to the first that cannot be read (damage or a newer format:
    `verify` reports it; the rest is not looked at)."""
    try:
        yield from store.read(run_id, stream=stream)
    except (CorruptLog, NewerFormat):
        return


def _in_trees(store: Store, run_id: str, trees: list[tuple[int, str]], values: tuple[str, ...]) -> list[StoredSecret]:
    if not trees or not has_trees(store, run_id):
        return []
    try:
        git = snapshots(store, run_id)
    except PartNotFound:
        return []
    out: list[StoredSecret] = []
    seen: set[str] = set()
    for part, tree in trees:
        try:
            files = git.new_files(tree, seen)
        except GitStoreError:
            continue  # a damaged or missing tree is verify's to report
        for path, oid in sorted(files):
            kind = _file_kind(git, path, oid, values)
            if kind:
                out.append(StoredSecret(run_id, "file", (FILE_KINDS[kind],), part=part, path=path, tree=tree))
    return out


def _file_kind(git, path: str, oid: str, values: tuple[str, ...]) -> str:
    """``credential``, ``token``, ``env`` or "" for the file ``path`` holding blob ``oid``."""
    if credential_name(path):
        return "credential"
    try:
        data = git.blob(oid)
    except GitStoreError:
        return ""
    if not credential_content(path, data, values):
        return ""
    return "token" if credential_content(path, data) else "env"
