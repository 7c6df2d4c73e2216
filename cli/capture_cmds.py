"""Capture commands: `agtrace run -- COMMAND…` and `agtrace demo`."""

from __future__ import annotations

import signal
import sys

import click

from agtrace.capture import (
    ADAPTERS,
    DEFAULT_EXCLUDES,
    PartDone,
    RunSummary,
    SnapshotPolicy,
    WorkdirError,
    check_demo_workdir,
    check_workdir,
    run_agent,
    run_demo,
)

from .errors import EXIT_INTERRUPTED, UserError
from .main import ReaderGone, pass_ctx
from .options import parse_tags, read_text_arg, seconds_option
from .output import duration, echo_json, shorten, warn

STOP_SIGNALS = ["TERM", "INT", "HUP", "QUIT", "USR1", "USR2"]


class _Stderr:
    """Standard error while an agent is captured: the live lines, ``--echo``, the warnings.

    A standard error that can no longer be written (its reader gone: ``2>&1 | head``, a ``tee``
    or terminal that went away) is given up quietly and the capture goes on: before, the
    ``BrokenPipeError`` ended the capture, stopped the agent and failed the run."""

    def __init__(self):
        self.gone = False

    def call(self, write, *args, **kwargs) -> None:
        """``write(*args, **kwargs)``, a writer of standard error, unless it is gone."""
        if self.gone:
            return
        try:
            write(*args, **kwargs)
        except OSError:
            self.gone = True

    def say(self, text: str) -> None:
        self.call(click.echo, text, err=True)

    def echo(self, stream: str, text: str) -> None:
        """An agent's line, as --echo shows it (stdout is the run id or --json)."""
        self.say(text)


class _Live:
    """The per-part line printed while a run is captured (on stderr, so --json stays clean).

    Agents report usage when a turn completes, after its parts (Codex ``turn.completed``), so
    the figure of the last part line can be behind the run's total; :meth:`close` then prints
    one more line with the total, so the last live figure is the final summary's.
    """

    def __init__(self, enabled: bool, stderr: _Stderr | None = None):
        self.enabled = enabled
        self.say = (stderr or _Stderr()).say
        self.part = 0
        self.tokens: int | None = None

    def __call__(self, p: PartDone) -> None:
        self.part, self.tokens = p.part, p.tokens
        if not self.enabled:
            return
        files = f" files: {', '.join(p.files[:3])}{'…' if len(p.files) > 3 else ''}" if p.files else ""
        self.say(f"  part {p.part:>4}  {p.kind:<9} {shorten(p.title, 60):<60}{files}  tokens: {p.tokens:,}")

    def close(self, summary: RunSummary) -> None:
        if self.enabled and self.tokens is not None and summary.tokens != self.tokens:
            title = f"usage reported after part {self.part}"
            self.say(f"  {'':>9}  {'usage':<9} {title:<60}  tokens: {summary.tokens:,}")


def _regex_option(param: click.Parameter, value: str | None) -> str | None:
    """The option's ``value`` if it is a regular expression; bad usage (exit 2) if not, before
    the store or a run is made."""
    import re

    if value == "":
        raise UserError(f"{param.opts[0]} is empty, which would match no line; give a regular expression that "
                        f"matches the lines that start a part ({param.opts[0]} '^STEP'), or leave it out", 2)
    if value is not None:
        try:
            re.compile(value)
        except re.error as exc:
            raise UserError(f"{param.opts[0]} {value!r} is not a valid regular expression: {exc}; fix the pattern "
                            "(escape ( [ + * ? with \\ to match them as text)", 2) from None
    return value


def _raw_only(agent: str, **options) -> None:
    """Bad usage (exit 2, before anything is made) when an option of the raw agent is given for
    a structured one: its parts come from the agent's own records, the option would do nothing."""
    given = [f"--{name.replace('_', '-')}" for name, value in options.items() if value is not None]
    if agent != "raw" and given:
        names = " and ".join(given)
        verb = "apply" if len(given) > 1 else "applies"
        raise UserError(f"{names} only {verb} to --agent raw: a {agent} agent's parts come from its own records; "
                        f"leave {names} out, or capture the command with --agent raw", 2)


def _finish(summary: RunSummary, as_json: bool, stderr: _Stderr) -> None:
    """Print the run's summary; exit with the run's code (0 completed, 130 interrupted, else 1),
    also when standard output's reader is gone (`run --json … | head -0`): the run's failure
    wins over the reader that left."""
    for warning in summary.warnings:
        stderr.call(warn, warning)
    code = 0 if summary.status == "completed" else EXIT_INTERRUPTED if summary.status == "interrupted" else 1
    try:
        if as_json:
            echo_json(summary.to_dict())
        else:
            reason = f" ({summary.reason})" if summary.reason else ""
            stderr.say(f"run {summary.run_id}: {summary.status}{reason}; {summary.parts} parts, "
                       f"{summary.tokens:,} tokens, {duration(summary.duration_s)}")
            click.echo(summary.run_id)
        sys.stdout.flush()
    except BrokenPipeError:
        raise ReaderGone(code) from None
    if code:
        sys.exit(code)


def _exit_interrupted(summary: RunSummary) -> None:
    """Exit 130 for a run SIGINT or SIGTERM to the capture interrupted: the README's one code for
    it (`run` and `demo` alike)."""
    if summary.status == "interrupted":
        sys.exit(EXIT_INTERRUPTED)


@click.command("run", context_settings={"ignore_unknown_options": False})
@click.option("--agent", type=click.Choice(sorted(ADAPTERS)), default="raw", show_default=True,
              help="Output format of the agent command.")
@click.option("--workdir", type=click.Path(file_okay=False), default=".", show_default=True,
              help="Directory the agent works in (snapshotted after every part).")
@click.option("--task", default="", help="Task prompt (TEXT or @FILE), recorded in the run.")
@click.option("--task-id", default="", help="Stable task id.")
@click.option("--model", default="", help="Model name, when the agent's output does not say.")
@click.option("--max-parts", type=click.IntRange(min=1), default=None,
              help="Stop the agent after N parts (status limit).")
@click.option("--timeout", type=float, default=None, callback=seconds_option,
              help="Stop the agent after S seconds (status timeout).")
@click.option("--durability", type=click.Choice(["strict", "normal", "off"]), default="normal", show_default=True)
@click.option("--tag", "tags", multiple=True, metavar="K=V", help="Free-form tag (repeatable).")
@click.option("--parent", default="", help="Run this one resumes or re-runs.")
@click.option("--max-file-bytes", type=click.IntRange(min=0), default=10 * 1024 * 1024, show_default=True,
              help="Snapshots leave out larger files (recorded).")
@click.option("--exclude", "excludes", multiple=True, help="Extra gitignore-style pattern left out of snapshots.")
@click.option("--marker", default=None, callback=lambda _ctx, param, value: _regex_option(param, value), help="raw agent: a regex; a stdout line matching it starts a part (titled by that line).")
@click.option("--quiet-s", type=float, default=None, callback=seconds_option, help="raw agent: end a part after S seconds without output.")
@click.option("--remote", envvar="AGTRACE_REMOTE", default=None, metavar="URL",
              help="Push sealed segments and bundles here while the run goes on (s3://… or file://…; env AGTRACE_REMOTE).")
@click.option("--ship-interval", type=float, default=10.0, show_default=True, callback=seconds_option,
              help="With --remote: seconds between pushes (a lost machine loses at most this much).")
@click.option("--backend", type=click.Choice(["local", "modal"]), default="local", show_default=True,
              help="Run the agent here, or in a Modal sandbox (needs `pip install agtrace[modal]`).")
@click.option("--image", default=None, help="--backend modal: the container image (default: Debian slim).")
@click.option("--stop-signal", type=click.Choice(STOP_SIGNALS), default="TERM", show_default=True,
              help="Signal the agent's process group gets when the capture stops it or dies (SIGKILL follows after 5 s).")
@click.option("--quiet", "-q", is_flag=True, help="No live per-part lines.")
@click.option("--echo", is_flag=True,
              help="Copy the agent's output lines (stdout and stderr) to stderr as they are read, redacted as stored.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary at the end.")
@click.argument("command", nargs=-1, required=True)
@pass_ctx
def run_cmd(ctx, agent, workdir, task, task_id, model, max_parts, timeout, durability, tags, parent,
            max_file_bytes, excludes, marker, quiet_s, remote, ship_interval, backend, image, stop_signal,
            quiet, echo, as_json, command) -> None:
    """Run an agent COMMAND (after `--`) and capture it part by part.

    Prints one line per part while it runs (with --echo, the agent's own lines too), then the
    run id. Exit 0 if the run completed, 130 if it was interrupted (SIGINT or SIGTERM to
    agtrace), else 1.

    COMMAND runs in --workdir: a program named with a `/` (`./x.sh`, `bin/agent`) is looked up
    relative to the workdir, not to where agtrace was started; a bare name is looked up on PATH.
    A program or workdir that is not there (or a program not executable) is bad usage: exit 2,
    no run is created.
    """
    _raw_only(agent, marker=marker, quiet_s=quiet_s)
    ctx.refuse_inside_store(workdir, "--workdir")  # (a store inside the workdir is left out of snapshots)
    store = ctx.store
    stderr = _Stderr()
    live = _Live(not quiet, stderr)
    options = {}
    if agent == "raw":  # (the options of the raw agent: refused for another by _raw_only)
        options = {k: v for k, v in (("marker", marker), ("quiet_s", quiet_s)) if v is not None}
    policy = SnapshotPolicy(max_file_bytes=max_file_bytes, exclude=(*DEFAULT_EXCLUDES, *excludes))
    common = dict(
        agent=agent, task=read_text_arg(task), task_id=task_id, model=model, max_parts=max_parts,
        timeout=timeout, durability=durability, tags=parse_tags(tags),
        parent_run=store.resolve(parent) if parent else "", policy=policy, adapter_options=options,
        on_start=lambda rid: stderr.say(f"capturing run {rid} ({agent}, {backend})") if not quiet else None,
        on_part=live, ship_interval_s=ship_interval, remote=ctx.remote(remote) if remote else None,
        stop_signal=signal.Signals[f"SIG{stop_signal}"],
        on_line=stderr.echo if echo else None,
    )
    if backend == "modal":
        check_workdir(workdir)  # the command is checked in the sandbox, where it runs
        summary = _run_in_modal(store, list(command), workdir, image, common)
    else:
        summary = run_agent(store, list(command), workdir=workdir, **common)
    live.close(summary)
    _finish(summary, as_json, stderr)


def _run_in_modal(store, command: list[str], workdir: str, image: str | None, common: dict) -> RunSummary:
    """Capture the agent in a Modal sandbox: the workdir is uploaded, the sandbox terminated after."""
    from agtrace.capture import ModalSandboxAPI, run_agent_in_sandbox, upload_tree

    api = ModalSandboxAPI.create(image=image)
    try:
        upload_tree(api, workdir, api.workdir)
        return run_agent_in_sandbox(store, api, command, **common)
    finally:
        api.terminate()


@click.command("demo")
@click.option("--workdir", type=click.Path(), default=None,
              help="A new or empty directory to set up the demo project in (default: a new temp dir).")
@click.option("--fast", is_flag=True, help="No pauses in the scripted agent.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary at the end.")
@pass_ctx
def demo_cmd(ctx, workdir, fast, as_json) -> None:
    """Capture a scripted agent (no model, no key, no network) fixing a small project."""
    ctx.refuse_inside_store(workdir, "--workdir")
    try:
        check_demo_workdir(workdir)  # before the store is made: nothing is written when refused
    except WorkdirError as exc:
        raise UserError(str(exc), 2) from None
    store = ctx.store
    if not as_json:
        click.echo("agtrace demo: a scripted agent fixes a small Python project in a temp git repo;", err=True)
        click.echo("it runs as a real subprocess and is captured through `agtrace run --agent codex`.", err=True)
    live = _Live(not as_json)
    summary, wd = run_demo(store, workdir=workdir, fast=fast, on_part=live)
    live.close(summary)
    if as_json:
        echo_json({**summary.to_dict(), "workdir": str(wd)})
        _exit_interrupted(summary)
        return
    rid = summary.run_id
    short = ctx.short_id(rid)
    click.echo(f"\nrun {rid}: {summary.status}; {summary.parts} parts, {summary.tokens:,} tokens, "
               f"{duration(summary.duration_s)}; the agent's workdir is {wd}")
    click.echo("\nTry next:")
    store_opt = "" if ctx.store_path.endswith("/.agtrace") else f" --store {ctx.store_path}"
    prog = _program()
    for line in (
        f"{prog}{store_opt} show {short}",
        f"{prog}{store_opt} log {short} --part 9",
        f"{prog}{store_opt} log {short} --kind tests_ran",
        f"{prog}{store_opt} replay {short} --part 9 --out /tmp/part9-{short}",
        f"{prog}{store_opt} report {short} -o /tmp/{short}.html",
        f"{prog}{store_opt} verify {short}",
    ):
        click.echo(f"  {line}")
    _exit_interrupted(summary)
    if summary.status != "completed":
        raise UserError(f"the demo run ended {summary.status}: {summary.reason}", 1)


def _program() -> str:
    """`agtrace` when that is on PATH, else the path it was started by: relative to the current
    directory when it lies below it (`.venv/bin/agtrace`), else absolute (never `../../…`)."""
    import os
    import shutil

    started = sys.argv[0] if sys.argv and os.path.basename(sys.argv[0]) == "agtrace" else ""
    if not started or shutil.which("agtrace") == os.path.abspath(started):
        return "agtrace"
    full = os.path.abspath(started)
    below = os.path.relpath(full)
    return full if below == ".." or below.startswith(".." + os.sep) else below
