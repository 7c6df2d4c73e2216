"""The redaction screen: which lines of a block of JSON lines may hold a secret at all.

:meth:`~agtrace.eventlog.Redactor.redact_json_lines` redacts a block of lines (``agtrace
append`` reads them in blocks) by screening the whole block first and handing only the lines the
screen names to :meth:`~agtrace.eventlog.Redactor.redact_json`; every other line is kept as it
is. The screen is a superset by construction of what ``redact_json`` would change in a line:

- a known or learned value occurs in it (its UTF-8 form; looked for lower-cased, as everything
  is, so a value in another case names its line too);
- a trigger of a shape (:data:`~agtrace.eventlog.secret.TRIGGERS`) occurs in it lower-cased
  (``gh`` is narrowed to ``gh[pousr]_``, the only texts its shape matches);
- a label stem is followed by one of the characters
  :func:`~agtrace.eventlog.secret.label_separators` needs right after it (a quote, a backslash,
  a space, a tab, ``:`` or ``=``) before any value is looked at;
- it holds a ``\\u`` escape or a ``…`` (``redact_json`` then also redacts string by string), or
  one of the two non-ASCII characters whose lower case contains an ASCII letter (``İ``, the
  Kelvin sign): the block is lowered bytewise, so they are not lowered to what ``str.lower``
  gives, and their lines are handed over whole instead.

A block that is not valid UTF-8 is not screened (every line is handed over). No pattern holds a
newline, so a hit names one line. The search is one pass of a multi-pattern automaton over the
lower-cased block (``ahocorasick_rs``: Aho-Corasick as a DFA up to
:data:`~agtrace.eventlog.multisearch.DFA_MAX_PATTERNS`, which keeps its speed with the hundreds of
patterns that the chunks of long secret values add, where the default slows by half) when that
package is installed, else one ``bytes.find`` per pattern; both find the same lines (a
test checks it).
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Iterable

from . import multisearch, secret
from .secret import LABEL_STEMS, TRIGGERS

try:  # one pass over the block for every pattern
    from ahocorasick_rs import BytesAhoCorasick
except ImportError:  # pragma: no cover - exercised by forcing the fallback in a test
    BytesAhoCorasick = None

_FEW = 4
"""Up to this many values alone are looked for one ``find`` each rather than by an automaton."""

_NARROWED = {"gh": ("ghp_", "gho_", "ghu_", "ghs_", "ghr_")}
_FOLLOWERS = "\\\"' \t:="
"""What label_separators accepts right after a label (its gap characters and separators)."""
_LABEL_WORDS = tuple(w for stem in LABEL_STEMS for w in ((stem, "passwd", "password", "passphrase")
                                                          if stem == "pass" else (stem,)))
_TRIGGERS = tuple(dict.fromkeys(p.encode() for t, _ in TRIGGERS for p in _NARROWED.get(t, (t,))))
_LABELS = tuple((w + c).encode() for w in _LABEL_WORDS for c in _FOLLOWERS)
LOWERED: tuple[bytes, ...] = (*_TRIGGERS, *_LABELS)
"""Patterns looked for in the lower-cased block: the triggers, then the labels (a label hit
is kept only where label_separators could accept it, see :func:`_label_may_match`)."""
_SEPARATOR_AFTER = re.compile(rb"[\\\"' \t]*[:=]")
_VALUE_END_BYTES = secret._VALUE_END.replace("[\\s", "[\\s\\x1c-\\x1f\\x80-\\xff")


def _as_bytes(pattern: re.Pattern[str]) -> re.Pattern[bytes]:
    """A value shape of label_separators' separators over bytes, never stricter than over the
    text: what ends a value (its last lookahead) also takes the bytes of non-ASCII characters and
    the separators ``\\s`` holds only in text, as a Unicode space ends a value in the text."""
    head, end, tail = pattern.pattern.rpartition(secret._VALUE_END)
    text = head + (_VALUE_END_BYTES if end else "") + tail
    return re.compile(text.encode(), pattern.flags & ~re.UNICODE)


_VALUES = [_as_bytes(secret.QUOTED_VALUE), _as_bytes(secret.BARE_VALUE)]
_KEY_OWNERS = (b"api", b"access", b"account", b"private", b"secret")
_WORD = re.compile(rb"[a-z0-9_\x80-\xff-]*")
"""A word as _is_flag walks it back, and every byte of a non-ASCII character (it may or may not
be alphanumeric)."""
_WORD_BYTES = frozenset(b"abcdefghijklmnopqrstuvwxyz0123456789_-" + bytes(range(0x80, 0x100)))
"""The bytes :data:`_WORD` matches."""
_FOLLOWER_BYTES = frozenset(_FOLLOWERS.encode())
_SEPARATORS = frozenset(b":=")
ASCII_LOWERING = ("\u0130".encode(), "\u212a".encode())
"""UTF-8 of the characters whose ``str.lower()`` holds an ASCII letter (a test checks the list)."""
EXACT: tuple[bytes, ...] = (b"\\u", "…".encode(), *ASCII_LOWERING)
"""Patterns that need no label check (with the known and learned values); lower-cased like the rest."""


class Screen:
    """Finds the lines of a block that :meth:`Redactor.redact_json` may change; ``values`` are
    the known and learned values (UTF-8). Immutable; cheap to rebuild when values change.

    One pass over the lower-cased block finds every pattern: the exact ones (:data:`EXACT` and
    the values) are looked for lower-cased too, which can only name more lines, never fewer."""

    def __init__(self, values: Iterable[bytes] = (), *, automaton: bool = True):
        self.values = tuple(v for v in dict.fromkeys(values) if v)
        self._patterns = (*LOWERED, *dict.fromkeys(p.lower() for p in (*EXACT, *self.values)))
        self._values = tuple(dict.fromkeys(v.lower() for v in self.values))
        self._fast = automaton and BytesAhoCorasick is not None
        if self._fast:
            self._all = multisearch.automaton(list(self._patterns))
        self._values_fast = None

    def candidates(self, block: bytes, starts: list[int], *, since: int = 0,
                   values_only: bool = False, lower: bytes | None = None) -> set[int]:
        """Indices of the lines of ``block`` (lines joined by ``\\n``, starting at offsets
        ``starts``) that may hold a secret, among the lines from offset ``since`` on;
        ``values_only`` looks for the values alone (the values learned by a redactor); ``lower``
        is ``block`` lower-cased, when the caller has it.

        Lets go of the GIL for its longest step (the automaton's search), so a block can be
        screened on another thread while the previous one is stored."""
        first = bisect_right(starts, since) - 1
        if not block.isascii():
            try:
                block.decode("utf-8")
            except UnicodeDecodeError:
                return set(range(first, len(starts)))
        if lower is None or since:
            lower = (block[since:] if since else block).lower()
        found: set[int] = set()
        if values_only:  # one find each, or one pass for more than a few
            if self._values_fast is None and len(self._values) > _FEW and BytesAhoCorasick is not None:
                self._values_fast = multisearch.automaton(list(self._values), dfa=False)
            self._search(lower, self._values, self._values_fast, since, starts, found)
            return found
        self._search(lower, self._patterns, self._all if self._fast else None, since, starts, found,
                     check=_label_may_match)
        return found

    def _search(self, haystack: bytes, patterns, automaton, offset: int, starts: list[int], found: set[int],
                check=None) -> None:
        """Add the line of every hit of ``patterns`` in ``haystack`` (the block from ``offset``)
        that ``check(haystack, pattern index, position)`` does not rule out."""
        if automaton is not None:
            hits = automaton.find_matches_as_indexes(haystack, overlapping=True)
        else:
            hits = []
            for k, pattern in enumerate(patterns):
                pos = haystack.find(pattern)
                while pos >= 0:
                    hits.append((k, pos, 0))
                    pos = haystack.find(pattern, pos + 1)
            hits.sort(key=lambda hit: hit[1])
        end = -1  # the offset where the last line found ends: hits before it need no look
        for k, pos, _ in hits:
            if pos < end:
                continue
            if check is None or check(haystack, k, pos):
                line = bisect_right(starts, pos + offset) - 1
                found.add(line)
                end = (starts[line + 1] if line + 1 < len(starts) else len(haystack) + offset) - offset


def _label_may_match(lower: bytes, k: int, pos: int) -> bool:
    """Whether the hit of ``LOWERED[k]`` at ``pos`` may be a label that label_separators
    accepts: a trigger always; a label when a separator follows it (after gap characters), or
    when it is followed by a space and its word starts with ``-`` (``--api-key VALUE``); a
    ``key`` only after an owner (``api_key``). Looser than label_separators, never stricter."""
    k -= len(_TRIGGERS)
    if k < 0 or k >= len(_LABELS):  # a trigger, or an exact pattern (looked for lower-cased)
        return True
    label = _LABELS[k]
    word = label[:-1]
    if word == b"key" and not lower[max(0, pos - 24) : pos].rstrip(b"_-").endswith(_KEY_OWNERS):
        return False
    end = pos + len(word)
    # most hits are words in prose ("pass ", "token "): the bytes right before and after the
    # hit rule them out without a regex; each shortcut gives what the regex after it gives
    follower = label[-1]
    if follower in _SEPARATORS or (end + 1 < len(lower) and lower[end + 1] in _FOLLOWER_BYTES):
        separator = _SEPARATOR_AFTER.match(lower, end)
        if separator is not None:
            return _value_at(lower, separator.end() - 1)
    # else a gap character follows the word, then neither a gap character nor a separator:
    # _SEPARATOR_AFTER cannot match
    if follower != 0x20 or pos == 0 or lower[pos - 1] not in _WORD_BYTES:
        return False  # not the flag form: the byte before a flag's label is "-" or a word byte
    # the flag form: a "-" before the label with only word bytes between them (cheaper first)
    dash = lower.rfind(b"-", max(0, pos - 256), pos)
    return dash >= 0 and _WORD.fullmatch(lower, dash + 1, pos) is not None and _value_at(lower, end)


def _value_at(lower: bytes, pos: int) -> bool:
    """Whether a labelled value may start at the separator at ``pos``."""
    return any(v.match(lower, pos) for v in _VALUES)

def line_starts(lines: list[bytes]) -> list[int]:
    """The offset of each line in ``b"\\n".join(lines)``."""
    starts, at = [], 0
    for line in lines:
        starts.append(at)
        at += len(line) + 1
    return starts
