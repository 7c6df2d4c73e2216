"""agtrace.cli: the click commands. Imported by nothing.

``__version__`` is the package's version, the one place it is written: ``pyproject.toml`` reads
it from here (``[tool.setuptools.dynamic]``), so ``agtrace --version`` prints it without asking
``importlib.metadata`` (~30 ms of imports at every ``--version``).
"""

__version__ = "0.1.0.dev0"
