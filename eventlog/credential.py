"""Credential files: which workdir files a snapshot leaves out because they hold secrets.

A snapshot records the workdir's bytes exactly, so a secret in a file cannot be redacted there;
a credential file is left out instead, and listed in the snapshot's ``excluded`` with its
reason, so replay knows it was there:

* ``credential``: its name says it holds credentials (:data:`NAMES`: SSH keys, ``*.pem``,
  ``credentials.json``, ``.aws/credentials``, ``.netrc``, ``.env``, ``*.env``, …);
* ``credential_content``: its content does (:data:`CONTENT`: a private key's BEGIN line, an AWS
  secret access key assignment, a provider's token by its shape: ``ghp_…``, ``sk-ant-…``,
  ``hf_…``), whatever its name; or it is a package manager's or registry's
  config that holds a token (:data:`TOKEN_FILES`, :data:`TOKEN_CONTENT`: an ``.npmrc`` with
  ``_authToken=``, a ``.pypirc`` with a password…), while the same file without one is kept.

The rules are data, used by the local snapshot (:func:`credential_reason`) and by the sandbox's
(git pathspecs and ``git grep -E`` of the same patterns), so both leave out the same files and
give the same tree ids. :data:`RULES_VERSION` changes whenever the rules do; it is part of a
snapshot's policy fingerprint, so a shadow repository snapshotted under older rules purges what
the new ones exclude.

Limits: a secret without a known shape in any other file (a source file with a hard-coded
password) is recorded; a placeholder of a token's shape (``ghp_`` and 36 ``x``) leaves its file out
too; the content rules read a file's first :data:`CONTENT_SCAN_BYTES` bytes.
"""

from __future__ import annotations

import fnmatch
import functools
import os
import re
from collections.abc import Mapping

from .multisearch import automaton
from .secret import MIN_VALUE_LEN, base64_forms, encoded_forms, is_secret_name
from .wrapped import chunks as wrapped_chunks

RULES_VERSION = "4"
"""2 added ``*.env`` (``prod.env``, ``secrets.env``: dotenv files under another name than ``.env``);
3 added provider tokens by their shape (a ``ghp_…`` token in ``token.txt`` was recorded); 4 looks
for an environment secret JSON-escaped, percent-encoded and in base64, also wrapped over lines."""

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

_W = b"(^|[^A-Za-z0-9_])"  # a token not preceded by a word character
_CONTENT_RULES: tuple[tuple[tuple[bytes, ...], bytes], ...] = (
    ((b"PRIVATE KEY",), b"-----BEGIN[A-Z0-9 ]{0,40}PRIVATE KEY"),
    ((b"aws_secret_access_key", b"AWS_SECRET_ACCESS_KEY"),
     b"(aws_secret_access_key|AWS_SECRET_ACCESS_KEY) *[=:] *[\"']?[A-Za-z0-9/+]{40}"),
    ((b"ghp_", b"gho_", b"ghu_", b"ghs_", b"ghr_"), _W + b"gh[pousr]_[A-Za-z0-9]{36}"),
    ((b"github_pat_",), _W + b"github_pat_[A-Za-z0-9_]{22}"),
    ((b"glpat-",), _W + b"glpat-[A-Za-z0-9_-]{20}"),
    ((b"sk-ant-",), _W + b"sk-ant-[A-Za-z0-9_-]{20}"),
    ((b"sk-proj-", b"sk-svcacct-", b"sk-admin-"), _W + b"sk-(proj|svcacct|admin)-[A-Za-z0-9_-]{20}"),
    ((b"T3BlbkFJ",), _W + b"sk-[A-Za-z0-9]{20}T3BlbkFJ"),
    ((b"xoxa-", b"xoxb-", b"xoxp-", b"xoxr-"), _W + b"xox[abpr]-[0-9]{8}[0-9]*-[A-Za-z0-9-]{8}"),
    ((b"hf_",), _W + b"hf_[A-Za-z0-9]{30}"),
    ((b"npm_",), _W + b"npm_[A-Za-z0-9]{36}"),
    ((b"AIza",), _W + b"AIza[A-Za-z0-9_-]{35}"),
    ((b"sk_live_", b"rk_live_"), _W + b"[rs]k_live_[A-Za-z0-9]{16}"),
)
"""(markers, pattern): every match of the pattern holds one of its markers."""

CONTENT = tuple(pattern for _, pattern in _CONTENT_RULES)
"""Content that makes any file a credential file: a private key's BEGIN line, an AWS secret key
assignment, or a provider's token by its shape (GitHub, GitLab, Anthropic, OpenAI, Slack, Hugging
Face, npm, Google API, Stripe), at its minimum length. Python regexes (searched line by line, as
``re.MULTILINE``) that are also POSIX EREs for ``git grep -E``: no backslashes."""

TOKEN_FILES = (".npmrc", ".yarnrc", ".yarnrc.yml", ".pypirc", ".docker/config.json")
"""Config files that are credential files when they hold a token (:data:`TOKEN_CONTENT`)."""

TOKEN_CONTENT = b"(_auth|_authToken|_password|npmAuthToken|auth|password|token)[\"']? *[=:]"

CONTENT_SCAN_BYTES = 16 * 1024 * 1024
"""How much of a file the content rules read (snapshots leave out larger files anyway by default)."""

_TOKEN = re.compile(TOKEN_CONTENT)
_BEFORE = 64
"""How far before its marker a match of :data:`CONTENT` can start (a BEGIN line: 50 bytes)."""
_AFTER = 128
"""How far after its marker a match of a pattern with no ``*`` can end."""


@functools.lru_cache(maxsize=8)
def _content_search(secrets: tuple[str, ...] = ()):
    """One multi-pattern search for every marker and every secret value, and per pattern: its
    regex and whether that regex can run to the end of the line (``*``), None for a value, or
    the values' base64 forms for a chunk of one (:mod:`~agtrace.eventlog.wrapped`: the file holds
    a form if it does once its lines are joined)."""
    markers, patterns = [], []
    for marks, pattern in _CONTENT_RULES:
        compiled = (re.compile(pattern, re.MULTILINE), b"*" in pattern)
        for mark in marks:
            markers.append(mark)
            patterns.append(compiled)
    values, forms, chunks = value_patterns(secrets)
    markers += [v.encode() for v in values]
    patterns += [None] * len(values)
    broken = frozenset(form.encode() for form in forms)
    markers += [c.encode() for c in chunks]  # a piece of a base64 form that may wrap over lines
    patterns += [broken] * len(chunks)
    return automaton(markers), patterns


def value_patterns(secrets: tuple[str, ...]) -> tuple[list[str], list[str], list[str]]:
    """What a file holding one of ``secrets`` is found by, for the local rules and the sandbox's
    ``grep -f`` alike: each value and its :func:`~agtrace.eventlog.secret.encoded_forms`
    (JSON-escaped, percent-encoded, base64); the base64 forms alone; and their chunks
    (:mod:`~agtrace.eventlog.wrapped`), whose hit sends the file to a second look with its line
    breaks removed."""
    values = list(dict.fromkeys(f for value in secrets for f in (value, *encoded_forms(value))))
    forms = sorted({form for value in secrets for form in base64_forms(value)})
    chunks = list(dict.fromkeys(chunk for form in forms for chunk, _ in wrapped_chunks(form)))
    return values, forms, chunks


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


def credential_reason(rel_path: str, full_path: str | os.PathLike, secrets: tuple[str, ...] = ()) -> str:
    """``"credential"``, ``"credential_content"`` or "" (keep the file) for a regular file;
    ``secrets`` as for :func:`credential_content`."""
    if _matches(rel_path, NAMES):
        return "credential"
    try:
        with open(full_path, "rb") as fh:
            data = fh.read(CONTENT_SCAN_BYTES)
    except OSError:
        return ""
    return "credential_content" if credential_content(rel_path, data, secrets) else ""


def secret_values(environ: Mapping[str, str]) -> tuple[str, ...]:
    """The values of ``environ``'s secret-named variables (those the redactor redacts as
    ``env:<NAME>``: :func:`~agtrace.eventlog.is_secret_name`, :data:`MIN_VALUE_LEN` characters or
    more) that make a file holding one a credential file, sorted. A value with a line break is
    left to the shapes (the sandbox's ``git grep`` reads lines), and so is one that is not text."""
    values = set()
    for name, value in environ.items():
        if is_secret_name(name) and len(value) >= MIN_VALUE_LEN and "\n" not in value:
            try:
                value.encode()
            except UnicodeEncodeError:
                continue
            values.add(value)
    return tuple(sorted(values))


def credential_content(rel_path: str, data: bytes, secrets: tuple[str, ...] = ()) -> bool:
    """Whether a file's bytes (its first :data:`CONTENT_SCAN_BYTES` are looked at) make it a
    credential file by content; for callers that read the file anyway. ``secrets`` (from
    :func:`secret_values`): a file holding one of them is one too.

    Finds what a search of each :data:`CONTENT` pattern over the bytes would (a property test
    checks it), but looks for the patterns only around their markers, found in one pass with
    the secret values."""
    if len(data) > CONTENT_SCAN_BYTES:
        data = data[:CONTENT_SCAN_BYTES]
    automaton, patterns = _content_search(secrets)
    unwrapped = None
    # a value may hold a marker, so with values every match counts (the markers alone never hide
    # one another: the property tests check both)
    for index, start, end in automaton.find_matches_as_indexes(data, overlapping=bool(secrets)):
        if patterns[index] is None:  # a secret value
            return True
        if isinstance(patterns[index], frozenset):  # a chunk of a base64 form: is a form there,
            if unwrapped is None:  # once its lines are joined? (one look for every form)
                unwrapped = data.replace(b"\r", b"").replace(b"\n", b"")
                if any(form in unwrapped for form in patterns[index]):
                    return True
            continue
        pattern, to_line_end = patterns[index]
        if to_line_end:
            stop = data.find(b"\n", end)
            stop = len(data) if stop < 0 else stop
        else:
            stop = end + _AFTER
        if pattern.search(data, max(0, start - _BEFORE), stop):
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
