"""Generate ``docs/cli.md`` from the commands' ``--help``, and check that it (and schemas/) is fresh.

``python -m agtrace.cli.docs`` rewrites the files; ``--check`` exits 1 if either is stale.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from agtrace.eventlog import event_schema

from .main import cli

ROOT = Path(__file__).resolve().parent.parent


def render() -> str:
    """The CLI reference: the group's help, then each command's, in name order. The context
    gets the group's settings (``-h`` beside ``--help``), which a bare ``click.Context`` would
    leave out, so the reference shows the options as each command's own ``-h`` prints them.

    Click (8.2 on) keeps a command's help option once a context has asked for it: one made
    earlier in this process without the group's settings (a test's bare ``click.Context``)
    would leave ``-h`` out of the reference. That kept option is dropped first, so the
    reference is the same whatever ran before it."""
    parts = ["# CLI reference\n", "Generated from `--help` by `python -m agtrace.cli.docs`; do not edit.\n"]
    with click.Context(cli, info_name="agtrace", terminal_width=100, **cli.context_settings) as ctx:
        _forget_help_option(cli)
        parts.append(f"## agtrace\n\n```\n{cli.get_help(ctx)}\n```\n")
        for name in cli.list_commands(ctx):
            command = cli.get_command(ctx, name)
            _forget_help_option(command)
            with click.Context(command, parent=ctx, info_name=name, terminal_width=100) as sub:
                parts.append(f"## agtrace {name}\n\n```\n{command.get_help(sub)}\n```\n")
    return "\n".join(parts)


def _forget_help_option(command: click.Command) -> None:
    if getattr(command, "_help_option", None) is not None:  # click >= 8.2 keeps it; older ones do not
        command._help_option = None


def main(argv: list[str]) -> int:
    targets = {ROOT / "docs" / "cli.md": render().encode(), ROOT / "schemas" / "events.schema.json": event_schema()}
    stale = [path for path, data in targets.items() if not path.exists() or path.read_bytes() != data]
    if "--check" in argv:
        for path in stale:
            print(f"{path.relative_to(ROOT)} is stale: run python -m agtrace.cli.docs", file=sys.stderr)
        return 1 if stale else 0
    for path in stale:
        path.write_bytes(targets[path])
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
