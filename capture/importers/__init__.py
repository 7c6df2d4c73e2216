"""Importers of existing trace formats. ``IMPORTERS`` maps a format name to its importer.

Each format lives in its own module and registers here; see ``base.py`` for the contracts.
"""

from __future__ import annotations

from ..adapter import known_types, version_key
from .base import (
    DETECT_BYTES,
    DETECT_RECORDS,
    BadRecord,
    ImportContext,
    Importer,
    ImportError_,
    ImportResult,
    RunSink,
    UnknownFormat,
    detect,
    import_source,
    sniff_json_lines,
)

IMPORTERS: dict[str, Importer] = {}


def register(importer: Importer) -> Importer:
    IMPORTERS[importer.name] = importer
    return importer


__all__ = [
    "DETECT_BYTES", "DETECT_RECORDS", "IMPORTERS", "BadRecord", "ImportContext", "ImportError_",
    "ImportResult", "Importer", "RunSink", "UnknownFormat", "detect", "import_source",
    "known_types", "register", "sniff_json_lines", "version_key",
]
# Importers register themselves on import; detection tries them in this order.
from . import envoi  # noqa: E402,F401,I001  (envoi-trace)
from . import trae  # noqa: E402,F401  (TRAE trajectory.json)
from . import isobench  # noqa: E402,F401  (ISO-Bench run items)
from . import codex_rollout  # noqa: E402,F401  (codex-rollout)
from . import live_stream  # noqa: E402,F401  (claude-stream-json, codex-exec-json, opencode-run)
from . import claude_session  # noqa: E402,F401  (claude-session)
from . import opencode_export  # noqa: E402,F401  (opencode-export)
from . import opencode_storage  # noqa: E402,F401  (opencode-storage)
from . import swe_agent  # noqa: E402,F401  (swe-agent)
from . import openhands  # noqa: E402,F401  (openhands)
from . import inspect_log  # noqa: E402,F401  (inspect)
from . import mini_swe_agent  # noqa: E402,F401  (mini-swe-agent)
from . import openhands_v1  # noqa: E402,F401  (openhands-v1)
from . import gemini_session  # noqa: E402,F401  (gemini-cli)
from . import aider_history  # noqa: E402,F401  (aider)
from . import trae_rs  # noqa: E402,F401  (trae-rs)
from . import atif  # noqa: E402,F401  (atif)
