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
"""

from .agent import SandboxAgentProcess, run_agent_in_sandbox
from .api import SandboxAPI, SandboxProcess, run_checked, upload_tree
from .in_memory import InMemorySandboxAPI
from .local_scorer import LocalSandbox, scrub_env
from .modal_api import MODAL_TESTED_VERSION, ModalSandboxAPI
from .modal_scorer import ModalScorer
from .remote_snapshot import RemoteSnapshotter

__all__ = [
    "MODAL_TESTED_VERSION",
    "InMemorySandboxAPI",
    "LocalSandbox",
    "ModalSandboxAPI",
    "ModalScorer",
    "RemoteSnapshotter",
    "SandboxAPI",
    "SandboxAgentProcess",
    "SandboxProcess",
    "run_agent_in_sandbox",
    "run_checked",
    "scrub_env",
    "upload_tree",
]
