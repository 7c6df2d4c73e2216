"""A secret's base64 form broken into pieces: by line wrapping (GNU ``base64`` wraps at 76
columns, OpenSSL and PEM at 64, so ``echo "$ANTHROPIC_API_KEY" | base64`` prints a 108-character
key over three lines), or by an output cut short.

A base64 form (:func:`~agtrace.eventlog.secret.base64_forms`) starts on a 4-character boundary
of the encoded stream, and a wrap at a width that is a multiple of 4 falls on such a boundary
too; so every piece of a wrapped form that is :data:`CHUNK` characters or longer holds one of
the form's *chunks*: its :data:`CHUNK` characters from each 4-character boundary. The chunks are
found in one pass; each run of them is grown by hand to the characters of the form on either
side, and across a line break (also one escaped in a JSON string) to the piece the next or the
previous line holds, however short; each is redacted, and one form over several lines counts
as one redaction. A stream redacted line by line (``Redactor.redact_line``) carries the forms a
line ends in the middle of to the next line, so only a piece shorter than a chunk at the end of
the line where a form begins is not found (at most 7 characters, 5 bytes of the value); nor is
base64 that wraps at a width that is not a multiple of 4.

A chunk holds 6 bytes of the value: a value that shares 6 aligned bytes with other base64-encoded
text (a low-entropy password, ``password123``) has those characters redacted in it too.
"""

from __future__ import annotations

from collections.abc import Mapping

from .multisearch import automaton

CHUNK = 8
"""Characters of a chunk (6 bytes of the value: one in 2**48 for a random 8 characters)."""
_SAME_CHUNK = 4
"""Offsets kept for a chunk a form holds more than once (a value that repeats itself: ``x`` × 400
would give a hundred anchors for each hit); the runs of the first few grow over the rest."""


def chunks(form: str) -> list[tuple[str, int]]:
    """The chunks of ``form`` (a base64 form), each with its offset in the form."""
    return [(form[off : off + CHUNK], off) for off in range(0, len(form) - CHUNK + 1, 4)]


class WrappedForms:
    """Redacts the pieces of ``forms`` (base64 form → placeholder) that a text holds."""

    def __init__(self, forms: Mapping[str, str]):
        self._placeholders = dict(forms)
        self._where: dict[str, list[tuple[str, int]]] = {}
        for form in self._placeholders:
            seen: dict[str, int] = {}
            for chunk, off in chunks(form):
                seen[chunk] = seen.get(chunk, 0) + 1
                if seen[chunk] <= _SAME_CHUNK:
                    self._where.setdefault(chunk, []).append((form, off))
        self.chunks = tuple(self._where)
        self._finder = automaton(list(self.chunks), text=True)

    def redact_open(self, text: str) -> tuple[str, int, list[tuple[str, int, str]]]:
        """``text`` with each piece of a form replaced by the form's placeholder, how many, and
        the forms that ``text`` may end in the middle of: (form, the offset in it where the next
        line of a stream would go on, placeholder); more than one where a value repeats itself."""
        if not self.chunks or len(text) < CHUNK:
            return text, 0, []
        hits = self._hits(text)
        if not hits:
            return text, 0, []
        runs: dict[tuple[str, int], list[list[int]]] = {}  # (form, where it would start) -> spans
        for k, start in hits:
            for form, off in self._where[self.chunks[k]]:
                runs.setdefault((form, start - off), []).append([start, start + CHUNK])
        spans, tails = [], []
        for (form, anchor), found in runs.items():
            found.sort()
            merged = [found[0]]
            for span in found[1:]:
                if span[0] <= merged[-1][1]:
                    merged[-1][1] = max(merged[-1][1], span[1])
                else:
                    merged.append(span)
            for a, b in merged:  # grow over the form's characters a chunk did not cover
                while a > 0 and a - anchor > 0 and text[a - 1] == form[a - anchor - 1]:
                    a -= 1
                while b < len(text) and b - anchor < len(form) and text[b] == form[b - anchor]:
                    b += 1
                spans.append((a, b, self._placeholders[form]))
                spans += _across_breaks(text, form, a - anchor, a, b - anchor, b, self._placeholders[form])
                if b >= len(text.rstrip("\r")) and b - anchor < len(form):
                    tails.append((form, b - anchor, self._placeholders[form]))
        spans.sort()
        out, done, n = [], 0, 0
        for a, b, placeholder in spans:
            if a < done:  # overlaps the last one: the same redaction
                done = max(done, b)
                continue
            if not (out and text[done:a] in _BREAKS and out[-1].endswith(placeholder)):
                n += 1  # a form's next line is the same secret
            out.append(text[done:a] + placeholder)
            done = b
        return "".join(out) + text[done:], n, tails

    def _hits(self, text: str) -> list[tuple[int, int]]:
        if self._finder is not None:
            try:
                return [(k, start) for k, start, _ in self._finder.find_matches_as_indexes(text, overlapping=True)]
            except UnicodeEncodeError:  # surrogate-escaped bytes: one by one
                pass
        hits = []
        for k, chunk in enumerate(self.chunks):
            pos = text.find(chunk)
            while pos >= 0:
                hits.append((k, pos))
                pos = text.find(chunk, pos + 1)
        return hits


_BREAKS = ("\r\n", "\n", "\\r\\n", "\\n")
"""A line break, or one escaped in a JSON string (``append`` redacts the JSON text)."""


def _across_breaks(text: str, form: str, fa: int, a: int, fb: int, b: int, placeholder: str) -> list:
    """The spans of ``form`` just across a line break from a piece of it (``text[a:b]``, the
    form's ``form[fa:fb]``): the start of the next line that goes on with the form, and the end
    of the previous line that leads to it, however short (a piece of under a chunk)."""
    spans = []
    while fb < len(form) and (c := _after_break(text, b)) >= 0:
        m = 0
        while c + m < len(text) and fb + m < len(form) and text[c + m] == form[fb + m]:
            m += 1
        if not m:
            break
        spans.append((c, c + m, placeholder))
        b, fb = c + m, fb + m
    while fa > 0 and (e := _before_break(text, a)) >= 0:
        m = 0
        while e - m > 0 and fa - m > 0 and text[e - m - 1] == form[fa - m - 1]:
            m += 1
        if not m:
            break
        spans.append((e - m, e, placeholder))
        a, fa = e - m, fa - m
    return spans


def _after_break(text: str, at: int) -> int:
    """Where the line after a break at ``at`` starts, or -1."""
    for brk in _BREAKS:
        if text.startswith(brk, at):
            return at + len(brk)
    return -1


def _before_break(text: str, at: int) -> int:
    """Where a break that ends at ``at`` starts, or -1."""
    for brk in _BREAKS:
        if at >= len(brk) and text.startswith(brk, at - len(brk)):
            return at - len(brk)
    return -1
