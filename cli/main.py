"""The ``agtrace`` command: a thin click layer over the library, and its one error boundary.

Exit codes: 0 success; 1 the operation failed or found a problem (a corrupt frame, a run that
failed to capture); 2 bad usage or bad input (a malformed line, an unknown run id). Every error
message says what happened and what to do next, on stderr.
"""

from __future__ import annotations

import os
import sys

import click

from agtrace.eventlog import AmbiguousRunId, EventlogError, InvalidEvent, RunNotFound, Store

DEFAULT_STORE = "~/.agtrace"


class Context:
    """What every command gets: the store location, opened lazily."""

    def __init__(self, store_path: str):
        self.store_path = os.path.expanduser(store_path)
        self._store: Store | None = None

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = Store(self.store_path)
        return self._store

    def close(self) -> None:
        if self._store is not None:
            self._store.close()


pass_ctx = click.make_pass_decorator(Context)


class UserError(click.ClickException):
    """A failure to report without a traceback; ``exit_code`` says which kind."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code

    def show(self, file=None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "--store",
    envvar="AGTRACE_HOME",
    default=DEFAULT_STORE,
    show_default=True,
    help="Store directory (env AGTRACE_HOME).",
)
@click.version_option(package_name="agtrace")
@click.pass_context
def cli(ctx: click.Context, store: str) -> None:
    """agtrace: a flight recorder for coding-agent runs.

    Capture every part, tool call, test and token of an agent run with the repository state
    after each part; replay any part offline; verify, list and export runs.
    """
    ctx.obj = Context(store)
    ctx.call_on_close(ctx.obj.close)


def _register() -> None:
    from . import (
        capture_cmds,
        export_cmds,
        import_cmds,
        metrics_cmds,
        remote_cmds,
        replay_cmds,
        report_cmds,
        rescore_cmds,
        runs,
    )

    for module in (runs, capture_cmds, replay_cmds, metrics_cmds, rescore_cmds, import_cmds,
                   remote_cmds, export_cmds, report_cmds):
        for command in module.COMMANDS:
            cli.add_command(command)


_register()


def map_error(exc: BaseException) -> UserError | None:
    """The one place foreign and library exceptions become CLI errors."""
    if isinstance(exc, (RunNotFound, AmbiguousRunId, InvalidEvent)):
        return UserError(str(exc), 2)
    if isinstance(exc, EventlogError):
        return UserError(str(exc), 1)
    from agtrace.capture import CaptureError
    from agtrace.replay import ReplayError

    if isinstance(exc, (CaptureError, ReplayError)):
        return UserError(str(exc), 1)
    if isinstance(exc, PermissionError):
        return UserError(f"{exc}; check the permissions of the store directory", 1)
    if isinstance(exc, OSError) and exc.errno == 28:
        return UserError(f"{exc}; free some disk space and retry — events already stored are intact", 1)
    return None


def main(argv: list[str] | None = None, prog_name: str = "agtrace") -> None:
    """Entry point of the ``agtrace`` console script."""
    try:
        cli.main(args=argv, prog_name=prog_name, standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except BrokenPipeError:
        sys.stderr.close()
        sys.exit(0)
    except Exception as exc:  # noqa: BLE001 - the single boundary
        mapped = map_error(exc)
        if mapped is None:
            raise
        mapped.show()
        sys.exit(mapped.exit_code)
    sys.exit(0)


def replay_main() -> None:
    """Entry point of the ``replay`` console script: ``agtrace replay``."""
    main(["replay", *sys.argv[1:]], prog_name="replay")
