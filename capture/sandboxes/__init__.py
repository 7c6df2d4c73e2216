"""Sandboxes: where an agent (capture) or a scorer (re-scoring) runs when not as a local process.

::

    api.py              SandboxAPI / SandboxProcess: the small surface every sandbox implements
    in_memory.py        InMemorySandboxAPI: local subprocesses in a private temp dir (tests)
    modal_api.py        ModalSandboxAPI: Modal (the only module importing ``modal``)
    agent.py            SandboxAgentProcess (the capture pipeline's agent port over a SandboxAPI)
                        and run_agent_in_sandbox
    remote_snapshot.py  RemoteSnapshotter (the snapshotter port over a SandboxAPI)
    local_scorer.py     LocalSandbox: scorers on this machine
    modal_scorer.py     ModalScorer: scorers in a fresh sandbox each

The scorers satisfy ``agtrace.replay.sandbox.Sandbox`` by shape and return
:class:`agtrace.eventlog.CommandResult`.

Every name is exported lazily (PEP 562), as the package root does: importing one sandbox
(``LocalSandbox`` for ``agtrace rescore`` and ``agtrace scores``) loads its module alone, not the
capture pipeline, the snapshotter and pygit2 that ``agent.py`` needs.
"""

from __future__ import annotations

from importlib import import_module

_EXPORTS: dict[str, str] = {
    "MODAL_TESTED_VERSION": "modal_api",
    "InMemorySandboxAPI": "in_memory",
    "LocalSandbox": "local_scorer",
    "ModalSandboxAPI": "modal_api",
    "ModalScorer": "modal_scorer",
    "RemoteSnapshotter": "remote_snapshot",
    "SandboxAPI": "api",
    "SandboxAgentProcess": "agent",
    "SandboxProcess": "api",
    "run_agent_in_sandbox": "agent",
    "run_checked": "api",
    "scrub_env": "local_scorer",
    "upload_tree": "api",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> object:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
