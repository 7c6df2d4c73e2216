"""agtrace.capture: run an agent, parse its output into events, snapshot its workspace, import.

Imports ``agtrace.eventlog`` only.
"""

from .adapter import Adapter, AdapterState, Emit
from .adapters import ADAPTERS, make_adapter
from .demo import run_demo
from .errors import (
    AgentNotFound,
    CaptureError,
    ImportError_,
    SandboxError,
    UnknownFormat,
    WorkdirError,
)
from .importers import IMPORTERS, ImportResult, import_source
from .importers.batch import import_paths
from .recorder import PartDone, Recorder, ToolCall
from .redact import Redactor
from .runner import RunSummary, run_agent
from .sandbox import LocalSandbox
from .snapshot import SnapshotPolicy, Snapshotter

__all__ = [
    "ADAPTERS", "IMPORTERS", "Adapter", "AdapterState", "AgentNotFound", "CaptureError", "Emit",
    "ImportError_", "ImportResult", "LocalSandbox", "PartDone", "Recorder", "Redactor",
    "RunSummary", "SandboxError", "SnapshotPolicy", "Snapshotter", "ToolCall", "UnknownFormat",
    "WorkdirError", "import_paths", "import_source", "make_adapter", "run_agent", "run_demo",
]
