"""Reading a run's manifests on a remote (``runs/<id>/manifests/<last seq>-<sha16>.json``, written
last by a push: each lists every object of the run pushed so far with its sha256, and the blobs
its segments reference). Shared by pull and the remote's garbage collection.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..containment import check_name, is_content_address
from ..errors import RemoteError, UnsafePath
from ..remotes.base import ObjectInfo, Remote
from .keys import MANIFEST_NAME

MAX_MANIFEST_BYTES = 64 * 1024 * 1024
"""No manifest agtrace writes comes near this (one of a 20,000-part run is well under 1 MB); a
larger object under ``manifests/`` is not read: parsing it would take several times its size in
memory, and each blob it lists is a request."""


def newest_manifests(listing: list[ObjectInfo]) -> list[ObjectInfo]:
    """The manifests of one run's listing that cover the most seqs (each manifest lists
    everything pushed before it, so the newest suffice)."""
    manifests = [o for o in listing if MANIFEST_NAME.match(o.key.rsplit("/", 1)[1])]
    if not manifests:
        return []
    newest = max(o.key.rsplit("/", 1)[1][:16] for o in manifests)
    return [o for o in manifests if o.key.rsplit("/", 1)[1].startswith(newest)]


def read_manifests(remote: Remote, manifests: list[ObjectInfo], problems: list[str],
                   tmp: Path) -> tuple[dict[str, str], set[str]]:
    """Checksums by key and blob addresses the manifests list (downloaded into ``tmp``); an
    entry that breaks the path rule (a key leaving the run, a blob that is no content address)
    is added to ``problems`` and skipped, and so is a manifest larger than
    :data:`MAX_MANIFEST_BYTES` (not downloaded). A manifest of the wrong shape is a :class:`RemoteError`."""
    checksums: dict[str, str] = {}
    blobs: set[str] = set()
    for i, obj in enumerate(manifests):
        path = tmp / f"{i}.json"
        if obj.size <= MAX_MANIFEST_BYTES:
            remote.get_file(obj.key, path)
        if obj.size > MAX_MANIFEST_BYTES or path.stat().st_size > MAX_MANIFEST_BYTES:
            problems.append(f"{remote.describe(obj.key)} is {max(obj.size, 0)} bytes, more than any manifest "
                            f"holds ({MAX_MANIFEST_BYTES}); not read (the remote is damaged, or not agtrace's)")
            continue
        try:
            body = json.loads(path.read_bytes())
            if not isinstance(body, dict):
                raise TypeError("not a JSON object")
            run_prefix = "/".join(obj.key.split("/")[:2])
            for entry in body.get("objects", []):
                key, sha = entry["key"], entry["sha256"]
                if not isinstance(key, str) or not isinstance(sha, str):
                    raise TypeError(f"object entry {entry!r:.80} has no string key and sha256")
                try:
                    for name in key.split("/"):
                        check_name(name, f"manifest entry {key!r}", hidden=False)
                except UnsafePath as exc:
                    problems.append(f"{remote.describe(obj.key)}: {exc}")
                    continue
                checksums[f"{run_prefix}/{key}"] = sha
            listed = body.get("blobs", [])
            if not isinstance(listed, list):
                raise TypeError("blobs is not a list of sha256 strings")
            for digest in listed:
                if is_content_address(digest):
                    blobs.add(digest)
                else:
                    problems.append(f"{remote.describe(obj.key)}: lists blob {str(digest)[:80]!r}, which "
                                    "is not a content address; not pulled (the one path rule, docs/format.md)")
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
            raise RemoteError(f"{remote.describe(obj.key)} is not a valid manifest ({exc}); the remote is damaged") from None
    return checksums, blobs
