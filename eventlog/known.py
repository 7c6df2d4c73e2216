"""A redactor's known values (an environment's secrets), with their encoded forms and the chunks
of their base64 forms (:mod:`~agtrace.eventlog.wrapped`), found in a text in one pass.

They are built once per process for a set of secrets (:func:`known_values`): an import makes a
redactor per source, and hundreds of long secrets give tens of thousands of chunks.
"""

from __future__ import annotations

import functools

from .secret import MIN_VALUE_LEN, base64_forms, encoded_forms
from .wrapped import WrappedForms

try:
    from ahocorasick_rs import AhoCorasick, BytesAhoCorasick, Implementation
except ImportError:  # pragma: no cover - the values are then looked for one by one
    AhoCorasick = BytesAhoCorasick = Implementation = None

DFA_MAX_PATTERNS = 4000
"""Up to this many patterns an automaton is a DFA: as fast with hundreds of patterns as with
a few, where the default one slows by half, but ~2 KB of memory a pattern (8 MiB here)."""


def automaton(patterns: list, *, text: bool = False, dfa: bool = True):
    """An Aho-Corasick automaton over ``patterns`` (``str`` ones when ``text``, else ``bytes``):
    a DFA up to :data:`DFA_MAX_PATTERNS` (unless not ``dfa``: one rebuilt often, which a DFA
    makes slower to build), the default beyond; None without patterns or ``ahocorasick_rs``."""
    if not patterns or AhoCorasick is None:
        return None
    kind = AhoCorasick if text else BytesAhoCorasick
    if dfa and len(patterns) <= DFA_MAX_PATTERNS:
        return kind(patterns, implementation=Implementation.DFA)
    return kind(patterns)


class KnownValues:
    """``secrets`` (name, value pairs; the first name of a shared value is reported) as the
    values a redactor replaces: each value of :data:`MIN_VALUE_LEN` characters or more and its
    :func:`~agtrace.eventlog.secret.encoded_forms`, as ``[REDACTED:env:<NAME>]``."""

    def __init__(self, secrets: tuple[tuple[str, str], ...]):
        placeholders: dict[str, str] = {}
        broken: dict[str, str] = {}
        for name, value in secrets:
            if len(value) >= MIN_VALUE_LEN and value not in placeholders:
                placeholder = f"[REDACTED:env:{name}]"
                placeholders[value] = placeholder
                for form in encoded_forms(value):  # inside a JSON line, base64-encoded
                    placeholders.setdefault(form, placeholder)
                for form in base64_forms(value):
                    broken.setdefault(form, placeholders[form])
        self.placeholders = placeholders
        """Value or form -> placeholder."""
        self.values = sorted(placeholders.items(), key=lambda kv: len(kv[0]), reverse=True)
        """(value, placeholder), longest first."""
        self.wrapped = WrappedForms(broken)
        """The base64 forms broken over lines or cut short."""
        self._finder = automaton([v for v, _ in self.values] + list(self.wrapped.chunks), text=True)
        self._screen = None

    def held(self, text: str) -> tuple[list[tuple[str, str]], bool]:
        """The values ``text`` may hold (longest first), and whether it may hold a piece of a
        base64 form."""
        if self._finder is None:
            return self.values, bool(self.wrapped.chunks)
        try:
            hits = self._finder.find_matches_as_indexes(text, overlapping=True)
        except UnicodeEncodeError:  # surrogate-escaped bytes (not UTF-8): every value, one by one
            return self.values, bool(self.wrapped.chunks)
        if not hits:
            return [], False
        count = len(self.values)
        held = sorted({k for k, _, _ in hits if k < count})
        return [self.values[k] for k in held], any(k >= count for k, _, _ in hits)

    def screen(self):
        """The :class:`~agtrace.eventlog.screen.Screen` of these values and chunks (built on first
        use; a race only builds it twice)."""
        if self._screen is None:
            from .screen import Screen

            patterns = [v for v, _ in self.values] + list(self.wrapped.chunks)
            self._screen = Screen([p.encode("utf-8", "surrogateescape") for p in patterns])
        return self._screen


@functools.lru_cache(maxsize=8)
def known_values(secrets: tuple[tuple[str, str], ...]) -> KnownValues:
    """The :class:`KnownValues` of ``secrets``, shared by every redactor of this process that has
    the same ones (immutable)."""
    return KnownValues(secrets)
