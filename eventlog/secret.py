"""What a secret looks like: the shapes, labels and variable names the :class:`~agtrace.eventlog.Redactor` looks for.

Data and pure functions only; ``redaction.py`` applies them. :data:`SHAPES` are regexes, each
gated by cheap substring triggers; labelled values (:data:`LABELLED_KIND`) are looked for only at
the separators :func:`label_separators` finds after a label; :func:`is_secret_name` says which
environment variables hold secrets by their name.
"""

from __future__ import annotations

import base64
import json
import re
import urllib.parse

MIN_VALUE_LEN = 8
SECRET_NAME_PARTS = ("KEY", "TOKEN", "SECRET", "PASSW", "PASSPHRASE", "CREDENTIAL", "PRIVATE")
"""An environment variable whose name contains one of these holds a secret..."""
SECRET_NAME_WORDS = ("AUTH", "PASS", "PWD", "DSN", "COOKIE")
"""...and so does one with one of these as a ``_``-separated word (``DB_PASS``, ``GH_AUTH``;
not ``GIT_AUTHOR_NAME``), except ``PWD`` and ``OLDPWD`` themselves (directories)."""
MAX_LEARNED = 256
"""At most this many learned values are kept (the cost of a text grows with their number)."""
MIN_TAIL = 6
"""The shortest start of a secret redacted at the end of a text cut with ``…``."""

_B64 = r"[A-Za-z0-9+/]"
_NOT_PLACEHOLDER = r"(?!\[REDACTED)"
_PEM_NAME = r"[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?"
# base64 and whitespace, JSON escapes of newlines and slashes, and armour headers ("Proc-Type: …")
_PEM_BODY = r"(?:[A-Za-z0-9+/=\s]|\\[nrt/]|[A-Za-z-]{2,20}: [^\n\\\"]*)*"
LABELLED_KIND = "secret_value"
"""The kind of a value labelled as a secret (``password=…``, ``"client_secret": "…"``,
``_authToken=…``); found by :func:`_labelled_values`, not by a regex of :data:`SHAPES`."""
LABEL_STEMS = ("pass", "secret", "key", "token")
"""Labels are words ending in ``token`` or ``secret``, ``passw(or)d``/``passphrase``/``pass``,
and ``key`` after ``api``, ``access``, ``account``, ``private`` or ``secret`` (``api_key``…)."""
_KEY_OWNERS = ("api", "access", "account", "private", "secret")
_PASS_WORDS = ("password", "passwd", "passphrase", "pass")
_GAP = frozenset("\\\"' \t")
_GAP_OR_SEPARATOR = _GAP | frozenset(":=")
# at the ":" or "=" after a label: a quoted value of 8+ characters, or an unquoted one that is
# not a number, a placeholder, a call or an expression (it must end at a space, a separator or a
# quote), so that code reading a secret from somewhere is left alone
_VALUE_END = r"(?=[\s,;&\\\"']|$)"
QUOTED_VALUE = re.compile(r"[:= ][ \t]*(?P<q>\\?[\"'])" + _NOT_PLACEHOLDER + r"(?!\$\{)(?P<v>[^\"'\\\n]{8,})(?P=q)")
BARE_VALUE = re.compile(r"[:= ][ \t]*" + _NOT_PLACEHOLDER + r"(?![0-9.]+" + _VALUE_END
                         + r")(?P<v>[^\s\"'\\,;&()\[\]{}<>`$]{8,})" + _VALUE_END)


def _token(prefix: str) -> str:
    """``prefix`` not preceded by a word character, written so ``re`` can scan for it fast.

    A leading ``\\b`` or lookbehind would disable the literal-prefix search; checking the
    boundary after the prefix keeps it, which makes a miss about 20 times cheaper.
    """
    return rf"{prefix}(?<![A-Za-z0-9_]{prefix})"


# (kind, triggers, regex) in the order they are applied. Every match contains one of the
# triggers, lower-cased (they are looked up in the lower-cased text), so a text without any
# trigger skips the regex. A named group ``v``, if present, is the only part replaced.
SHAPES: list[tuple[str, tuple[str, ...], str]] = [
    (
        "private_key",
        ("private key",),
        rf"-----BEGIN{_PEM_NAME}-----{_PEM_BODY}(?:-----END{_PEM_NAME}-----)?",
    ),
    ("jwt", ("eyj",), _token("eyJ") + r"[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}(?:\.[A-Za-z0-9_-]+)?"),
    # starts at the literal "://" (fast to find); only the password between ":" and "@" goes
    ("url_password", ("://",), r"://[^\s/?#@:\"'<>\\]*:" + _NOT_PLACEHOLDER + r"(?P<v>[^\s/?#@\"'<>\\]+)@"),
    ("anthropic_key", ("sk-",), _token("sk-ant-") + r"[A-Za-z0-9_-]{20,}"),
    ("stripe_key", ("k_live_",), _token("[rs]k_live_") + r"[A-Za-z0-9]{16,}"),
    # random keys have digits; words joined by dashes ("sk-learn-…") do not
    (
        "openai_key",
        ("sk-",),
        _token("sk-") + r"(?=[A-Za-z0-9_-]*[0-9])(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}",
    ),
    ("google_api_key", ("aiza",), _token("AIza") + r"[A-Za-z0-9_-]{35}"),
    (
        "github_token",
        ("gh", "github_pat_"),
        _token("gh[pousr]_") + r"[A-Za-z0-9]{36,}|" + _token("github_pat_") + r"[A-Za-z0-9_]{22,}",
    ),
    ("gitlab_token", ("glpat-",), _token("glpat-") + r"[A-Za-z0-9_-]{20,}"),
    ("npm_token", ("npm_",), _token("npm_") + r"[A-Za-z0-9]{36}"),
    ("slack_token", ("xox",), _token("xox[abpr]-") + r"[A-Za-z0-9-]{10,}"),
    ("huggingface_token", ("hf_",), _token("hf_") + r"[A-Za-z0-9]{30,}"),
    ("aws_access_key_id", ("akia", "asia"), _token("A[KS]IA") + r"[A-Z0-9]{16}(?![A-Za-z0-9])"),
    (
        "aws_secret_access_key",
        ("secret",),
        r"(?i:aws_secret_access_key|aws_secret_key|secretaccesskey)[\"']?\s*[:=]\s*[\"']?"
        rf"(?P<v>{_B64}{{40}})(?!{_B64})",
    ),
    # After an explicit header any token counts; a bare "bearer <word>" needs a token-like word.
    (
        "bearer_token",
        ("authorization",),
        r"(?i:authorization[\"']?\s*[:=]\s*[\"']?bearer)\s+" + _NOT_PLACEHOLDER + r"(?P<v>[A-Za-z0-9._~+/-]+=*)",
    ),
    (
        "bearer_token",
        ("bearer",),
        r"(?i:\bbearer)\s+" + _NOT_PLACEHOLDER + r"(?P<v>(?=[^\s\"']*[0-9])[A-Za-z0-9._~+/-]{12,}=*)",
    ),
    (
        "basic_auth",
        ("authorization",),
        r"(?i:authorization[\"']?\s*[:=]\s*[\"']?basic)\s+(?P<v>[A-Za-z0-9+/]+=*)",
    ),
    ("netrc_password", ("login",), r"(?i:\blogin)\s+\S+\s+(?i:password)\s+" + _NOT_PLACEHOLDER + r"(?P<v>\S+)"),
    # a .netrc printed line by line: its "password VALUE" line alone (also after a JSON "\n")
    (
        "netrc_password",
        ("password",),
        r"(?im:(?:^|\\n)[ \t]*password[ \t]+)" + _NOT_PLACEHOLDER + r"(?P<v>[^\s\\]+)(?=[ \t]*(?:$|\\n))",
    ),
]
_SHAPES_BY_TRIGGER: dict[str, list[int]] = {}
for _index, (_, _triggers, _) in enumerate(SHAPES):
    for _trigger in _triggers:
        _SHAPES_BY_TRIGGER.setdefault(_trigger, []).append(_index)
TRIGGERS = tuple(_SHAPES_BY_TRIGGER.items())


def label_separators(lower: str) -> list[int]:
    """Positions of the ``:`` or ``=`` that follow a label (after a quote, a backslash, spaces),
    found with plain substring searches: the labelled values are looked for only there."""
    found = []
    size = len(lower)
    for stem in LABEL_STEMS:
        i = lower.find(stem)
        while i >= 0:
            j = i + len(stem)
            if stem == "pass":
                while j < size and lower[j].isalpha():
                    j += 1
                ok = lower[i:j] in _PASS_WORDS
            elif stem == "key":
                ok = lower[max(0, i - 9) : i].rstrip("_-").endswith(_KEY_OWNERS)
            else:
                ok = True
            if ok and j < size and lower[j] in _GAP_OR_SEPARATOR:
                gap = j
                while j < size and lower[j] in _GAP:
                    j += 1
                if j < size and lower[j] in ":=":
                    found.append(j)
                elif j > gap and lower[gap] == " " and _is_flag(lower, i):
                    found.append(gap)  # --password VALUE
            i = lower.find(stem, j)
    return sorted(set(found))


def _is_flag(lower: str, i: int) -> bool:
    """Whether the word around position ``i`` is a command-line flag (``--api-key``)."""
    while i > 0 and (lower[i - 1].isalnum() or lower[i - 1] in "_-"):
        i -= 1
    return lower.startswith("-", i)


PEM_BEGIN = re.compile(rf"-----BEGIN{_PEM_NAME}-----")
PEM_END = re.compile(rf"-----END{_PEM_NAME}-----")
PEM_LINE = re.compile(r"[A-Za-z0-9+/=\s]*|[A-Za-z-]+: .*")
COMPILED = [(kind, re.compile(pattern, re.DOTALL)) for kind, _, pattern in SHAPES]
_NAME_WORDS = re.compile(r"[^A-Z0-9]+")


def encoded_forms(value: str) -> tuple[str, ...]:
    """The forms a secret value takes once encoded, to be looked for as the value itself is:
    JSON-escaped (``json.dumps`` without its quotes, when it differs); percent-encoded, as a URL
    or a form body carries it (``curl "…?key=$KEY"`` with a key holding ``+`` or ``/``: Python's
    ``quote`` and ``quote_plus``, JavaScript's ``encodeURIComponent``, with upper- and lower-case
    hex); and base64, standard and URL-safe, at each of the three alignments a value can have in
    an encoded stream (``echo "$TOKEN" | base64``, a Kubernetes Secret's ``data:``). A base64
    form keeps only the characters that encode the value's bytes alone, so it holds a little less
    than the whole value; a form shorter than :data:`MIN_VALUE_LEN` is left out."""
    forms = {json.dumps(value)[1:-1], *_percent_forms(value), *base64_forms(value)}
    forms.discard(value)
    return tuple(sorted(forms))


def _percent_forms(value: str) -> set[str]:
    data = value.encode("utf-8", "surrogateescape")
    forms = {urllib.parse.quote(data, safe=""), urllib.parse.quote(data, safe="!'()*"),
             urllib.parse.quote_plus(data, safe="")}
    return forms | {_PERCENT.sub(lambda m: m.group().lower(), form) for form in forms}


_PERCENT = re.compile(r"%[0-9A-F]{2}")


def base64_forms(value: str) -> tuple[str, ...]:
    """The base64 forms of :func:`encoded_forms`; each starts on a 4-character boundary of the
    encoded stream and is a multiple of 4 characters long."""
    data = value.encode("utf-8", "surrogateescape")
    forms = set()
    for pad in range(3):  # the value starts 0, 1 or 2 bytes into a 3-byte group
        groups = (pad + len(data)) // 3
        encoded = base64.b64encode(b"\0" * pad + data)[4 if pad else 0: groups * 4].decode()
        if len(encoded) >= MIN_VALUE_LEN:
            forms.update((encoded, encoded.translate(_URLSAFE)))
    return tuple(sorted(forms))


_URLSAFE = str.maketrans("+/", "-_")


def is_secret_name(name: str) -> bool:
    """Whether an environment variable called ``name`` holds a secret by its name."""
    upper = name.upper()
    if upper in ("PWD", "OLDPWD"):
        return False
    if any(part in upper for part in SECRET_NAME_PARTS):
        return True
    return any(word in SECRET_NAME_WORDS for word in _NAME_WORDS.split(upper))


