"""What a snapshot records and what it leaves out, as files in the shadow repository.

Snapshot policy:

* Ignored: paths matched by the workdir's ``.gitignore`` files, its ``.git/info/exclude`` and the
  caller's ``exclude`` patterns (gitignore syntax, relative to the workdir root). Ignored paths
  are not listed in ``excluded`` (that list would be unbounded, e.g. ``node_modules``).
* ``.git`` entries (directories or gitfiles) are never recorded, at any depth.
* Nested repositories (a directory below the root holding a ``.git``): their working files are
  recorded as plain files (their own ``.gitignore`` files apply), their ``.git`` is skipped and
  ``<root>/.git`` is listed in ``excluded`` with reason ``"nested_git"``, size 0, so that replay
  knows a repository was there.
* Regular files larger than ``max_file_bytes`` are left out and listed with reason ``"size"``.
* Credential files (``eventlog/credential.py``: by name, reason ``"credential"``; by content,
  reason ``"credential_content"``) are left out and listed, unless ``credentials=False``; they
  are never hashed into the shadow repository, so no object or bundle holds them.
* Bytes are recorded exactly: no end-of-line conversion, ident or filter attributes apply
  (:data:`CONFIG`, :data:`ATTRIBUTES`), and the user's global/system git configuration is not
  consulted by libgit2 in this process.
* Executable bits and symlinks (as links, never followed) are kept.

The rules in force are written as the shadow repository's own ``info/exclude``; their
fingerprint and the nested repositories seen are kept in ``agtrace-state.json``, so a changed
policy purges what it now excludes. The workdir's ``.git/info/exclude`` is the only file of the
agent's ``.git`` ever read.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat

from .. import credential

ATTRIBUTES = b"* -text !eol -ident -filter !working-tree-encoding\n"
"""``info/attributes``: none of the attributes that would make recorded bytes differ from disk."""

CONFIG = {
    "core.autocrlf": "false",
    "core.safecrlf": "false",
    "core.filemode": "true",
    "core.symlinks": "true",
    "core.ignorecase": "false",
    "core.precomposeunicode": "false",
    "core.protectNTFS": "false",
    "core.protectHFS": "false",
    "core.logAllRefUpdates": "false",
    "gc.auto": "0",
}
"""The shadow repository's config: exact bytes, modes and names; no reflogs, no auto-gc."""

STATE_FILE = "agtrace-state.json"


def write_atomic(path: str, data: bytes) -> None:
    """Replace ``path`` by ``data`` (temp file and rename; not fsynced: see the durability note
    in ``repository.py``)."""
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def install_ignore_rules(git_dir: str, root: str, exclude, max_file_bytes: int) -> str:
    """Write the workdir's ``.git/info/exclude`` plus ``exclude`` as the shadow's own
    ``info/exclude`` (rewritten only when it changes); return a fingerprint of the policy."""
    rules = b""
    own_exclude = os.path.join(root, ".git", "info", "exclude")
    if os.path.isdir(os.path.join(root, ".git")) and os.path.isfile(own_exclude):
        with open(own_exclude, "rb") as f:
            rules += f.read() + b"\n"
    rules += "".join(f"{p}\n" for p in exclude).encode()
    target = os.path.join(git_dir, "info", "exclude")
    try:
        with open(target, "rb") as f:
            current = f.read()
    except OSError:
        current = None
    if current != rules:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        write_atomic(target, rules)
    return hashlib.sha256(rules + b"\0%d" % max_file_bytes).hexdigest()


def load_state(git_dir: str) -> dict:
    """``{"policy": fingerprint, "nested": [...], "excluded": [...]}`` of the last snapshot; {}
    before the first."""
    try:
        with open(os.path.join(git_dir, STATE_FILE), "rb") as f:
            return json.loads(f.read())
    except (OSError, ValueError):
        return {}


def save_state(git_dir: str, policy: str, nested: list[str], excluded: list | None = None,
               previous: dict | None = None) -> dict:
    """Remember the policy's fingerprint, the nested repositories and what was left out (so a
    snapshot from changed paths knows the exclusions of the paths it is not told about); the
    file is not rewritten when the state equals ``previous`` (what `load_state` returned).
    Returns the state."""
    state: dict = {"policy": policy, "nested": nested}
    if excluded is not None:
        state["excluded"] = [list(e) for e in excluded]
    if state != previous:
        write_atomic(os.path.join(git_dir, STATE_FILE), json.dumps(state).encode())
    return state


def credentials_fingerprint(fingerprint: str, enabled: bool) -> str:
    """The policy fingerprint with the credential rules' version (a new version purges)."""
    return f"{fingerprint}:credentials-{credential.RULES_VERSION}" if enabled else fingerprint


def credential_exclusion(path: str, full: str, st: os.stat_result, enabled: bool,
                         secrets: tuple[str, ...] = ()) -> str:
    """Why ``path`` is a credential file that the snapshot leaves out, or "" (keep it)."""
    if not enabled:
        return ""
    if stat.S_ISREG(st.st_mode):
        return credential.credential_reason(path, full, secrets)
    return "credential" if credential.credential_name(path) else ""
