"""The one vocabulary for naming parts of a run, on every command that takes parts.

A selection is a comma-separated list of items; each item is one of:

``N``
    part N (``0`` is the base tree, the workspace before the first part, where a tree is meant)
``first`` / ``last``
    the first / the last part that ended (``final`` is accepted for ``last``)
``A-B``
    every part from A to B inclusive; A and B are numbers, ``first`` or ``last`` (``3-last``)
``all``
    every part that ended
``changed``
    every part whose tree differs from the one before it (needs the run's trees)

``1,4,9``, ``3-7``, ``first,10-last`` are selections. A command that needs one part (``replay
--part``, ``diff A B``) takes a selection of exactly one part: ``N``, ``first`` or ``last``.
The words are matched case-insensitively. :func:`parse_parts` reads the text (raising
:class:`BadPartSelection` naming what it could not read); :meth:`PartSelection.resolve` turns
it into part numbers for one run, in ascending order without repeats.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from .errors import BadPartSelection

WORDS = ("first", "last", "all", "changed")
ALIASES = {"final": "last"}
SYNTAX = "N, first, last, all, changed, a range A-B (such as 3-7 or 10-last) or a list such as 1,4,9"
"""What a selection may be, in words (for help texts and error messages)."""

_END = r"(\d+|first|last|final)"
_RANGE = re.compile(rf"^{_END}\s*(?:-|\.\.)\s*{_END}$")


@dataclass(frozen=True)
class PartSelection:
    """A parsed selection (see the module docstring). ``items`` hold ints, words, and ranges
    as ``(start, end)`` pairs whose ends are ints or ``first``/``last``."""

    text: str
    items: tuple

    @property
    def single(self) -> bool:
        """Whether it names exactly one part (``N``, ``first`` or ``last``)."""
        return len(self.items) == 1 and (isinstance(self.items[0], int) or self.items[0] in ("first", "last"))

    @property
    def needs_trees(self) -> bool:
        return "changed" in self.items

    def resolve(self, parts: Sequence[int], *, run_id: str = "", changed: Sequence[int] | None = None,
                base: bool = False) -> list[int]:
        """The part numbers this selection names among ``parts`` (the run's ended parts),
        ascending. ``changed`` lists the parts whose tree changed (for the word ``changed``);
        ``base`` allows part 0. A number the run does not have is an error naming the run's
        range; so is ``first``/``last`` of a run without parts."""
        have = sorted(set(parts))
        known = set(have)
        out: set[int] = set()
        of = f"run {run_id}" if run_id else "the run"
        span = f"it has parts {have[0]}..{have[-1]}" if have else "it has no completed part yet"
        if run_id:
            span += f"; `agtrace show {run_id} --parts` lists its parts"

        def end(word) -> int:
            if isinstance(word, int):
                return word
            if not have:
                raise BadPartSelection(f"{of} has no {word} part: {span}")
            return have[0] if word == "first" else have[-1]

        for item in self.items:
            if item == "all":
                out.update(have)
            elif item == "changed":
                if changed is None:
                    raise BadPartSelection("`changed` needs the run's trees; this command takes " + SYNTAX)
                out.update(changed)
            elif isinstance(item, tuple):
                lo, hi = end(item[0]), end(item[1])
                if lo > hi:
                    raise BadPartSelection(f"the range {lo}-{hi} is empty: write the lower part first")
                out.update(p for p in have if lo <= p <= hi)
                if lo == 0 and base:
                    out.add(0)
            else:
                n = end(item)
                if n == 0 and base:
                    out.add(0)
                elif n not in known:
                    raise BadPartSelection(f"{of} has no part {n}; {span}")
                else:
                    out.add(n)
        return sorted(out)

    def one(self, parts: Sequence[int], *, run_id: str = "", base: bool = True) -> int:
        """The one part this selection names (see :attr:`single`)."""
        if not self.single:
            raise BadPartSelection(f"one part is needed here (N, first or last), not {self.text!r}")
        return self.resolve(parts, run_id=run_id, base=base)[0]


def parse_parts(text: str | int | Sequence[int]) -> PartSelection:
    """Read a selection (see the module docstring); a number or a list of numbers is taken as
    they are. Raises :class:`BadPartSelection` naming the item it cannot read."""
    if isinstance(text, int):
        return PartSelection(str(text), (_number(str(text)),))
    if not isinstance(text, str):
        numbers = tuple(_number(str(n)) for n in text)
        return PartSelection(",".join(map(str, numbers)), numbers)
    items = []
    for raw in text.split(","):
        item = raw.strip().lower()
        if not item:
            continue
        item = ALIASES.get(item, item)
        if item in WORDS:
            items.append(item)
        elif item.isdigit():
            items.append(_number(item))
        elif m := _RANGE.match(item):
            ends = tuple(_end(e) for e in m.groups())
            items.append(ends)
        else:
            raise BadPartSelection(f"cannot read {raw.strip()!r} as parts; write {SYNTAX}")
    if not items:
        raise BadPartSelection(f"no parts named; write {SYNTAX}")
    return PartSelection(text, tuple(items))


def _number(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise BadPartSelection(f"cannot read {text!r} as a part number; write {SYNTAX}") from None
    if n < 0:
        raise BadPartSelection(f"part numbers start at 0 (the base tree), not {n}")
    return n


def _end(word: str) -> int | str:
    word = ALIASES.get(word, word)
    return int(word) if word.isdigit() else word
