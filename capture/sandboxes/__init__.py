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

Nothing is imported here: every name is exported by the package root, lazily (``from
agtrace.capture import LocalSandbox`` loads ``local_scorer.py`` alone, not the capture pipeline,
the snapshotter and pygit2 that ``agent.py`` needs); see ``agtrace.capture._EXPORTS``.
"""
