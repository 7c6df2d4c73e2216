"""A secret's base64 form broken into pieces: by line wrapping (GNU ``base64`` wraps at 76
columns, OpenSSL and PEM at 64, so ``echo "$ANTHROPIC_API_KEY" | base64`` prints a 108-character
key over three lines), or by an output cut short.

A base64 form (:func:`~agtrace.eventlog.secret.base64_forms`) starts on a 4-character boundary
of the encoded stream, and a wrap at a width that is a multiple of 4 falls on such a boundary
too; so every piece of a wrapped form that is :data:`CHUNK` characters or longer holds one of
the form's *chunks*: its :data:`CHUNK` characters from each 4-character boundary. The chunks are
found in one pass; each run of them is grown by hand to the characters of the form on either
side and redacted. A piece shorter than a chunk (at most 7 characters, 5 bytes of the value, at
a form's first or last line) is not found; nor is base64 that wraps at a width that is not a
multiple of 4.

A chunk holds 6 bytes of the value: a value that shares 6 aligned bytes with other base64-encoded
text (a low-entropy password, ``password123``) has those characters redacted in it too.
"""

from __future__ import annotations

from collections.abc import Mapping

try:
    from ahocorasick_rs import AhoCorasick
except ImportError:  # pragma: no cover - the chunks are then looked for one by one
    AhoCorasick = None

CHUNK = 8
"""Characters of a chunk (6 bytes of the value: one in 2**48 for a random 8 characters)."""


def chunks(form: str) -> list[tuple[str, int]]:
    """The chunks of ``form`` (a base64 form), each with its offset in the form."""
    return [(form[off : off + CHUNK], off) for off in range(0, len(form) - CHUNK + 1, 4)]


class WrappedForms:
    """Redacts the pieces of ``forms`` (base64 form → placeholder) that a text holds."""

    def __init__(self, forms: Mapping[str, str]):
        self._placeholders = dict(forms)
        self._where: dict[str, list[tuple[str, int]]] = {}
        for form in self._placeholders:
            for chunk, off in chunks(form):
                self._where.setdefault(chunk, []).append((form, off))
        self.chunks = tuple(self._where)
        self._finder = AhoCorasick(list(self.chunks)) if self.chunks and AhoCorasick else None

    def redact(self, text: str) -> tuple[str, int]:
        """``text`` with each piece of a form replaced by the form's placeholder, and how many."""
        if not self.chunks or len(text) < CHUNK:
            return text, 0
        hits = self._hits(text)
        if not hits:
            return text, 0
        runs: dict[tuple[str, int], list[list[int]]] = {}  # (form, where it would start) -> spans
        for k, start in hits:
            for form, off in self._where[self.chunks[k]]:
                runs.setdefault((form, start - off), []).append([start, start + CHUNK])
        spans = []
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
        spans.sort()
        out, done, n = [], 0, 0
        for a, b, placeholder in spans:
            if a < done:  # overlaps the last one: the same redaction
                done = max(done, b)
                continue
            out.append(text[done:a] + placeholder)
            done = b
            n += 1
        return "".join(out) + text[done:], n

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
