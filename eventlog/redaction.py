"""Secrets never reach the store: they are replaced by ``[REDACTED:<kind>]`` before anything is kept.

One :class:`Redactor` serves every way into the store: a capture (``agtrace run``, the
``Recorder``), ``agtrace new``/``append``/``close``, and every importer (through the import
framework). It knows three sorts of secret:

- **Known values**: the values of environment variables with secret-looking names
  (:func:`is_secret_name`: ``KEY``, ``TOKEN``, ``SECRET``, ``PASSW``…), at least
  :data:`MIN_VALUE_LEN` characters long so that ``KEY=1`` does not redact every ``1``. Kind
  ``env:<NAME>``. They are redacted wherever they reappear: output, argv, task, titles, files
  printed with ``cat``.
- **Shapes** (:data:`SHAPES`): PEM private key blocks (BEGIN line, body and END, also inside a
  JSON string with ``\\n`` escapes), JWTs, passwords in URLs (``postgres://u:pw@h``), provider API
  keys and tokens, AWS key ids and labelled AWS secret keys, bearer and basic credentials,
  ``.netrc`` passwords, and values labelled as secrets (``password=…``, ``"client_secret": "…"``,
  ``_authToken=…``; :data:`LABELLED_KIND`, found at the separators after a label rather than by
  a regex over the whole text). For a labelled secret only the value is replaced.
- **Learned values**: every secret a shape found (of :data:`MIN_VALUE_LEN` characters or more) is
  remembered by this redactor and redacted like a known value from then on, so a password seen
  once as ``password=…`` is also redacted when it later appears alone; and a text cut with ``…``
  (a part title) whose end is the start of a known or learned value has that end redacted too.

Contract: known and learned values are replaced first (longest first), then each shape in
:data:`SHAPES` order; a placeholder never matches a later shape, so each secret is replaced and
counted once, and redacting a redacted text again changes nothing. Ordinary text (hex digests,
git SHAs, UUIDs, base64 of ordinary data, token counts, prose) is left alone. Text with nothing
secret-looking costs one lower-casing and one substring check per trigger and value. ``count``
is the number of secrets replaced so far, over every call. Not thread-safe.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any

import msgspec

from .events import Event, RawRecorded

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
_LABEL_STEMS = ("pass", "secret", "key", "token")
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
_QUOTED_VALUE = re.compile(r"[:= ][ \t]*(?P<q>\\?[\"'])" + _NOT_PLACEHOLDER + r"(?!\$\{)(?P<v>[^\"'\\\n]{8,})(?P=q)")
_BARE_VALUE = re.compile(r"[:= ][ \t]*" + _NOT_PLACEHOLDER + r"(?![0-9.]+" + _VALUE_END
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
_TRIGGERS = tuple(_SHAPES_BY_TRIGGER.items())


def _separators(lower: str) -> list[int]:
    """Positions of the ``:`` or ``=`` that follow a label (after a quote, a backslash, spaces),
    found with plain substring searches: the labelled values are looked for only there."""
    found = []
    size = len(lower)
    for stem in _LABEL_STEMS:
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


_PEM_BEGIN = re.compile(rf"-----BEGIN{_PEM_NAME}-----")
_PEM_END = re.compile(rf"-----END{_PEM_NAME}-----")
_PEM_LINE = re.compile(r"[A-Za-z0-9+/=\s]*|[A-Za-z-]+: .*")
_COMPILED = [(kind, re.compile(pattern, re.DOTALL)) for kind, _, pattern in SHAPES]
_NAME_WORDS = re.compile(r"[^A-Z0-9]+")


def is_secret_name(name: str) -> bool:
    """Whether an environment variable called ``name`` holds a secret by its name."""
    upper = name.upper()
    if upper in ("PWD", "OLDPWD"):
        return False
    if any(part in upper for part in SECRET_NAME_PARTS):
        return True
    return any(word in SECRET_NAME_WORDS for word in _NAME_WORDS.split(upper))


class Redactor:
    """Replaces secrets with ``[REDACTED:<kind>]`` and counts them (see the module docstring)."""

    def __init__(self, secrets: Mapping[str, str] | None = None) -> None:
        """Redact :data:`SHAPES` and the given known values (``name -> value``).

        Values shorter than :data:`MIN_VALUE_LEN` are ignored; when two names share a value the
        first name is reported.
        """
        self.count = 0
        self._known: dict[str, str] = {}
        for name, value in (secrets or {}).items():
            if len(value) >= MIN_VALUE_LEN and value not in self._known:
                self._known[value] = f"[REDACTED:env:{name}]"
                escaped = json.dumps(value)[1:-1]  # as it appears inside a JSON line
                if escaped != value:
                    self._known.setdefault(escaped, f"[REDACTED:env:{name}]")
        self._learned: dict[str, str] = {}
        self._values: list[tuple[str, str]] = []
        self._refresh()
        self._pem_open: dict[str, bool] = {}

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Redactor:
        """A redactor for the values of ``environ``'s secret-named variables."""
        return cls({name: value for name, value in environ.items() if is_secret_name(name)})

    def _refresh(self) -> None:
        values = {**self._learned, **self._known}
        self._values = sorted(values.items(), key=lambda kv: len(kv[0]), reverse=True)

    def _learn(self, kind: str) -> Callable[[re.Match[str]], str]:
        placeholder = f"[REDACTED:{kind}]"

        def replace(match: re.Match[str]) -> str:
            has_v = "v" in match.re.groupindex
            secret = match.group("v") if has_v else match.group()
            if (len(secret) >= MIN_VALUE_LEN and kind != "private_key" and secret not in self._known
                    and secret not in self._learned and len(self._learned) < MAX_LEARNED):
                self._learned[secret] = placeholder
                self._refresh()
            if not has_v:
                return placeholder
            start, end = match.span("v")
            offset = match.start()
            return match.string[offset:start] + placeholder + match.string[end : match.end()]

        return replace

    def redact(self, text: str) -> tuple[str, int]:
        """Return ``text`` with its secrets replaced and how many were replaced.

        A PEM ``BEGIN … PRIVATE KEY`` marker without its END in the same text is redacted with
        the key material that follows it (base64 lines, armour headers).
        """
        if not text:
            return text, 0
        total = 0
        for value, placeholder in self._values:
            if value in text:
                total += text.count(value)
                text = text.replace(value, placeholder)
        lower = text.lower()
        hits = None
        for trigger, shapes in _TRIGGERS:
            if trigger in lower:
                hits = shapes if hits is None else hits + shapes
        changed = False
        if hits is not None:
            for index in sorted(set(hits)):
                kind, regex = _COMPILED[index]
                text, n = regex.subn(self._learn(kind), text)
                total += n
                changed = changed or n > 0
        if any(stem in lower for stem in _LABEL_STEMS):
            text, n = self._labelled_values(text, text.lower() if changed else lower)
            total += n
        if text.endswith("…"):
            text, n = self._cut_tail(text)
            total += n
        self.count += total
        return text, total

    def _labelled_values(self, text: str, lower: str) -> tuple[str, int]:
        """Redact the values of labelled secrets (:data:`LABELLED_KIND`); ``lower`` is ``text``
        lower-cased."""
        seps = _separators(lower)
        if not seps:
            return text, 0
        learn = self._learn(LABELLED_KIND)
        out, done, n = [], 0, 0
        for pos in seps:
            if pos < done:
                continue
            match = _QUOTED_VALUE.match(text, pos) or _BARE_VALUE.match(text, pos)
            if match is None:
                continue
            replaced = learn(match)
            out.append(text[done : match.start()] + replaced)
            done = match.end()
            n += 1
        return ("".join(out) + text[done:], n) if n else (text, 0)

    def _flag_values(self, items: list) -> None:
        """In an argv (``["--password", "VALUE"]``), the value after a secret-named flag."""
        for k in range(len(items) - 1):
            flag, value = items[k], items[k + 1]
            if (isinstance(flag, str) and isinstance(value, str) and flag.startswith("-") and "=" not in flag
                    and len(value) >= MIN_VALUE_LEN and not value.startswith(("-", "[REDACTED"))
                    and _separators(flag.lower() + " ")):
                kind = f"[REDACTED:{LABELLED_KIND}]"
                if value not in self._known and len(self._learned) < MAX_LEARNED:
                    self._learned.setdefault(value, kind)
                    self._refresh()
                items[k + 1] = kind
                self.count += 1

    def _cut_tail(self, text: str) -> tuple[str, int]:
        """A text cut with ``…`` whose end is the start of a known or learned value."""
        body = text[:-1]
        for value, placeholder in self._values:
            for k in range(min(len(value) - 1, len(body)), MIN_TAIL - 1, -1):
                if body.endswith(value[:k]):
                    return body[:-k] + placeholder + "…", 1
        return text, 0

    def redact_line(self, line: str, stream: str = "") -> tuple[str, int]:
        """Like :meth:`redact`, for consecutive lines of one stream (PEM blocks span lines).

        After a line with an unterminated PEM private key marker, following lines of ``stream``
        made only of base64 (or ``Header: value`` lines) become ``[REDACTED:private_key]`` up to
        and including the END marker, without adding to the count (the block was counted once
        at BEGIN). Any other line ends that state and is redacted normally.
        """
        if self._pem_open.get(stream):
            end = _PEM_END.search(line)
            if end:
                self._pem_open[stream] = False
                rest, n = self.redact(line[end.end() :])
                return "[REDACTED:private_key]" + rest, n
            if _PEM_LINE.fullmatch(line):
                return "[REDACTED:private_key]", 0
            self._pem_open[stream] = False
        result, n = self.redact(line)
        begin = _PEM_BEGIN.search(line) if n else None
        if begin and not _PEM_END.search(line, begin.end()):
            self._pem_open[stream] = True
        return result, n

    def redact_bytes(self, data: bytes) -> tuple[bytes, int]:
        """:meth:`redact` of bytes that need not be UTF-8; bytes outside secrets are kept exactly."""
        text = data.decode("utf-8", "surrogateescape")
        result, n = self.redact(text)
        return (result.encode("utf-8", "surrogateescape"), n) if n else (data, 0)

    def redact_obj(self, obj: Any) -> Any:
        """A copy of ``obj`` (nested dicts, lists, tuples, Structs, strings, bytes) with every
        string redacted, dict keys included; other values are returned as they are. Adds the
        number of redactions to ``count``."""
        if isinstance(obj, str):
            return self.redact(obj)[0]
        if isinstance(obj, dict):
            return {self.redact_obj(k): self.redact_obj(v) for k, v in obj.items()}
        if isinstance(obj, list | tuple):
            out = [self.redact_obj(v) for v in obj]
            self._flag_values(out)
            return type(obj)(out)
        if isinstance(obj, bytes):
            return self.redact_bytes(obj)[0]
        if isinstance(obj, msgspec.Struct):
            changes = {}
            for name in obj.__struct_fields__:
                value = getattr(obj, name)
                if isinstance(value, str | bytes | list | dict | tuple | msgspec.Struct) and value:
                    before = self.count
                    new = self.redact_obj(value)
                    if self.count != before:
                        changes[name] = new
            return msgspec.structs.replace(obj, **changes) if changes else obj
        return obj

    def redact_json(self, line: bytes) -> tuple[bytes, int]:
        """One event as a JSON text (``agtrace append``'s input), redacted before it is decoded:
        one pass over the line rather than one per field (known values are also looked for in
        their JSON escaping). A line with ``\\u`` escapes or a ``…`` cut, which may hide a secret
        only its decoded strings show, is also redacted string by string (and re-encoded). A
        line that is not JSON is returned redacted as text, for the decoder to refuse."""
        text = line.decode("utf-8", "surrogateescape")
        redacted, n = self.redact(text)
        if "\\u" in redacted or "…" in redacted:
            try:
                obj = json.loads(redacted)
            except ValueError:
                obj = None
            if obj is not None:
                before = self.count
                obj = self.redact_obj(obj)
                if self.count != before:
                    n += self.count - before
                    redacted = json.dumps(obj, ensure_ascii=False)
        return (redacted.encode("utf-8", "surrogateescape"), n) if n else (line, 0)

    def redact_event(self, event: Event) -> tuple[Event, int]:
        """``event`` with secrets replaced in every text, nested value and bytes field, and how
        many were replaced. A ``raw_recorded`` event that had secrets records how many in its
        ``redactions`` field (added to what an earlier redaction of its line recorded), so a raw
        record is kept verbatim except for its secrets, and says so."""
        before = self.count
        redacted = self.redact_obj(event)
        n = self.count - before
        if n and isinstance(redacted, RawRecorded):
            redacted = msgspec.structs.replace(redacted, redactions=redacted.redactions + n)
        return redacted, n
