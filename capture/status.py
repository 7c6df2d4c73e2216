"""Run status from evidence, not from the exit code alone.

Order of the rules (the first that applies wins):

1. The capture stopped the agent: ``limit`` (max parts), ``timeout``, ``interrupted``.
2. The agent's model calls all failed (and at least one was attempted): ``failed`` with reason
   ``no model call succeeded`` and the last error — even when the agent exited 0 (TRAE does).
3. A structured agent made no model call at all: ``failed`` (``no model call was made``).
4. Non-zero exit: ``failed`` — ``agent exited with code N and did no work`` when no part
   completed, else ``agent exited with code N after P parts``; killed by a signal says which.
5. Otherwise ``completed``. A failed call that a retry recovered does not fail the run.
"""

from __future__ import annotations

import signal as _signal

from .adapter import AdapterState


def derive_status(
    *,
    exit_code: int | None,
    stop_reason: str,
    state: AdapterState,
    parts: int,
    max_parts: int | None = None,
    timeout: float | None = None,
    structured: bool = True,
) -> tuple[str, str]:
    """``(status, reason)`` for a finished capture; see the module docstring for the rules."""
    if stop_reason == "limit":
        return "limit", f"stopped after {max_parts} parts (--max-parts)"
    if stop_reason == "timeout":
        return "timeout", f"stopped after {timeout:g} s (--timeout)"
    if stop_reason == "interrupted":
        return "interrupted", "the capture was interrupted (SIGINT/SIGTERM); the agent was stopped"
    if structured and state.model_calls_failed and not state.model_calls_ok:
        last = f": {state.last_error}" if state.last_error else ""
        return "failed", f"no model call succeeded ({state.model_calls_failed} failed){last}"
    if structured and not state.model_calls_ok and not parts:
        detail = f" (exit code {exit_code})" if exit_code else ""
        return "failed", f"no model call was made and no part completed{detail}"
    if exit_code is not None and exit_code != 0:
        if exit_code < 0:
            try:
                name = _signal.Signals(-exit_code).name
            except ValueError:
                name = f"signal {-exit_code}"
            cause = f"agent was killed by {name}"
        else:
            cause = f"agent exited with code {exit_code}"
        if not parts:
            return "failed", f"{cause} and did no work"
        error = f": {state.last_error}" if state.last_error else ""
        return "failed", f"{cause} after {parts} parts{error}"
    return "completed", ""
