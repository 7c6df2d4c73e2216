"""Secrets never reach the store: replace them with ``[REDACTED:<kind>]`` before anything is kept.

A :class:`Redactor` knows two sorts of secret:

- **Known values**: the values of environment variables whose names contain ``KEY``, ``TOKEN``,
  ``SECRET``, ``PASSWORD`` or ``CREDENTIAL`` (case-insensitive), if at least
  :data:`MIN_ENV_VALUE_LEN` characters long, so ``KEY=1`` does not redact every ``1``. Longer
  values win over values they contain. Kind ``env:<NAME>``.
- **Shapes** (:data:`SHAPES`): provider API keys, AWS key ids and labelled AWS secret keys,
  bearer and basic credentials, and PEM private key blocks. For a labelled secret
  (``aws_secret_access_key = …``, ``Authorization: Bearer …``) only the value is replaced.

Contract: known values are replaced first (longest first), then each shape in :data:`SHAPES`
order; a placeholder never matches a later shape, so each secret is replaced and counted once,
and the result contains no secret of the input that lay within one call (for PEM blocks fed line
by line, see :meth:`Redactor.redact_line`). Ordinary text (hex digests, git SHAs, UUIDs, base64 of
ordinary data, prose) is left alone. Text with nothing secret-looking costs one substring check
per trigger and known value: about a microsecond for a typical line. ``count`` is the number of
secrets replaced so far, over every call.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

MIN_ENV_VALUE_LEN = 8
SECRET_NAME_PARTS = ("KEY", "TOKEN", "SECRET", "PASSWORD", "CREDENTIAL")

_B64 = r"[A-Za-z0-9+/]"


def _token(prefix: str) -> str:
    """``prefix`` not preceded by a word character, written so ``re`` can scan for it fast.

    A leading ``\b`` or lookbehind would disable the literal-prefix search; checking the
    boundary after the prefix keeps it, which makes a miss about 20 times cheaper.
    """
    return rf"{prefix}(?<![A-Za-z0-9_]{prefix})"


# (kind, triggers, regex) in the order they are applied. Every match contains one of the
# triggers (plain substrings; case variants listed where keys or labels vary in case), so text
# without any trigger skips the regex. A named group ``v``, if present, is the only part replaced.
SHAPES: list[tuple[str, tuple[str, ...], str]] = [
    (
        "private_key",
        ("PRIVATE KEY",),
        r"-----BEGIN[A-Z ]{0,30} PRIVATE KEY-----(?:.*?-----END[A-Z ]{0,30} PRIVATE KEY-----|.*)",
    ),
    ("anthropic_key", ("sk-",), _token("sk-ant-") + r"[A-Za-z0-9_-]{20,}"),
    ("stripe_key", ("k_live_",), _token("[rs]k_live_") + r"[A-Za-z0-9]{16,}"),
    # random keys have digits; words joined by dashes ("sk-learn-…") do not
    (
        "openai_key",
        ("sk-",),
        _token("sk-") + r"(?=[A-Za-z0-9_-]*[0-9])(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}",
    ),
    ("google_api_key", ("AIza",), _token("AIza") + r"[A-Za-z0-9_-]{35}"),
    (
        "github_token",
        ("ghp_", "gho_", "ghs_", "ghu_", "ghr_", "github_pat_"),
        _token("gh[pousr]_") + r"[A-Za-z0-9]{36,}|" + _token("github_pat_") + r"[A-Za-z0-9_]{22,}",
    ),
    ("slack_token", ("xox",), _token("xox[abpr]-") + r"[A-Za-z0-9-]{10,}"),
    ("huggingface_token", ("hf_",), _token("hf_") + r"[A-Za-z0-9]{30,}"),
    ("aws_access_key_id", ("AKIA", "ASIA"), _token("A[KS]IA") + r"[A-Z0-9]{16}(?![A-Za-z0-9])"),
    (
        "aws_secret_access_key",
        ("ecret", "ECRET"),
        r"(?i:aws_secret_access_key|aws_secret_key|secretaccesskey)[\"']?\s*[:=]\s*[\"']?"
        rf"(?P<v>{_B64}{{40}})(?!{_B64})",
    ),
    # After an explicit header any token counts; a bare "bearer <word>" needs a token-like word.
    (
        "bearer_token",
        ("uthorization", "UTHORIZATION"),
        r"(?i:authorization[\"']?\s*[:=]\s*[\"']?bearer)\s+(?P<v>[A-Za-z0-9._~+/-]+=*)",
    ),
    (
        "bearer_token",
        ("earer", "EARER"),
        r"(?i:\bbearer)\s+(?P<v>(?=[^\s\"']*[0-9])[A-Za-z0-9._~+/-]{12,}=*)",
    ),
    (
        "basic_auth",
        ("uthorization", "UTHORIZATION"),
        r"(?i:authorization[\"']?\s*[:=]\s*[\"']?basic)\s+(?P<v>[A-Za-z0-9+/]+=*)",
    ),
]
_SHAPES_BY_TRIGGER: dict[str, list[int]] = {}
for _index, (_, _triggers, _) in enumerate(SHAPES):
    for _trigger in _triggers:
        _SHAPES_BY_TRIGGER.setdefault(_trigger, []).append(_index)
_TRIGGERS = tuple(_SHAPES_BY_TRIGGER.items())
_PEM_BEGIN = re.compile(r"-----BEGIN[A-Z ]{0,30} PRIVATE KEY-----")
_PEM_END = re.compile(r"-----END[A-Z ]{0,30} PRIVATE KEY-----")
_PEM_BODY = re.compile(r"[A-Za-z0-9+/=\s]*|[A-Za-z-]+: .*")


def _replacer(kind: str, regex: re.Pattern[str]) -> str | Callable[[re.Match[str]], str]:
    placeholder = f"[REDACTED:{kind}]"
    if "v" not in regex.groupindex:
        return placeholder

    def replace(match: re.Match[str]) -> str:
        start, end = match.span("v")
        text, offset = match.string, match.start()
        return text[offset:start] + placeholder + text[end : match.end()]

    return replace


_COMPILED = [
    (regex, _replacer(kind, regex))
    for kind, _, pattern in SHAPES
    for regex in [re.compile(pattern, re.DOTALL)]
]


def is_secret_name(name: str) -> bool:
    """Whether an environment variable called ``name`` holds a secret by its name."""
    upper = name.upper()
    return any(part in upper for part in SECRET_NAME_PARTS)


class Redactor:
    """Replaces secrets in text with ``[REDACTED:<kind>]`` and counts them.

    Not thread-safe (``count`` and the PEM state of :meth:`redact_line` are plain attributes).
    """

    def __init__(self, secrets: Mapping[str, str] | None = None) -> None:
        """Redact :data:`SHAPES` and the given known values (``name -> value``).

        Values shorter than :data:`MIN_ENV_VALUE_LEN` are ignored; when two names share a value
        the first name is reported.
        """
        self.count = 0
        names: dict[str, str] = {}
        for name, value in (secrets or {}).items():
            if len(value) >= MIN_ENV_VALUE_LEN:
                names.setdefault(value, name)
        self._values = [
            (value, f"[REDACTED:env:{names[value]}]")
            for value in sorted(names, key=len, reverse=True)
        ]
        self._pem_open = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Redactor:
        """A redactor for the values of ``environ``'s secret-named variables (see module doc)."""
        return cls({name: value for name, value in environ.items() if is_secret_name(name)})

    def redact(self, text: str) -> tuple[str, int]:
        """Return ``text`` with its secrets replaced and how many were replaced.

        Stateless apart from ``count``. A PEM ``BEGIN … PRIVATE KEY`` marker without its END in
        the same text is redacted to the end of the text.
        """
        hits = None
        for trigger, shapes in _TRIGGERS:
            if trigger in text:
                hits = shapes if hits is None else hits + shapes
        total = 0
        for value, placeholder in self._values:
            if value in text:
                total += text.count(value)
                text = text.replace(value, placeholder)
        if hits is not None:
            for index in sorted(set(hits)):
                regex, replacement = _COMPILED[index]
                text, n = regex.subn(replacement, text)
                total += n
        self.count += total
        return text, total

    def redact_line(self, line: str) -> tuple[str, int]:
        """Like :meth:`redact`, for consecutive lines of one stream (PEM blocks span lines).

        After a line with an unterminated PEM private key marker, following lines made only of
        base64 (or ``Header: value`` lines) become ``[REDACTED:private_key]`` up to and including
        the END marker, without adding to the count (the block was counted once at BEGIN). Any
        other line ends that state and is redacted normally.
        """
        if self._pem_open:
            end = _PEM_END.search(line)
            if end:
                self._pem_open = False
                rest, n = self.redact(line[end.end() :])
                return "[REDACTED:private_key]" + rest, n
            if _PEM_BODY.fullmatch(line):
                return "[REDACTED:private_key]", 0
            self._pem_open = False
        result, n = self.redact(line)
        begin = _PEM_BEGIN.search(line) if n else None
        if begin and not _PEM_END.search(line, begin.end()):
            self._pem_open = True
        return result, n

    def redact_obj(self, obj: Any) -> Any:
        """Return a copy of ``obj`` (nested dicts, lists, tuples, strings) with strings redacted.

        Dict keys are redacted as well as values; other types are returned as they are. Adds
        the number of redactions to ``count``.
        """
        if isinstance(obj, str):
            return self.redact(obj)[0]
        if isinstance(obj, dict):
            return {self.redact_obj(k): self.redact_obj(v) for k, v in obj.items()}
        if isinstance(obj, list | tuple):
            return type(obj)(self.redact_obj(v) for v in obj)
        return obj
