"""Credential files: which workdir files a snapshot leaves out because they hold secrets.

A snapshot records the workdir's bytes exactly, so a secret in a file cannot be redacted there;
a credential file is left out instead, and listed in the snapshot's ``excluded`` with its
reason, so replay knows it was there:

* ``credential``: its name says it holds credentials (:data:`NAMES`: SSH keys, ``*.pem``,
  ``credentials.json``, ``.aws/credentials``, ``.netrc``, ``.env``, ``*.env``, …);
* ``credential_content``: its content does (:data:`CONTENT`: a private key's BEGIN line, an AWS
  secret access key assignment), whatever its name; or it is a package manager's or registry's
  config that holds a token (:data:`TOKEN_FILES`, :data:`TOKEN_CONTENT`: an ``.npmrc`` with
  ``_authToken=``, a ``.pypirc`` with a password…), while the same file without one is kept.

The rules are data, used by the local snapshot (:func:`credential_reason`) and by the sandbox's
(git pathspecs and ``git grep -E`` of the same patterns), so both leave out the same files and
give the same tree ids. :data:`RULES_VERSION` changes whenever the rules do; it is part of a
snapshot's policy fingerprint, so a shadow repository snapshotted under older rules purges what
the new ones exclude.

Limits: a secret in any other file (a source file with a hard-coded password) is recorded; the
content rules read a file's first :data:`CONTENT_SCAN_BYTES` bytes.
"""

from __future__ import annotations

import fnmatch
import functools
import os
import re

RULES_VERSION = "2"
"""2 added ``*.env`` (``prod.env``, ``secrets.env``: dotenv files under another name than ``.env``)."""

NAMES = (
    "id_rsa", "id_dsa", "id_ecdsa", "id_ed25519", "id_ecdsa_sk", "id_ed25519_sk",
    "*.pem", "*.key", "*.p12", "*.pfx", "*.jks", "*.keystore", "*.ppk", "*.kdbx",
    ".env", ".env.*", "*.env", ".netrc", "_netrc", ".pgpass", ".git-credentials", ".htpasswd",
    "credentials.json", "client_secret*.json", "service-account*.json", "secrets.json",
    "application_default_credentials.json",
    ".aws/credentials", ".kube/config", ".config/gcloud/credentials.db",
)
"""Patterns (``fnmatch``) of credential files: matched against the file's name, or against the
end of its path when the pattern has a ``/``."""

CONTENT = (
    b"-----BEGIN[A-Z0-9 ]{0,40}PRIVATE KEY",
    b"(aws_secret_access_key|AWS_SECRET_ACCESS_KEY) *[=:] *[\"']?[A-Za-z0-9/+]{40}",
)
"""Content that makes any file a credential file (Python regexes that are also POSIX EREs: no
backslashes)."""

TOKEN_FILES = (".npmrc", ".yarnrc", ".yarnrc.yml", ".pypirc", ".docker/config.json")
"""Config files that are credential files when they hold a token (:data:`TOKEN_CONTENT`)."""

TOKEN_CONTENT = b"(_auth|_authToken|_password|npmAuthToken|auth|password|token)[\"']? *[=:]"

CONTENT_SCAN_BYTES = 16 * 1024 * 1024
"""How much of a file the content rules read (snapshots leave out larger files anyway by default)."""

_CONTENT = re.compile(b"|".join(b"(?:%s)" % p for p in CONTENT))
_TOKEN = re.compile(TOKEN_CONTENT)
# cheap tests before the regexes: every CONTENT match contains one of these
_MARKERS = (b"PRIVATE KEY", b"aws_secret_access_key", b"AWS_SECRET_ACCESS_KEY")


def _matches(rel_path: str, patterns: tuple[str, ...]) -> bool:
    names, tails = _compiled(patterns)
    name = rel_path.rsplit("/", 1)[-1]
    if names is not None and names.match(name):
        return True
    return any(rel_path == tail or rel_path.endswith("/" + tail) for tail in tails)


@functools.cache
def _compiled(patterns: tuple[str, ...]) -> tuple[re.Pattern | None, tuple[str, ...]]:
    """The file-name patterns of ``patterns`` as one regex (what ``fnmatchcase`` of each would
    match; a snapshot asks once per file), and the path patterns (those with a ``/``)."""
    names = [fnmatch.translate(p) for p in patterns if "/" not in p]
    return (re.compile("|".join(names)) if names else None), tuple(p for p in patterns if "/" in p)


def credential_name(rel_path: str) -> bool:
    """Whether ``rel_path`` (``/``-separated, relative to the workdir) is a credential file by name."""
    return _matches(rel_path, NAMES)


def credential_reason(rel_path: str, full_path: str | os.PathLike) -> str:
    """``"credential"``, ``"credential_content"`` or "" (keep the file) for a regular file."""
    if _matches(rel_path, NAMES):
        return "credential"
    try:
        with open(full_path, "rb") as fh:
            data = fh.read(CONTENT_SCAN_BYTES)
    except OSError:
        return ""
    return "credential_content" if credential_content(rel_path, data) else ""


def credential_content(rel_path: str, data: bytes) -> bool:
    """Whether a file's bytes (its first :data:`CONTENT_SCAN_BYTES` are looked at) make it a
    credential file by content; for callers that read the file anyway."""
    if len(data) > CONTENT_SCAN_BYTES:
        data = data[:CONTENT_SCAN_BYTES]
    if any(marker in data for marker in _MARKERS) and _CONTENT.search(data):
        return True
    return bool(_matches(rel_path, TOKEN_FILES) and _TOKEN.search(data))


def rules() -> dict:
    """The rules, as recorded in a snapshot's policy."""
    return {
        "version": RULES_VERSION,
        "names": list(NAMES),
        "content": [p.decode() for p in CONTENT],
        "token_files": list(TOKEN_FILES),
        "token_content": TOKEN_CONTENT.decode(),
    }
