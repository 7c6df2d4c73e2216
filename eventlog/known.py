"""A redactor's known values (an environment's secrets), with their encoded forms and the chunks
of their base64 forms (:mod:`~agtrace.eventlog.wrapped`), found in a text in one pass.

They are built once per process for a set of secrets (:func:`known_values`): an import makes a
redactor per source, and hundreds of long secrets give tens of thousands of chunks.
"""

from __future__ import annotations

import functools

from .multisearch import automaton
from .screen import Screen
from .secret import MIN_VALUE_LEN, base64_forms, encoded_forms
from .wrapped import WrappedForms


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
        self._patterns = [v for v, _ in self.values] + list(self.wrapped.chunks)
        """What :meth:`held` and :meth:`screen` look for: the values, then the chunks."""
        self._finder = automaton(self._patterns, text=True)
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
            self._screen = Screen([p.encode("utf-8", "surrogateescape") for p in self._patterns])
        return self._screen


@functools.lru_cache(maxsize=8)
def known_values(secrets: tuple[tuple[str, str], ...]) -> KnownValues:
    """The :class:`KnownValues` of ``secrets``, shared by every redactor of this process that has
    the same ones (immutable)."""
    return KnownValues(secrets)
