"""A scripted coding agent with no model: the program behind ``agtrace demo``.

Run as ``python -I path/to/demo_agent.py [--fast] [--parts-delay S]`` (``demo_command()``; it
needs the standard library only, and ``python -m agtrace.capture.demo_agent`` works too) with the working
directory set to a repository made by :func:`setup_demo_repo` (or pass ``--setup`` to make it in
place). It needs no model, network or API key. It prints what it does on stdout in the
``codex exec --json`` JSONL format, one object per line, flushed per line:
``thread.started``, then three turns of ``turn.started`` / ``item.*`` / ``turn.completed``.
Items are ``reasoning``, ``agent_message``, ``command_execution`` (``item.started`` then
``item.completed``) and ``file_change`` (``item.completed`` only, like the real samples).

Every action really happens in the working directory: commands run through ``bash -c`` and their
``aggregated_output`` (stdout and stderr interleaved) and ``exit_code`` are the real ones; file
changes are written by Python. The script is deterministic: same items, same commands, same files,
same commit ids (author, committer and dates are fixed); only timings printed by ``unittest`` vary.

The scenario (:data:`DEMO_TASK`): add ``average_word_length`` to the ``textstats`` package and make
``top_words`` case-insensitive. The agent explores; adds a test file; runs the tests (fail); appends
the function with ``printf >>`` (a shell-made change); runs them (one test still fails); fixes
``words()`` with a file change; runs them (pass); commits; tries an experimental edit and throws it
away with ``git checkout --``; documents the function in the README; commits again.

Usage semantics follow real Codex: ``turn.completed.usage`` is CUMULATIVE over the thread (codex
``exec`` builds it from the thread's ``total_token_usage``, not the turn's ``last_token_usage``),
and ``input_tokens`` includes ``cached_input_tokens``.

Options for testing the recorder: ``--fail-model`` emits ``error`` + ``turn.failed`` (401) and exits
1 without doing any work; ``--hang`` sleeps forever after a few items; ``--secret`` runs a command
whose output contains the environment variable ``DEMO_API_KEY``. Exit status 0 on success, 130 when
interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

DEMO_TASK = (
    "Add `average_word_length(text)` to textstats (0.0 for empty text), make `top_words` "
    "case-insensitive, cover both with unittest tests, commit, and document it in the README."
)
WAIT_FOR_CAPTURE_S = 2.0
"""With ``--wait-for-capture``, how long the agent waits after a part's last line for the capture
to freeze and thaw it (SIGSTOP, snapshot, SIGCONT) before it goes on anyway."""
THREAD_ID = "0199d3e0-5eed-7000-8000-00000000de30"
FIXED_DATE = "2025-01-01T12:00:00+00:00"
PROJECT_AUTHOR = ("agtrace demo", "demo@agtrace.invalid")
AGENT_AUTHOR = ("Demo Agent", "agent@agtrace.invalid")
# Per-turn (input, cached_input, output) tokens; turn.completed reports the running totals.
TURN_USAGE = [(8_412, 6_144, 391), (23_458, 18_432, 1_823), (27_035, 22_528, 1_088)]

CORE_PY = '''\
"""Word statistics for plain text."""

import re
from collections import Counter

WORD = re.compile(r"[A-Za-z']+")


def words(text):
    """The words of ``text`` in order."""
    return WORD.findall(text)


def word_count(text):
    """How many words ``text`` has."""
    return len(words(text))


def top_words(text, n=3):
    """The ``n`` most common words with their counts, most common first."""
    return Counter(words(text)).most_common(n)
'''

NEW_TESTS_PY = """\
import unittest

from textstats.core import average_word_length, top_words


class TopWordsTest(unittest.TestCase):
    def test_ignores_case(self):
        self.assertEqual(top_words("The cat saw the CAT. the end", 2), [("the", 3), ("cat", 2)])


class AverageWordLengthTest(unittest.TestCase):
    def test_average(self):
        self.assertEqual(average_word_length("ab abcd"), 3.0)

    def test_empty_text(self):
        self.assertEqual(average_word_length(""), 0.0)


if __name__ == "__main__":
    unittest.main()
"""

# Appended by the agent with bash printf: the \\n escapes are printf's, not Python's.
APPEND_COMMAND = (
    'printf "\\n\\ndef average_word_length(text):\\n    ws = words(text)\\n'
    '    return sum(map(len, ws)) / len(ws) if ws else 0.0\\n" >> textstats/core.py'
)
EXPERIMENT_COMMAND = (
    'printf "\\nimport functools\\nwords = functools.lru_cache(maxsize=None)(words)\\n"'
    " >> textstats/core.py && git diff --stat"
)
README_SECTION = (
    "\n## average_word_length\n\n"
    "`average_word_length(text)` returns the mean word length, or `0.0` for text without words.\n"
    "Words are case-insensitive everywhere: `top_words` counts `The` and `the` together.\n"
)


def demo_project_files() -> dict[str, str]:
    """The demo project's initial files, relative path -> text (a tiny ``textstats`` package)."""
    return {
        "README.md": "# textstats\n\nTiny word statistics: `word_count`, `top_words`.\n\n"
        "Run the tests with `python3 -m unittest -v`.\n",
        ".gitignore": "__pycache__/\n*.pyc\n",
        "textstats/__init__.py": '"""Tiny word statistics."""\n',
        "textstats/core.py": CORE_PY,
        "tests/__init__.py": "",
        "tests/test_core.py": "import unittest\n\nfrom textstats.core import top_words, "
        "word_count\n\n\nclass CoreTest(unittest.TestCase):\n"
        "    def test_word_count(self):\n"
        '        self.assertEqual(word_count("one two, three"), 3)\n\n'
        "    def test_top_words(self):\n"
        '        self.assertEqual(top_words("a b a", 1), [("a", 2)])\n',
    }


def git_env(author: tuple[str, str]) -> dict[str, str]:
    """The environment for git commands: fixed identity and dates, no user or system config.

    Inherited ``GIT_*`` variables are dropped so that an outer ``GIT_DIR`` (a hook, a test
    harness) cannot point the agent's git at another repository.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(
        GIT_AUTHOR_NAME=author[0],
        GIT_AUTHOR_EMAIL=author[1],
        GIT_AUTHOR_DATE=FIXED_DATE,
        GIT_COMMITTER_NAME=author[0],
        GIT_COMMITTER_EMAIL=author[1],
        GIT_COMMITTER_DATE=FIXED_DATE,
        GIT_CONFIG_GLOBAL=os.devnull,
        GIT_CONFIG_NOSYSTEM="1",
    )
    return env


def setup_demo_repo(path: str | os.PathLike[str]) -> None:
    """Write :func:`demo_project_files` into ``path`` (created if missing) and commit them.

    Makes a git repository on branch ``main`` with one commit by :data:`PROJECT_AUTHOR`; works
    without any git configuration. Raises ``subprocess.CalledProcessError`` if git fails.
    """
    root = Path(path)
    for rel, text in demo_project_files().items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    env = git_env(PROJECT_AUTHOR)
    for args in (
        ["-c", "init.defaultBranch=main", "init", "-q"],
        ["add", "-A"],
        ["commit", "-q", "-m", "Initial textstats package"],
    ):
        subprocess.run(["git", *args], cwd=root, env=env, check=True, capture_output=True)


class DemoAgent:
    """Emits the Codex JSONL stream while doing the work in ``root``."""

    def __init__(self, root: Path, delay: float | None, secret: bool, wait_for_capture: bool = False) -> None:
        self.root = root
        self.wait_for_capture = wait_for_capture
        if wait_for_capture:  # SIGCONT still continues the process; blocked, it can be waited for
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCONT})
        self.delays = itertools.cycle([0.05, 0.1, 0.15] if delay is None else [delay])
        self.secret = secret
        self.ids = itertools.count()
        self.totals = [0, 0, 0]
        self.env = git_env(AGENT_AUTHOR)
        self.env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + self.env.get("PATH", "")
        self.env.update(PYTHONDONTWRITEBYTECODE="1", LC_ALL="C")

    def emit(self, event: dict) -> None:
        ends_part = self.wait_for_capture and event.get("type") == "item.completed"
        if ends_part:
            while signal.sigtimedwait([signal.SIGCONT], 0) is not None:
                pass  # a thaw's confirming SIGCONT of an earlier part
        print(json.dumps(event, ensure_ascii=False, separators=(",", ":")), flush=True)
        if ends_part:  # the capture freezes us at this line and thaws us once its snapshot is taken
            signal.sigtimedwait([signal.SIGCONT], WAIT_FOR_CAPTURE_S)

    @contextlib.contextmanager
    def signals_unblocked(self):
        if self.wait_for_capture:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCONT})
        try:
            yield
        finally:
            if self.wait_for_capture:
                signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCONT})

    def pause(self) -> None:
        time.sleep(next(self.delays))

    def item(self, kind: str, **fields) -> None:
        self.pause()
        item = {"id": f"item_{next(self.ids)}", "type": kind, **fields}
        self.emit({"type": "item.completed", "item": item})

    def think(self, text: str) -> None:
        self.item("reasoning", text=text)

    def say(self, text: str) -> None:
        self.item("agent_message", text=text)

    def run(self, command: str) -> int:
        """Run ``command`` with bash in the workdir; emit started/completed items; return code."""
        self.pause()
        item_id = f"item_{next(self.ids)}"
        shown = f"bash -c {shlex.quote(command)}"
        started = {
            "id": item_id,
            "type": "command_execution",
            "command": shown,
            "aggregated_output": "",
            "status": "in_progress",
        }
        self.emit({"type": "item.started", "item": started})
        with self.signals_unblocked():  # a child must not inherit the blocked SIGCONT
            proc = subprocess.run(
                ["bash", "-c", command],
                cwd=self.root,
                env=self.env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
        output = proc.stdout.decode("utf-8", errors="replace")
        status = "completed" if proc.returncode == 0 else "failed"
        done = {
            "id": item_id,
            "type": "command_execution",
            "command": shown,
            "aggregated_output": output,
            "exit_code": proc.returncode,
            "status": status,
        }
        self.emit({"type": "item.completed", "item": done})
        return proc.returncode

    def change(self, rel: str, kind: str, text: str, append: bool = False) -> None:
        """Write (or append to) ``rel`` and emit a completed ``file_change`` item."""
        self.pause()  # the model's time comes before the edit, as with a real agent
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a" if append else "w") as f:
            f.write(text)
        item = {"id": f"item_{next(self.ids)}", "type": "file_change"}
        changes = [{"path": str(path), "kind": kind}]
        self.emit({"type": "item.completed", "item": {**item, "changes": changes, "status": "completed"}})

    def turn(self, number: int) -> None:
        self.emit({"type": "turn.started"})
        getattr(self, f"turn_{number}")()
        for i, n in enumerate(TURN_USAGE[number - 1]):
            self.totals[i] += n
        usage = dict(
            zip(("input_tokens", "cached_input_tokens", "output_tokens"), self.totals, strict=True)
        )
        self.pause()
        self.emit({"type": "turn.completed", "usage": usage})

    def turn_1(self) -> None:
        self.think("**Exploring the repository layout**")
        self.run("ls -R")
        if self.secret:
            self.run("env | grep ^DEMO_API_KEY=")
        self.think("**Reading the word statistics module and its tests**")
        self.run("cat textstats/core.py")
        self.run("cat tests/test_core.py")
        self.say(
            "`textstats.core` splits words with a regex but keeps their case, so `top_words` "
            "counts `The` and `the` apart. Plan: write failing tests for case-insensitive "
            "`top_words` and a new `average_word_length`, then implement both."
        )

    def turn_2(self) -> None:
        self.think("**Writing tests first**")
        self.change("tests/test_top_words.py", "add", NEW_TESTS_PY)
        self.run("python3 -m unittest -v")
        self.think("**Import fails: `average_word_length` does not exist yet; appending it**")
        self.run(APPEND_COMMAND)
        self.run("python3 -m unittest -v")
        self.think("**One failure left: `words()` must lowercase before counting**")
        core = (self.root / "textstats/core.py").read_text()
        fixed = core.replace("return WORD.findall(text)\n", "return WORD.findall(text.lower())\n")
        self.change("textstats/core.py", "update", fixed)
        self.run("python3 -m unittest -v")
        self.think("**All tests pass; committing the change**")
        self.run(
            'git add -A && git commit -q -m "Add average_word_length; case-insensitive '
            'top_words" && git log --oneline -1'
        )
        self.say("Tests are green (5 passed) and the change is committed.")

    def turn_3(self) -> None:
        self.think("**Trying to cache `words()` for repeated calls**")
        self.run(EXPERIMENT_COMMAND)
        self.think("**An unbounded cache keeps every text alive; not worth it. Reverting**")
        self.run("git checkout -- textstats/core.py && git status --short")
        self.think("**Documenting the new function in the README**")
        self.change("README.md", "update", README_SECTION, append=True)
        self.run(
            'git add -A && git commit -q -m "Document average_word_length" && git log --oneline'
        )
        self.say(
            "Done. `average_word_length` is in `textstats/core.py` (0.0 for empty text), "
            "`top_words` is case-insensitive, `tests/test_top_words.py` covers both, the "
            "README documents it, and the work is in two commits. An experimental cache on "
            "`words()` was tried and reverted."
        )

    def hang(self) -> None:
        self.emit({"type": "turn.started"})
        self.think("**Exploring the repository layout**")
        self.run("ls")
        while True:
            time.sleep(3600)


def main(argv: list[str] | None = None) -> int:
    """Run the scripted agent in the current directory; return the exit status."""
    parser = argparse.ArgumentParser(prog="demo_agent", description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="no pauses between items")
    parser.add_argument("--parts-delay", type=float, metavar="S", help="pause S s between items")
    parser.add_argument("--wait-for-capture", action="store_true",
                        help=f"after each item, wait (up to {WAIT_FOR_CAPTURE_S:g} s) for the capture's thaw")
    parser.add_argument("--setup", action="store_true", help="set up the demo repo in cwd first")
    parser.add_argument("--fail-model", action="store_true", help="fail with a 401, do nothing")
    parser.add_argument("--hang", action="store_true", help="sleep forever after a few items")
    parser.add_argument("--secret", action="store_true", help="print $DEMO_API_KEY in an output")
    args = parser.parse_args(argv)
    root = Path.cwd()
    if args.setup:
        setup_demo_repo(root)
    if not (args.fail_model or args.hang or (root / "textstats" / "core.py").is_file()):
        sys.stderr.write(f"demo_agent: no demo project in {root}; run with --setup\n")
        return 2
    delay = 0.0 if args.fast else args.parts_delay
    agent = DemoAgent(root, delay, args.secret, args.wait_for_capture)
    try:
        agent.emit({"type": "thread.started", "thread_id": THREAD_ID})
        if args.fail_model:
            message = "401 Unauthorized: invalid API key"
            agent.emit({"type": "turn.started"})
            agent.emit({"type": "error", "message": message})
            agent.emit({"type": "turn.failed", "error": {"message": message}})
            return 1
        if args.hang:
            agent.hang()
        for number in (1, 2, 3):
            agent.turn(number)
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
