"""agtrace.capture: run an agent, parse its output into events, snapshot its workspace, import.

Imports ``agtrace.eventlog`` only. One capture loop (:func:`run_capture`) behind two ports
(:class:`AgentPort`, :class:`SnapshotPort`); :func:`run_agent` (a local process) and
:func:`run_agent_in_sandbox` (a process in a sandbox) are thin wrappers that build the ports.
"""

from .adapter import Adapter, AdapterState, Emit
from .adapters import ADAPTERS, looks_like_test, make_adapter
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
from .importers.home import AgentHome, HomeImport, find_home, import_home
from .pipeline import RunSummary, adapter_for, run_capture
from .port import AgentPort, Line, SnapshotPort, SnapshotterFactory
from .process import LocalProcess, ProcessGroup
from .recorder import PartDone, Recorder, ToolCall
from .redact import Redactor
from .runner import model_from_argv, run_agent
from .sandboxes import (
    MODAL_TESTED_VERSION,
    InMemorySandboxAPI,
    LocalSandbox,
    ModalSandboxAPI,
    ModalScorer,
    RemoteSnapshotter,
    SandboxAgentProcess,
    SandboxAPI,
    SandboxProcess,
    run_agent_in_sandbox,
    run_checked,
    scrub_env,
    upload_tree,
)
from .snapshot import DEFAULT_EXCLUDES, ShadowSnapshotter, SnapshotPolicy, Snapshotter

__all__ = [
    "ADAPTERS", "DEFAULT_EXCLUDES", "IMPORTERS", "MODAL_TESTED_VERSION", "Adapter", "AdapterState",
    "AgentHome", "AgentNotFound", "AgentPort", "CaptureError", "Emit", "HomeImport",
    "ImportError_", "ImportResult", "InMemorySandboxAPI", "Line", "LocalProcess", "LocalSandbox",
    "ModalSandboxAPI", "ModalScorer", "PartDone", "ProcessGroup", "Recorder", "Redactor",
    "RemoteSnapshotter", "RunSummary", "SandboxAPI", "SandboxAgentProcess", "SandboxError",
    "SandboxProcess", "ShadowSnapshotter", "SnapshotPolicy", "SnapshotPort", "Snapshotter",
    "SnapshotterFactory", "ToolCall", "UnknownFormat", "WorkdirError", "adapter_for", "find_home",
    "import_home", "import_paths", "import_source", "looks_like_test", "make_adapter",
    "model_from_argv", "run_agent", "run_agent_in_sandbox", "run_capture", "run_checked",
    "run_demo", "scrub_env", "upload_tree",
]
