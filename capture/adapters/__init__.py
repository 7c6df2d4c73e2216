"""Agent output adapters: one per agent output format, picked by agent name.

``make_adapter("codex", model="gpt-5")`` returns a fresh adapter implementing
:class:`~agtrace.capture.adapter.Adapter` plus ``tick(now_s)``. Unknown names raise
``KeyError`` listing the known ones; options an adapter does not use are ignored.
"""

from __future__ import annotations

from typing import Any

from .base import looks_like_test
from .claude import ClaudeStreamAdapter
from .codex import CodexExecAdapter
from .opencode import OpenCodeRunAdapter
from .raw import RawAdapter

ADAPTERS: dict[str, type] = {
    "codex": CodexExecAdapter,
    "claude-code": ClaudeStreamAdapter,
    "opencode": OpenCodeRunAdapter,
    "raw": RawAdapter,
}


def make_adapter(name: str, **opts: Any) -> Any:
    """A new adapter for agent ``name`` (a key of :data:`ADAPTERS`) built with ``opts``."""
    try:
        cls = ADAPTERS[name]
    except KeyError:
        known = ", ".join(sorted(ADAPTERS))
        raise KeyError(f"no adapter for agent {name!r}; known: {known}") from None
    return cls(**opts)


__all__ = [
    "ADAPTERS",
    "ClaudeStreamAdapter",
    "CodexExecAdapter",
    "OpenCodeRunAdapter",
    "RawAdapter",
    "looks_like_test",
    "make_adapter",
]
