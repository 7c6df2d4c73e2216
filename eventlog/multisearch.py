"""One Aho-Corasick automaton over many patterns (``ahocorasick_rs``), as the redactor, the
screen and the content rules build them: a DFA while that stays small, the default beyond."""

from __future__ import annotations

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
