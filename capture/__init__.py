"""agtrace.capture: run an agent, parse its output into events, snapshot its workspace."""

from .errors import AgentNotFound, CaptureError, WorkdirError

__all__ = ["AgentNotFound", "CaptureError", "WorkdirError"]
