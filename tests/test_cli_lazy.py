"""Cheap start-up by construction: lazy package roots and lazy CLI command loading.

The speed itself is measured in ``bench/bench_startup.py`` (ratios to ``sqlite-utils
--version``); these tests check what makes it cheap, on the modules a process loads: the
package roots load nothing, ``agtrace --help`` and ``--version`` load no command, a command
loads only its own module, and the heavy libraries stay out of the commands that do not need
them. They also check that the command table the group lists from is the commands' own help.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest

from .conftest import REPO

HEAVY = ("pygit2", "boto3", "botocore", "pyarrow", "rich", "modal", "duckdb", "yaml")
COMMAND_MODULES = sorted({target.split(":")[0] for target, _ in
                          importlib.import_module("agtrace.cli.main").COMMANDS.values()})


def modules_after(code: str, env: dict | None = None) -> set[str]:
    """The modules a fresh interpreter holds after running ``code``."""
    out = Path(os.environ.get("TMPDIR", "/tmp")) / f"agtrace-modules-{os.getpid()}.json"
    script = (f"import sys\n{code}\n"
              f"import json\nopen({str(out)!r}, 'w').write(json.dumps(sorted(sys.modules)))\n")
    try:
        subprocess.run([sys.executable, "-c", script], env={**os.environ, **(env or {})}, check=True,
                       capture_output=True, timeout=120)
        return set(json.loads(out.read_text()))
    finally:
        out.unlink(missing_ok=True)


def cli_modules_after(args: list[str], store) -> set[str]:
    code = ("from agtrace.cli.main import main\n"
            f"try:\n    main({args!r})\nexcept SystemExit as exc:\n    assert not exc.code, exc.code")
    return modules_after(code, {"AGTRACE_HOME": str(store)})


def loaded(modules: set[str], prefix: str) -> list[str]:
    return sorted(m for m in modules if m == prefix or m.startswith(prefix + "."))


def test_package_roots_load_nothing():
    modules = modules_after("import agtrace.eventlog, agtrace.capture, agtrace.replay")
    ours = sorted(m for m in modules if m.startswith("agtrace."))
    assert ours == ["agtrace.capture", "agtrace.eventlog", "agtrace.replay"], ours
    for lib in (*HEAVY, "msgspec", "sqlite_utils", "zstandard", "click"):
        assert not loaded(modules, lib), lib


def test_a_name_loads_only_what_defines_it():
    modules = modules_after("from agtrace.eventlog import Store, remote_for")
    for lib in HEAVY:
        assert not loaded(modules, lib), (lib, loaded(modules, lib))
    assert not loaded(modules, "agtrace.capture") and not loaded(modules, "agtrace.replay")
    assert not loaded(modules, "agtrace.eventlog.git") and not loaded(modules, "agtrace.eventlog.sync")
    git = modules_after("from agtrace.eventlog import GitStore")
    assert loaded(git, "pygit2") and not loaded(git, "boto3")
    capture = modules_after("from agtrace.capture import run_agent")
    assert not loaded(capture, "agtrace.capture.importers") and not loaded(capture, "modal")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("lazy") / "store"
    made = subprocess.run([sys.executable, "-c", "from agtrace.cli.main import main; main()", "new"],
                          env={**os.environ, "AGTRACE_HOME": str(root)}, capture_output=True, check=True)
    return root, made.stdout.decode().strip()


@pytest.mark.parametrize("args", [["--help"], ["--version"]])
def test_help_and_version_load_no_command(store, args):
    modules = cli_modules_after(args, store[0])
    commands = [m for m in loaded(modules, "agtrace.cli") if m.rsplit(".", 1)[1] in COMMAND_MODULES]
    assert not commands, commands
    assert not loaded(modules, "agtrace.eventlog.store") and not loaded(modules, "sqlite_utils")
    for lib in HEAVY:
        assert not loaded(modules, lib), lib


def test_version_is_the_installed_one_without_importlib_metadata(store):
    """``--version`` prints the version written in ``cli/__init__.py`` (which pyproject reads),
    the one the installed metadata holds, and does not import ``importlib.metadata`` for it."""
    from importlib.metadata import version

    shown = subprocess.run([sys.executable, "-m", "agtrace.cli.main", "--version"], capture_output=True,
                           check=True, env={**os.environ, "AGTRACE_HOME": str(store[0])}).stdout.decode()
    assert shown.strip() == f"agtrace, version {version('agtrace')}"
    assert not loaded(cli_modules_after(["--version"], store[0]), "importlib.metadata")


@pytest.mark.parametrize("leave_open", [False, True])
def test_exit_spares_collections_unless_a_file_is_open(store, tmp_path, leave_open):
    """The CLI's exit freezes what is alive (so Python's exit runs no collection over it), but
    not while a buffered file other than the standard streams is open: its flush at exit must
    not depend on a collection. The exit code is the command's either way."""
    path = tmp_path / "left-open.txt"
    code = ("import atexit, gc, sys\n"
            f"f = open({str(path)!r}, 'w') if {leave_open!r} else None\n"
            "if f: f.write('kept')\n"
            "atexit.register(lambda: sys.stderr.write(f'frozen={gc.get_freeze_count() > 0}'))\n"
            "from agtrace.cli.main import main\n"
            "main(['show', 'no-such-run'])\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "AGTRACE_HOME": str(store[0])})
    assert done.returncode == 2, done.stderr
    assert done.stderr.endswith(f"frozen={not leave_open}"), done.stderr
    if leave_open:
        assert path.read_text() == "kept"


@pytest.mark.parametrize("command", [["ls"], ["ls", "--json"], ["show", "RUN"], ["log", "RUN"]])
def test_a_command_loads_only_its_own_module(store, command):
    root, run_id = store
    modules = cli_modules_after([run_id if a == "RUN" else a for a in command], root)
    commands = sorted(m.rsplit(".", 1)[1] for m in loaded(modules, "agtrace.cli")
                      if m.rsplit(".", 1)[1] in COMMAND_MODULES)
    assert commands == ["runs"], commands
    for lib in HEAVY:
        assert not loaded(modules, lib), (command, lib)
    assert not loaded(modules, "agtrace.capture") and not loaded(modules, "agtrace.eventlog.git")


def test_scores_loads_no_sandbox_and_no_pygit2(store):
    """`scores` lists a run's results: it shares its module with `rescore`, but loads neither a
    sandbox, the capture pipeline nor pygit2 (session 9: 311 -> 195 ms)."""
    root, run_id = store
    modules = cli_modules_after(["scores", run_id], root)
    for lib in HEAVY:
        assert not loaded(modules, lib), lib
    assert not loaded(modules, "agtrace.capture.sandboxes") and not loaded(modules, "agtrace.capture.pipeline")


@pytest.mark.parametrize("command", ["run", "demo", "import", "report", "compare"])
def test_the_help_of_a_heavy_command_loads_no_pygit2(store, command):
    """Their modules name what their options list (agents, formats, columns) at import; none of
    that needs a repository, so pygit2 (~40 ms) loads with the first one opened (session 10:
    `run --help` x0.70, `import --help` x0.67, `report --help` x0.64, medians of 15 pairs)."""
    root, _ = store
    modules = cli_modules_after([command, "--help"], root)
    for lib in HEAVY:
        assert not loaded(modules, lib), lib


def test_one_sandbox_loads_its_module_alone():
    modules = modules_after("from agtrace.capture import LocalSandbox")
    assert loaded(modules, "agtrace.capture.sandboxes") == [
        "agtrace.capture.sandboxes", "agtrace.capture.sandboxes.local_scorer"]
    assert not loaded(modules, "pygit2") and not loaded(modules, "agtrace.capture.pipeline")


def test_the_command_table_is_the_commands_own_help():
    main = importlib.import_module("agtrace.cli.main")
    for name, (target, _) in main.COMMANDS.items():
        module, _, function = target.partition(":")
        command = getattr(importlib.import_module(f"agtrace.cli.{module}"), function)
        assert isinstance(command, click.Command) and command.name == name, (name, target)
        assert not command.hidden, name
        for limit in range(20, 160):
            assert main.short_help(name, limit) == command.get_short_help_str(limit), (
                f"COMMANDS[{name!r}] help differs from the command's own at width {limit}; copy the first "
                "paragraph of its docstring into cli/main.py"
            )


def test_every_command_is_in_the_table():
    main = importlib.import_module("agtrace.cli.main")
    found = {}
    for path in sorted((REPO / "cli").glob("*.py")):
        module = importlib.import_module(f"agtrace.cli.{path.stem}")
        for attr, value in vars(module).items():
            if isinstance(value, click.Command) and value is not main.cli \
                    and value.callback.__module__ == module.__name__:
                found[value.name] = f"{path.stem}:{attr}"
    assert found == {name: target for name, (target, _) in main.COMMANDS.items()}


def test_help_lists_every_command_as_click_would(store):
    main = importlib.import_module("agtrace.cli.main")
    eager = click.Group("agtrace", help=main.cli.help, params=main.cli.params)
    ctx = click.Context(main.cli, info_name="agtrace", terminal_width=100)
    for name in main.cli.list_commands(ctx):
        eager.add_command(main.cli.get_command(ctx, name))
    lazy_help = main.cli.get_help(click.Context(main.cli, info_name="agtrace", terminal_width=100))
    eager_help = eager.get_help(click.Context(eager, info_name="agtrace", terminal_width=100))
    assert lazy_help.split("Commands:")[1] == eager_help.split("Commands:")[1]
