"""Token accounting shared by the adapters: provider field mapping, cumulative → delta, dedupe.

Every ``usage_reported`` event an adapter emits is a *delta* (see :class:`~agtrace.eventlog.Usage`):
summing them over a run gives the run's spend. Providers do not report deltas uniformly, so the
adapters route every report through one of two helpers:

* :class:`CumulativeCounter` for running totals (Codex ``turn.completed.usage`` is the thread's
  total so far, see ``capture/adapters/codex.py``). Summing those totals is the classic bug
  (``docs/PITFALLS``: "Codex usage counters are cumulative but were summed").
* :class:`DedupeById` for per-message reports that are repeated (Claude Code writes one line per
  content block, each with the same ``message.id`` and a copy of the message's usage, and the
  first copies may carry a placeholder ``output_tokens`` of 1).

Field mapping into :class:`Usage` (``input`` is always the *non-cached* prompt part, ``output``
always *includes* reasoning, ``reasoning`` is the subset of ``output`` spent thinking):

==================  ======================================  ====================================
``Usage`` field     OpenAI / Codex                           Anthropic / Claude Code
==================  ======================================  ====================================
``input``           ``input_tokens - cached - cache_write``  ``input_tokens``
                    (``input_tokens`` INCLUDES cached ones)  (already EXCLUDES cache)
``cache_read``      ``cached_input_tokens`` (or              ``cache_read_input_tokens``
                    ``input_tokens_details.cached_tokens``)
``cache_write``     ``cache_write_input_tokens`` (0.171;     ``cache_creation_input_tokens``
                    part of ``input_tokens``)
``output``          ``output_tokens``                        ``output_tokens``
``reasoning``       ``reasoning_output_tokens`` (or          0 (not reported separately)
                    ``output_tokens_details.reasoning_...``)
==================  ======================================  ====================================

OpenCode reports ``tokens{input, output, reasoning, cache{read, write}}`` with ``input`` already
non-cached; whether its ``output`` includes ``reasoning`` changed between versions, which
:func:`usage_from_opencode` settles from ``tokens.total``.
"""

from __future__ import annotations

import math
from typing import Any

from agtrace.eventlog import Usage

FIELDS = ("input", "output", "cache_read", "cache_write", "reasoning")
ZERO = Usage()


def token_count(value: Any) -> int:
    """A token count from provider JSON; anything that is not a non-negative number counts 0
    (NaN and infinities too: JSON readers accept ``NaN``, ``Infinity`` and ``1e400``)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0
    if isinstance(value, float) and not math.isfinite(value):
        return 0
    return max(0, int(value))


_int = token_count


def add(a: Usage, b: Usage) -> Usage:
    """Field-wise sum."""
    return Usage(**{f: getattr(a, f) + getattr(b, f) for f in FIELDS})


def increase(new: Usage, old: Usage) -> Usage:
    """Field-wise ``max(0, new - old)``: what ``new`` adds on top of ``old``."""
    return Usage(**{f: max(0, getattr(new, f) - getattr(old, f)) for f in FIELDS})


def is_zero(u: Usage) -> bool:
    """True when every count is 0."""
    return u == ZERO


OPENAI_COUNTERS = frozenset({
    "input_tokens", "cached_input_tokens", "cache_write_input_tokens", "output_tokens",
    "reasoning_output_tokens", "total_tokens", "input_tokens_details.cached_tokens",
    "input_tokens_details.cache_write_tokens", "output_tokens_details.reasoning_tokens"})
"""The counters of an OpenAI/Codex usage object :func:`usage_from_openai` reads (``total_tokens``
is their sum); any other is reported by :func:`unknown_counters`."""


def unknown_counters(d: dict[str, Any], known: frozenset[str], prefix: str = "") -> list[str]:
    """The numeric fields of a usage object that ``known`` does not name, as dotted paths
    (``future_tokens``, ``input_tokens_details.audio_tokens``): a counter a newer tool added.
    The reader counts each as an unknown ``usage.<path>`` (kept raw, a warning, never an
    error), so tokens no ``Usage`` field holds are never dropped in silence."""
    out: list[str] = []
    for key, value in d.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            out += unknown_counters(value, known, f"{path}.")
        elif isinstance(value, int | float) and not isinstance(value, bool) and path not in known:
            out.append(path)
    return out


def usage_from_openai(d: dict[str, Any]) -> Usage:
    """Map an OpenAI/Codex usage dict (``input_tokens`` includes cached tokens and, from Codex
    0.171, the ``cache_write_input_tokens`` written to the cache)."""
    details_in = d.get("input_tokens_details") or {}
    details_out = d.get("output_tokens_details") or {}
    cached = _int(d.get("cached_input_tokens", details_in.get("cached_tokens")))
    written = _int(d.get("cache_write_input_tokens", details_in.get("cache_write_tokens")))
    total_in = _int(d.get("input_tokens"))
    reasoning = _int(d.get("reasoning_output_tokens", details_out.get("reasoning_tokens")))
    return Usage(
        input=max(0, total_in - cached - written),
        output=_int(d.get("output_tokens")),
        cache_read=cached,
        cache_write=written,
        reasoning=reasoning,
    )


ANTHROPIC_COUNTERS = frozenset({
    "input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens",
    "cache_creation.ephemeral_5m_input_tokens", "cache_creation.ephemeral_1h_input_tokens",
    "output_tokens_details.thinking_tokens", "server_tool_use.web_search_requests",
    "server_tool_use.web_fetch_requests"})
"""The counters of an Anthropic/Claude Code usage object agtrace knows: what
:func:`usage_from_anthropic` reads, the split of the cache writes it already counts, the
thinking part of the output and server-tool request counts (no tokens)."""


def usage_from_anthropic(d: dict[str, Any]) -> Usage:
    """Map an Anthropic usage dict (``input_tokens`` excludes cache reads and writes)."""
    return Usage(
        input=_int(d.get("input_tokens")),
        output=_int(d.get("output_tokens")),
        cache_read=_int(d.get("cache_read_input_tokens")),
        cache_write=_int(d.get("cache_creation_input_tokens")),
    )


def usage_from_litellm(d: dict[str, Any]) -> Usage:
    """Map a chat-completions usage dict as litellm returns it (mini-SWE-agent, Aider, OpenHands).

    ``prompt_tokens`` INCLUDES cache reads (``prompt_tokens_details.cached_tokens``, or
    Anthropic's ``cache_read_input_tokens``) and cache writes (``cache_creation_input_tokens``);
    ``completion_tokens`` includes ``completion_tokens_details.reasoning_tokens``.
    """
    details = d.get("prompt_tokens_details") if isinstance(d.get("prompt_tokens_details"), dict) else {}
    out_details = d.get("completion_tokens_details") if isinstance(
        d.get("completion_tokens_details"), dict) else {}
    read = _int(d.get("cache_read_input_tokens")) or _int(details.get("cached_tokens"))
    write = _int(d.get("cache_creation_input_tokens"))
    return Usage(input=max(0, _int(d.get("prompt_tokens")) - read - write),
                 output=_int(d.get("completion_tokens")), cache_read=read, cache_write=write,
                 reasoning=_int(out_details.get("reasoning_tokens")))


OPENCODE_COUNTERS = frozenset({"total", "input", "output", "reasoning", "cache.read", "cache.write"})
"""The counters of OpenCode's ``tokens`` that :func:`usage_from_opencode` reads."""


def usage_from_opencode(tokens: dict[str, Any]) -> Usage:
    """Map OpenCode's ``tokens{total, input, output, reasoning, cache{read, write}}``.

    Recent OpenCode stores ``output = outputTokens - reasoningTokens`` (so ``total`` equals
    ``input + output + reasoning + cache``); older releases stored the provider's
    ``outputTokens`` (reasoning included, ``total`` equals ``input + output + cache``). When
    ``total`` matches the second form the output is taken as is, otherwise reasoning is added
    back so that ``Usage.output`` always includes reasoning.
    """
    cache = tokens.get("cache") or {}
    inp, out = _int(tokens.get("input")), _int(tokens.get("output"))
    reasoning = _int(tokens.get("reasoning"))
    read, write = _int(cache.get("read")), _int(cache.get("write"))
    total = tokens.get("total")
    output_includes_reasoning = (
        reasoning > 0 and isinstance(total, int) and total == inp + out + read + write
    )
    return Usage(
        input=inp,
        output=out if output_includes_reasoning else out + reasoning,
        cache_read=read,
        cache_write=write,
        reasoning=reasoning,
    )


class CumulativeCounter:
    """Turns successive running totals into deltas.

    ``feed(total)`` returns ``total - previous`` field by field, ``None`` when ``total`` repeats
    the previous report exactly (nothing new was spent), and the first report minus ``baseline``
    (default zero) the first time.

    Counter reset: when any field of a new total is *smaller* than the previous one, the provider
    restarted counting (a new process or thread, a compaction that rebuilt the counter). The
    tokens spent since the reset are then exactly the new total, so the new total is returned as
    the delta and ``resets`` is incremented. Tokens spent between the last report before the
    reset and the reset itself are unknowable and are not invented.
    """

    def __init__(self, baseline: Usage | None = None) -> None:
        self.last: Usage | None = baseline
        self.resets = 0

    def feed(self, total: Usage) -> Usage | None:
        """Return the delta since the last total (see the class docstring), or None."""
        prev = self.last
        if prev is not None and total == prev:
            return None
        if prev is None:
            delta = total
        elif any(getattr(total, f) < getattr(prev, f) for f in FIELDS):
            self.resets += 1
            delta = total
        else:
            delta = increase(total, prev)
        self.last = total
        return None if is_zero(delta) else delta


class DedupeById:
    """Counts each message's usage once although it is reported on several lines.

    ``feed(key, usage)`` returns the usage the first time ``key`` is seen. For a later report
    with the same key it returns the field-wise *increase* over the largest counts seen so far
    for that key, or ``None`` when nothing increased. This choice matters for Claude Code, whose
    first lines of a streamed message carry the final ``input_tokens`` but a placeholder
    ``output_tokens`` (1 or 2) that only a later line corrects: counting the first line only
    would under-count output, summing all lines would multiply input. Reports never decrease a
    key's counts, so the sum of returned deltas per key is its field-wise maximum.
    """

    def __init__(self) -> None:
        self._max: dict[str, Usage] = {}

    def feed(self, key: str, usage: Usage) -> Usage | None:
        """Return what this report adds for ``key`` (see the class docstring), or None."""
        old = self._max.get(key, ZERO)
        delta = increase(usage, old)
        if is_zero(delta):
            self._max.setdefault(key, old)
            return None
        self._max[key] = Usage(**{f: max(getattr(usage, f), getattr(old, f)) for f in FIELDS})
        return delta

    def __contains__(self, key: str) -> bool:
        return key in self._max

    def total(self) -> Usage:
        """The sum of every key's counts, i.e. of every delta returned so far."""
        out = ZERO
        for u in self._max.values():
            out = add(out, u)
        return out
