"""The ``agtrace`` command: a thin click layer over the library.

Start-up cost is the command's own: the group knows every command by name, module and one-line
help (:data:`COMMANDS`), and imports a command's module only when that command runs (or its own
``--help`` is asked for). ``agtrace --help`` and ``agtrace --version`` import no command at all.
A test checks that the table's help is each real command's own, and ``docs/cli.md`` is
generated through the same group. Errors are mapped to messages and exit codes in ``errors.py``.
"""

from __future__ import annotations

import os
import sys
from importlib import import_module

import click

from . import __version__, streams
from .errors import EXIT_FAILED, EXIT_INTERRUPTED, UserError, map_error

DEFAULT_STORE = "~/.agtrace"

COMMANDS: dict[str, tuple[str, str]] = {
    "append": ("plumbing:append_cmd", "Append events read as JSON lines on stdin (the lines `agtrace log --json` prints)."),
    "cat": ("view_cmds:cat_cmd", "Print a file of a run's repository as it was after a part (or list the files)."),
    "close": ("plumbing:close_cmd", "End a run with a status (appends run_ended)."),
    "compare": ("report_cmds:compare_cmd",
                "Compare runs: their curves on shared axes (HTML) and their metrics side by side."),
    "cp": ("runs:cp_cmd", "Copy a run whole as a new run: events, scores, repository state; print the copy's id."),
    "demo": ("capture_cmds:demo_cmd",
             "Capture a scripted agent (no model, no key, no network) fixing a small project."),
    "diff": ("metrics_cmds:diff_cmd",
             "Diff the repository between parts A and B of a run (0 = base tree; first, last accepted)."),
    "export": ("export_cmds:export_cmd", "Export runs: events for DuckDB, Spark or Athena (JSON lines, Parquet), "
               "trajectories for Harbor (ATIF) or traces for OpenTelemetry tools (OTLP)."),
    "gc": ("store_cmds:gc_cmd", "Collect what no run needs: unreferenced blobs, caches of removed runs, leftovers of\n"
           "interrupted imports, transfers and bundle writes; pack ended runs' repositories."),
    "import": ("import_cmds:import_cmd",
               "Import existing traces (agent sessions, saved live streams, trajectories, eval logs) as runs."),
    "log": ("runs:log_cmd", "Print a run's events (or one part's), human-readable or as JSON lines."),
    "ls": ("runs:ls_cmd", "List runs, newest first: id, agent, model, task, status, parts, tokens, duration, "
           "started."),
    "metrics": ("metrics_cmds:metrics_cmd",
                "A run's metrics: status, tokens by type, cost, tool calls and errors, tests, files changed."),
    "new": ("plumbing:new_cmd", "Create a run for events appended later (`agtrace append`); print its id."),
    "note": ("annotate_cmds:note_cmd",
             "Add a note (TEXT, or @FILE) about a run or one of its parts, as a new event; `show` lists it."),
    "pull": ("remote_cmds:pull_cmd", "Download runs from a remote, verify every frame and checksum, and index them."),
    "push": ("remote_cmds:push_cmd", "Upload runs' sealed segments, bundles and blobs to a remote."),
    "reindex": ("runs:reindex_cmd", "Delete the catalog and rebuild every projection (runs, parts, metrics, "
                "scores) and the segment rows from the segments."),
    "replay": ("replay_cmds:replay_cmd",
               "Write the repository exactly as it was after a part, and say what that part was."),
    "report": ("report_cmds:report_cmd",
               "Write one run as a self-contained HTML page: header, plots, paged transcript, diffs."),
    "rescore": ("rescore_cmds:rescore_cmd",
                "Run a scorer on the reconstructed trees of old runs; record each result as a new event."),
    "rm": ("store_cmds:rm_cmd",
           "Remove runs (by id, or by --older-than/--keep) from the store, or with --remote from a remote."),
    "run": ("capture_cmds:run_cmd", "Run an agent COMMAND (after `--`) and capture it part by part."),
    "scores": ("rescore_cmds:scores_cmd", "Show a run's re-scoring results: the score over its parts, per scorer."),
    "search": ("search_cmds:search_cmd", "Search every run's messages, reasoning, tool calls, outputs and errors; "
               "print each hit's run, part, kind and a snippet."),
    "show": ("runs:show_cmd", "Show one run: identity, status, counts, parts."),
    "tag": ("annotate_cmds:tag_cmd",
            "Set (K=V) or remove (--remove K) tags of a run, as a new event; `ls --tag K=V` filters on them."),
    "verify": ("runs:verify_cmd", "Check one run (or all): every frame and blob, that no segment, event or "
               "run_ended is missing, and the snapshot trees in repo.git and the bundles; name what is damaged "
               "and which parts can still be replayed. Exit 1 when anything is wrong."),
    "view": ("view_cmds:view_cmd", "Browse the store in a local web app: every run, live, searchable; files at any part; "
             "comparisons."),
}
"""Command name → (``module:function`` in this package, the first paragraph of its help)."""


CREATE_STORE = frozenset({"demo", "import", "new", "pull", "run"})
"""Commands that may create the store when it does not exist; every other command refuses a
missing store (a typo in --store must not create one, nor pass `verify` on nothing)."""


def _say_waiting(sentence: str) -> None:
    """What a command prints while the catalog waits for another process (--lock-wait: 30 s)."""
    click.echo(f"agtrace: {sentence} (--lock-wait or AGTRACE_LOCK_WAIT sets how long)", err=True)


def _within(path: str, folder: str) -> bool:
    """``path`` is ``folder`` or under it (both real paths)."""
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


class Context:
    """What every command gets: the store location, opened lazily (created only if ``create``)."""

    def __init__(self, store_path: str, *, create: bool, lock_wait_s: float):
        self.store_path = os.path.expanduser(store_path)
        self.create = create
        self.lock_wait_s = lock_wait_s
        self._store = None

    @property
    def store(self):
        """The :class:`agtrace.eventlog.Store` at ``store_path`` (opened on first use)."""
        if self._store is None:
            self._store = self.open_store(self.store_path, create=self.create)
        return self._store

    def open_store(self, path: str, *, create: bool = True):
        """A :class:`agtrace.eventlog.Store` at ``path`` (this invocation's, or ``cp --to``'s) that
        waits ``--lock-wait`` for another process and says so."""
        from agtrace.eventlog import Store

        return Store(path, create=create, claim_directory=False, on_wait=_say_waiting, wait_s=self.lock_wait_s)

    def short_id(self, run_id: str) -> str:
        """The shortest prefix of ``run_id``, of 10 characters at least, that no other run of the
        store shares: what default output names (``<id>-report.html``) and hints use. Runs whose
        sources carry no times (an id's first 10 characters are its start time) share
        ``0000000000``, and one run's report was written over another's."""
        others = [n for n in os.listdir(self.store.runs_dir) if n != run_id and n[:10] == run_id[:10]]
        n = 10
        while n < len(run_id) and any(o.startswith(run_id[:n]) for o in others):
            n += 1
        return run_id[:n]

    def refuse_inside_store(self, path, option: str, *, itself_ok: bool = False) -> None:
        """Refuse an output path (``option``: ``--out``, ``--workdir``) in this invocation's store
        or under it: a report, export, tree or agent written there would overwrite its segments,
        bundles or catalog (``-``, a URL and None pass; ``itself_ok``: the store's own root)."""
        if path in (None, "-") or "://" in str(path):
            return
        store = os.path.realpath(self.store_path)
        target = os.path.realpath(os.path.expanduser(str(path)))
        if _within(target, store) and (target != store or not itself_ok):
            raise UserError(f"{option} {path} is inside the store {self.store_path}: agtrace keeps everything but "
                            "the store's own files out of it (what is written there could overwrite its runs' "
                            "segments or its catalog); choose a path outside the store", 2)

    def remote(self, url: str | None):
        """The remote at ``url`` (``--remote``); a ``file://`` directory that is this store, lies in
        it, or holds it under its ``runs/`` or ``blobs/`` is bad usage (exit 2): `gc --remote` would
        delete the store's blobs that no pushed manifest lists, and `rm --remote` its runs."""
        from agtrace.eventlog import remote_for

        if not url:
            raise UserError("no remote: pass --remote s3://bucket/prefix (or file:///dir) or set AGTRACE_REMOTE", 2)
        remote = remote_for(url)
        if remote.directory is not None:
            folder = os.path.realpath(remote.directory)
            store = os.path.realpath(self.store_path)
            if any(_within(inner, outer) for inner, outer in (
                    (folder, store), (store, os.path.join(folder, "runs")), (store, os.path.join(folder, "blobs")))):
                raise UserError(f"--remote {url} overlaps the store {self.store_path}: a file remote and the store "
                                "must be separate directories (pushing, `rm --remote` and `gc --remote` there would "
                                "change or delete the store's own runs and blobs); choose a directory outside the "
                                "store", 2)
        return remote

    def store_or_none(self):
        """The store, or None when there is none at ``store_path`` (for commands that can do
        without one, such as `ls --remote`)."""
        from agtrace.eventlog import StoreNotFound

        try:
            return self.store
        except StoreNotFound:
            return None

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            if self._store.catalog_set_aside is not None:
                click.echo(f"warning: the catalog was damaged; it was moved to {self._store.catalog_set_aside} "
                           "and rebuilt from the event logs", err=True)


pass_ctx = click.make_pass_decorator(Context)


class ReaderGone(Exception):  # noqa: N818 - a condition, not an error
    """Standard output's reader closed it before the command was done; the command exits
    ``exit_code`` (0: not an error; a failed run's own code when its summary could not be
    printed, so that `run … | head -0` still says the run failed)."""

    def __init__(self, exit_code: int = 0):
        super().__init__(exit_code)
        self.exit_code = exit_code


class LazyGroup(click.Group):
    """A group whose commands are imported on first use, from :data:`COMMANDS`."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *COMMANDS})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in self.commands and name in COMMANDS:
            module, _, function = COMMANDS[name][0].partition(":")
            self.add_command(getattr(import_module(f".{module}", __package__), function), name)
        return self.commands.get(name)

    def invoke(self, ctx: click.Context):
        """The command, with a broken pipe told apart before click takes it (click ends every
        EPIPE with exit 1 and nothing said): stdout's reader gone (``agtrace log RUN | head``)
        ends the command quietly with exit 0 (:class:`ReaderGone`); any other pipe of ours that
        breaks is an error that says so."""
        try:
            return super().invoke(ctx)
        except BrokenPipeError as exc:
            if _writes_stdout(exc):
                raise ReaderGone() from None
            raise map_error(exc, _store_path) from exc

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list of ``--help``, from the table's help (as click formats it) without
        importing a command."""
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max(len(n) for n in names)
        rows = [(n, short_help(n, limit)) for n in names]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


def short_help(name: str, limit: int) -> str:
    """What ``agtrace --help`` shows for command ``name`` in ``limit`` columns."""
    return click.Command(name, help=COMMANDS[name][1]).get_short_help_str(limit)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "--store",
    envvar="AGTRACE_HOME",
    default=DEFAULT_STORE,
    show_default=True,
    help="Store directory (env AGTRACE_HOME).",
)
@click.option(
    "--lock-wait",
    envvar="AGTRACE_LOCK_WAIT",
    type=click.FloatRange(min=0),
    default=30.0,
    show_default=True,
    metavar="SECONDS",
    help="How long to wait for another process writing the store's catalog before failing "
         "(env AGTRACE_LOCK_WAIT).",
)
@click.version_option(version=__version__)
@click.pass_context
def cli(ctx: click.Context, store: str, lock_wait: float) -> None:
    """agtrace: a flight recorder for coding-agent runs.

    Capture every part, tool call, test and token of an agent run with the repository state
    after each part; replay any part offline; verify, list and export runs.
    """
    global _store_path
    ctx.obj = Context(store, create=ctx.invoked_subcommand in CREATE_STORE, lock_wait_s=lock_wait)
    _store_path = ctx.obj.store_path
    ctx.call_on_close(ctx.obj.close)


_store_path = os.path.expanduser(os.environ.get("AGTRACE_HOME") or DEFAULT_STORE)
"""The store of this invocation, for error messages (set once the options are parsed)."""


_quiet_exit = False
"""Whether a Ctrl-C while the process exits ends it quietly (set by the console scripts, .entry)."""


def quiet_exit() -> None:
    """Called by :mod:`.entry` before :func:`main`: SIGINT is its quiet handler until the command
    starts and again from :func:`_leave` on (a caller of :func:`main` keeps its own handler)."""
    global _quiet_exit
    _quiet_exit = True


def main(argv: list[str] | None = None, prog_name: str = "agtrace") -> None:
    """Entry point of the ``agtrace`` console script; the CLI's error boundary. The standard
    streams are made safe first (any encoding, closed ones; see :mod:`.streams`)."""
    streams.prepare()
    try:
        if _quiet_exit:  # (see .entry) a Ctrl-C during the command is click's "aborted"
            import signal

            signal.signal(signal.SIGINT, signal.default_int_handler)
        _run(argv, prog_name)
    except KeyboardInterrupt:  # every Ctrl-C ends here: click's Abort, or one outside click's handling
        click.echo("aborted", err=True)
        _leave(EXIT_INTERRUPTED)


def _run(argv: list[str] | None, prog_name: str) -> None:
    """Run the command and map what it raised to a message and an exit code (see :func:`main`)."""
    try:
        cli.main(args=argv, prog_name=prog_name, standalone_mode=False)
    except click.exceptions.Abort:
        raise KeyboardInterrupt from None  # said once, in main()
    except click.ClickException as exc:
        exc.show()
        _leave(exc.exit_code)
    except click.exceptions.Exit as exc:
        _leave(exc.exit_code)
    except (ReaderGone, BrokenPipeError) as exc:  # the reader went away (`agtrace log RUN | head`): not an error
        _drop_stdout()
        _leave(getattr(exc, "exit_code", 0))
    except Exception as exc:  # noqa: BLE001 - the one boundary (see errors.py)
        if os.environ.get("AGTRACE_DEBUG"):
            raise
        if _wraps_interrupt(exc):  # a Ctrl-C Python wrapped (in a class's __set_name__, while importing)
            raise KeyboardInterrupt from exc
        mapped = _output_error(exc) or map_error(exc, _store_path)
        mapped.show()
        _leave(mapped.exit_code)
    _leave(0)


def _wraps_interrupt(exc: BaseException) -> bool:
    """Whether ``exc`` was raised because of a KeyboardInterrupt: Python turns one raised in a
    class's ``__set_name__`` (a dataclass being made while a module imports) into a RuntimeError."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, KeyboardInterrupt):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


def _leave(code: int) -> None:
    """Exit with ``code``, sparing the interpreter's exit its garbage collections.

    Python's exit runs two or three full collections over every object while it tears the
    modules down: 20-45 ms of a 150 ms ``agtrace ls`` on 2 cores (strace, from the command's
    end to ``exit_group``), ~4 ms without them. Here one collection runs first, so garbage left
    by the command is collected with its finalizers run, as a normal exit would; what is still
    alive is then frozen (``gc.freeze``: no collection looks at it again) and is freed by
    reference counting as the modules are cleared. A frozen object kept alive only by a cycle
    would miss its finalizer, so nothing is frozen while a file object other than the standard
    streams is still open (buffered: its flush at exit must not depend on a collection)."""
    import gc
    import io

    if _quiet_exit:
        from .entry import quiet_interrupts

        quiet_interrupts()

    gc.collect()
    std = {id(s) for s in (sys.stdin, sys.stdout, sys.stderr, sys.__stdin__, sys.__stdout__, sys.__stderr__)}
    buffered = (io.BufferedWriter, io.BufferedRandom, io.TextIOWrapper)
    if not any(isinstance(o, buffered) and id(o) not in std and _open(o) for o in gc.get_objects()):
        gc.freeze()
    sys.exit(code)


def _open(stream) -> bool:
    try:
        return not stream.closed
    except (ValueError, AttributeError, OSError):  # detached, or a wrapper of something gone
        return True


def _output_error(exc: Exception) -> UserError | None:
    """An error writing standard output (``> /dev/full``, ``> file`` on a full disk) named as
    such: an ``OSError`` without a file name would otherwise be taken for the store's (see
    :func:`_writes_stdout`)."""
    if not isinstance(exc, OSError) or not _writes_stdout(exc):
        return None
    _drop_stdout()  # or what is still buffered for it fails once more when the interpreter exits
    return UserError(f"cannot write the output: {exc.strerror or exc} (standard output); write it to a disk "
                     "with room, or pipe it", EXIT_FAILED)


def _writes_stdout(exc: OSError) -> bool:
    """Whether ``exc`` (no file name) was raised writing standard output: marked so by the
    stream :func:`streams.prepare` put there, whichever writer it came through (click's
    ``echo``, ``sys.stdout.write``, ``csv``, rich); or, on a stream of another kind (a caller
    of :func:`main` that set its own), raised in a frame writing to a stream on stdout's
    descriptor."""
    if exc.filename is not None:
        return False
    if getattr(exc, streams.STDOUT_FAILED, False):
        return True
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and any(_is_stdout(value) for value in tb.tb_frame.f_locals.values())


def _is_stdout(value: object) -> bool:
    try:
        return callable(getattr(value, "write", None)) and value.fileno() == 1
    except (AttributeError, OSError, ValueError, TypeError):
        return False


def _drop_stdout() -> None:
    """Point standard output at /dev/null, so that what is still buffered for it cannot fail
    again when the interpreter exits."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


def replay_main() -> None:
    """Entry point of the ``replay`` console script: ``agtrace replay``.

    The group gets an empty program name, so usage lines and hints read ``replay …`` (what the
    user typed), not ``replay replay …``. ``--store DIR`` (anywhere before ``--``) is the
    group's option, as in ``agtrace --store DIR replay …``.
    """
    store, rest, args = [], [], sys.argv[1:]
    while args:
        arg = args.pop(0)
        if arg == "--":
            rest += [arg, *args]
            break
        if arg == "--store" and args:
            store += [arg, args.pop(0)]
        elif arg.startswith("--store="):
            store.append(arg)
        else:
            rest.append(arg)
    main([*store, "replay", *rest], prog_name="")


if __name__ == "__main__":  # python -m agtrace.cli.main: run the installed module, not a copy
    from agtrace.cli.main import main as installed_main

    installed_main()
