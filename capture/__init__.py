"""agtrace.capture: run an agent, parse its output into events, snapshot its workspace, import.

Imports ``agtrace.eventlog`` only. One capture loop (:func:`run_capture`) behind two ports
(:class:`AgentPort`, :class:`SnapshotPort`); :func:`run_agent` (a local process) and
:func:`run_agent_in_sandbox` (a process in a sandbox) are thin wrappers that build the ports.

Every public name is exported here, lazily (PEP 562): importing this package costs nothing, and
a name imports only the module that defines it, so ``from agtrace.capture import run_agent``
never loads the importers or Modal. :data:`_EXPORTS` maps each name to its module (and, for an
alias, the name there); ``__all__`` and ``dir()`` list them all.
"""

from __future__ import annotations

from importlib import import_module

_EXPORTS: dict[str, str | tuple[str, str]] = {
    "ADAPTERS": "adapters",
    "AGENTS": "importers.home",
    "DEFAULT_EXCLUDES": "snapshot",
    "IMPORTERS": "importers",
    "MODAL_TESTED_VERSION": "sandboxes.modal_api",
    "Adapter": "adapter",
    "AdapterState": "adapter",
    "AgentHome": "importers.home",
    "AgentNotFound": "errors",
    "AgentPort": "port",
    "CaptureError": "errors",
    "Emit": "adapter",
    "HomeImport": "importers.home",
    "ImportError_": "errors",
    "ImportResult": "importers",
    "InMemorySandboxAPI": "sandboxes.in_memory",
    "Line": "port",
    "LocalProcess": "process",
    "LocalSandbox": "sandboxes.local_scorer",
    "ModalSandboxAPI": "sandboxes.modal_api",
    "ModalScorer": "sandboxes.modal_scorer",
    "PartDone": "recorder",
    "ProcessGroup": "process",
    "Recorder": "recorder",
    "RemoteSnapshotter": "sandboxes.remote_snapshot",
    "RunSummary": "pipeline",
    "SandboxAPI": "sandboxes.api",
    "SandboxAgentProcess": "sandboxes.agent",
    "SandboxError": "errors",
    "SandboxProcess": "sandboxes.api",
    "ShadowSnapshotter": "snapshot",
    "SnapshotPolicy": "snapshot",
    "SnapshotPort": "port",
    "Snapshotter": "snapshot",
    "SnapshotterFactory": "port",
    "ToolCall": "recorder",
    "UnknownFormat": "errors",
    "WorkdirError": "errors",
    "adapter_for": "pipeline",
    "check_command": "runner",
    "check_demo_workdir": "demo",
    "check_workdir": "runner",
    "cli_version": "runner",
    "demo_command": "demo",
    "find_home": "importers.home",
    "import_home": "importers.home",
    "import_paths": "importers.batch",
    "import_source": "importers",
    "looks_like_test": "adapters",
    "make_adapter": "adapters",
    "model_from_argv": "runner",
    "run_agent": "runner",
    "run_agent_in_sandbox": "sandboxes.agent",
    "run_capture": "pipeline",
    "run_checked": "sandboxes.api",
    "run_demo": "demo",
    "scrub_env": "sandboxes.local_scorer",
    "setup_demo_repo": "demo_agent",
    "upload_tree": "sandboxes.api",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> object:
    target = _EXPORTS.get(name)
    if target is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module, attr = (target, name) if isinstance(target, str) else target
    value = getattr(import_module(f".{module}", __name__), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
