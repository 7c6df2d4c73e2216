"""Run ids: ULIDs (48-bit millisecond time + 80 random bits, Crockford base32, 26 chars).

They sort by creation time, are safe in file names and S3 keys, and any unique prefix names a
run on the command line, like a git hash.
"""

from __future__ import annotations

import os
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_run_id(now_ns: int | None = None) -> str:
    """A new ULID for a run created at ``now_ns`` (default: now)."""
    ms = (now_ns if now_ns is not None else time.time_ns()) // 1_000_000
    value = (ms << 80) | int.from_bytes(os.urandom(10), "big")
    chars = []
    for _ in range(26):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def derived_run_id(started_ns: int, key: str) -> str:
    """A ULID whose random part is derived from ``key``: the same source always gets the same id.

    Used by importers, so importing a source twice finds the run instead of making a duplicate.
    """
    import hashlib

    ms = max(started_ns, 0) // 1_000_000
    value = (ms << 80) | int.from_bytes(hashlib.sha256(key.encode()).digest()[:10], "big")
    chars = []
    for _ in range(26):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def looks_like_run_id(text: str) -> bool:
    """True if ``text`` could be a run id or a prefix of one."""
    return bool(text) and len(text) <= 26 and all(c in _ALPHABET for c in text.upper())


def is_run_id(text: str) -> bool:
    """True if ``text`` is a whole run id as a store names its run directories: 26 characters of
    the id alphabet, upper case. What a remote holds under ``runs/<other>/`` is no run: pull,
    ``ls --remote`` and ``gc --remote`` agree on it."""
    return len(text) == 26 and text == text.upper() and looks_like_run_id(text)


def run_id_time_ns(run_id: str) -> int | None:
    """When a run id was made (its 48-bit millisecond time, in ns), or None if it is no ULID."""
    if len(run_id) != 26 or not looks_like_run_id(run_id):
        return None
    value = 0
    for c in run_id[:10].upper():
        value = value * 32 + _ALPHABET.index(c)
    return value * 1_000_000  # the first 10 characters are the 48-bit time (2 leading zero bits)
