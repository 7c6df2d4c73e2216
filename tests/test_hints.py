"""Every `agtrace …` a message, hint or help text suggests names a real command and real flags
(issue 13, item 8: `close` suggested `parent_run`, `show` was said to list parts it did not).

The suggestions are read from the string literals of the code (f-strings included, their
placeholders standing for values) and checked against the click group itself."""

from __future__ import annotations

import ast
import re
import shlex
from pathlib import Path

import click

from agtrace.cli.main import cli

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("eventlog", "capture", "replay", "cli")
SUGGESTION = re.compile(r"`(agtrace [^`]+)`")
PLACEHOLDER = "\x00"


def _strings(path: Path):
    """``(line, text)`` of every string literal of a module; an f-string's fields become
    PLACEHOLDER."""
    tree = ast.parse(path.read_text(), str(path))
    inside_fstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            parts = []
            for value in node.values:
                if isinstance(value, ast.Constant) and isinstance(value.value, str):
                    parts.append(value.value)
                    inside_fstrings.add(id(value))
                else:
                    parts.append(PLACEHOLDER)
            yield node.lineno, "".join(parts)
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in inside_fstrings:
            yield node.lineno, node.value


def _suggestions():
    """``(where, command line)`` of every backticked `agtrace …` in the code, joined across the
    implicit concatenation of adjacent literals by reading whole statements' strings."""
    found = []
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            texts = list(_strings(path))
            for line, text in texts:
                for match in SUGGESTION.finditer(text):
                    for piece in match.group(1).split("|"):
                        piece = piece.strip()
                        if piece.startswith("agtrace "):
                            found.append((f"{path.relative_to(REPO)}:{line}", piece))
    return found


def _options(command: click.Command) -> set[str]:
    names = {"--help", "-h"}
    for param in command.params:
        if isinstance(param, click.Option):
            names.update(param.opts)
            names.update(param.secondary_opts)
    return names


def test_the_code_suggests_commands_at_all():
    commands = {line.split()[1] for _where, line in _suggestions()}
    assert {"ls", "verify", "pull", "rm", "gc", "append", "close"} <= commands


def test_every_suggested_command_and_flag_exists():
    ctx = click.Context(cli)
    group_options = _options(cli) | {"--version"}
    takes_value = {opt for param in cli.params if isinstance(param, click.Option) and not param.is_flag
                   for opt in param.opts}  # --store DIR, --lock-wait SECONDS
    problems = []
    for where, line in _suggestions():
        try:
            words = shlex.split(line)[1:]  # a quoted argument ('git reset --hard') is one word
        except ValueError:
            words = line.split()[1:]
        while words and words[0].startswith("-"):  # group options: --store DIR, --version, --help
            word = words.pop(0)
            flag = word.split("=")[0]
            if flag not in group_options:
                problems.append(f"{where}: `{line}`: the group has no option {flag}")
            if flag in takes_value and "=" not in word and words:
                words.pop(0)
        if not words:
            continue
        name = words[0]
        command = cli.get_command(ctx, name)
        if command is None:
            problems.append(f"{where}: `{line}`: there is no command {name!r}")
            continue
        known = _options(command)
        for word in words[1:]:
            if word == "--":
                break  # what follows is the agent's command
            if not word.startswith("-") or PLACEHOLDER in word or word == "-":
                continue
            flag = word.split("=")[0].rstrip(".,;:)")
            if flag not in known:
                problems.append(f"{where}: `{line}`: `agtrace {name}` has no option {flag}")
    assert not problems, "\n".join(problems)


def test_the_hints_named_in_the_issue(tmp_path):
    """`close` on an ended run names `agtrace new --parent`; `show` lists parts, as hints say."""
    from tests.conftest import run_agtrace

    store = tmp_path / "store"
    run_id = run_agtrace(["new"], store, check=True).stdout.decode().strip()
    run_agtrace(["append", run_id], store, check=True,
                input=b'{"kind":"part_ended","part":1,"part_kind":"message","title":"hello there"}\n')
    run_agtrace(["close", run_id, "--status", "completed"], store, check=True)
    again = run_agtrace(["close", run_id, "--status", "failed"], store)
    err = again.stderr.decode()
    assert again.returncode != 0 and f"agtrace new --parent {run_id}" in err and "parent_run set" not in err
    shown = run_agtrace(["show", run_id], store, check=True).stdout.decode()
    assert "parts:" in shown and "hello there" in shown
    missing = run_agtrace(["log", run_id, "--part", "7"], store)
    assert f"`agtrace show {run_id} --parts` lists its parts" in missing.stderr.decode()
