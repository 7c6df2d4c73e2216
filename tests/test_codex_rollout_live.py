"""The Codex capture follows the rollout the CLI writes (capture/adapters/codex_rollout_tail.py):
on the real streams of the pinned versions, fed with their real rollouts, it gives what the
import of that rollout gives (model, model calls, usage per response, tool names, tokens);
a resumed thread counts only this run's lines; a rollout that lags behind the stream loses no
token and counts none twice. The live CLIs themselves: test_real_cli.py's
test_agtrace_run_of_codex_agrees_with_its_rollout_import."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from agtrace.capture.adapters import make_adapter
from agtrace.capture.importers.batch import import_paths
from agtrace.capture.usage import usage_from_openai
from agtrace.eventlog import ModelCalled, Store, ToolCalled, UsageReported

REAL = Path(__file__).parent / "golden" / "real"
VERSIONS = ["0.171.0", "0.66.0"]


def _rollout(version: str) -> Path:
    [path] = (REAL / f"codex@{version}" / "home" / ".codex" / "sessions").glob("**/rollout-*.jsonl")
    return path


def _figures(events) -> dict:
    usages = [e.usage for e in events if isinstance(e, UsageReported)]
    return {
        "models": {e.model for e in events if isinstance(e, ModelCalled | UsageReported)},
        "calls": sum(isinstance(e, ModelCalled) for e in events),
        "reports": len(usages),
        "tools": [e.tool for e in events if isinstance(e, ToolCalled)],
        "tokens": sum(u.total for u in usages),
        "reasoning": sum(u.reasoning for u in usages),
        "cache_read": sum(u.cache_read for u in usages),
    }


def _live(version: str, home: Path, since_ns: int = 0, stdout: list[str] | None = None):
    adapter = make_adapter("codex", agent_version=version, codex_home=str(home), rollout_since_ns=since_ns)
    emits = []
    for line in stdout or (REAL / f"codex@{version}" / "stdout.jsonl").read_text().splitlines():
        emits += adapter.feed(line, "stdout")
    return adapter, [e.event for e in emits + adapter.finish()]


def _imported(tmp_path: Path, path: Path):
    with Store(tmp_path / "store") as store:
        [result] = import_paths(store, [path], fmt="codex-rollout")
        return [r.event for r in store.read(result.runs[0])]


@pytest.mark.parametrize("version", VERSIONS)
def test_live_stream_with_its_rollout_gives_the_import_figures(version, tmp_path):
    adapter, live = _live(version, REAL / f"codex@{version}" / "home" / ".codex")
    want = _figures(_imported(tmp_path, _rollout(version)))
    assert _figures(live) == want
    assert adapter.state.model and want["models"] == {adapter.state.model}
    assert want["calls"] == 7 and want["tokens"] == 9385 and want["reasoning"] == 40


@pytest.mark.parametrize("version", VERSIONS)
def test_without_the_rollout_the_stream_figures_stay(version, tmp_path):
    """No Codex home (a sandbox), or a home without this thread's file: one call per turn,
    tool `shell`, the stream's tokens."""
    _, stream_only = _live(version, tmp_path / "empty-home")
    adapter = make_adapter("codex", agent_version=version)
    plain = []
    for line in (REAL / f"codex@{version}" / "stdout.jsonl").read_text().splitlines():
        plain += [e.event for e in adapter.feed(line, "stdout")]
    assert _figures(stream_only) == _figures(plain)
    assert _figures(plain)["calls"] == 1 and "shell" in _figures(plain)["tools"]
    assert _figures(plain)["tokens"] == 9385


def _home_with(tmp_path: Path, version: str, lines: list[str]) -> Path:
    """A Codex home holding ``lines`` as the thread's rollout, where Codex writes it."""
    home = tmp_path / ".codex"
    path = home / _rollout(version).relative_to(REAL / f"codex@{version}" / "home" / ".codex")
    path.parent.mkdir(parents=True)
    path.write_text("".join(lines))
    return home


def test_a_resumed_thread_counts_only_the_lines_of_this_run(tmp_path):
    """`codex exec resume` appends to the thread's file: its earlier turns (lines before the
    capture started) are not this run's, and their cumulative totals are not spent again."""
    version = "0.66.0"
    lines = _rollout(version).read_text().splitlines(keepends=True)
    last = next(json.loads(x) for x in reversed(lines) if '"total_token_usage"' in x)
    total = last["payload"]["info"]["total_token_usage"]
    resumed = [json.dumps({"timestamp": "2099-01-01T00:00:00.000Z", "type": "turn_context",
                           "payload": {"model": "gpt-resumed"}}) + "\n"]
    for step in (1, 2):  # two model responses of 50 tokens each
        later = json.loads(json.dumps(last))
        later["timestamp"] = f"2099-01-01T00:00:0{step}.000Z"
        later["payload"]["info"]["total_token_usage"] = {
            **total, "input_tokens": total["input_tokens"] + 30 * step,
            "output_tokens": total["output_tokens"] + 20 * step, "total_tokens": total["total_tokens"] + 50 * step}
        resumed.append(json.dumps(later) + "\n")
    home = _home_with(tmp_path, version, lines + resumed)
    thread = json.loads((REAL / f"codex@{version}" / "stdout.jsonl").read_text().splitlines()[0])["thread_id"]
    stdout = [json.dumps({"type": "thread.started", "thread_id": thread}), '{"type":"turn.started"}',
              json.dumps({"type": "turn.completed", "usage": {
                  "input_tokens": total["input_tokens"] + 60, "cached_input_tokens": total["cached_input_tokens"],
                  "output_tokens": total["output_tokens"] + 40}})]
    since = 4070908800 * 10**9  # 2099-01-01: the capture started after every earlier line
    adapter = make_adapter("codex", agent_version=version, codex_home=str(home), rollout_since_ns=since,
                           usage_baseline=usage_from_openai({  # the thread's total in 0.66's stream
                               k: v for k, v in total.items() if k != "reasoning_output_tokens"}))
    events = [e.event for line in stdout for e in adapter.feed(line, "stdout")]
    assert _figures(events)["calls"] == 2 and _figures(events)["tokens"] == 100
    assert _figures(events)["models"] == {"gpt-resumed"}


def test_a_rollout_behind_the_stream_keeps_the_streams_remainder(tmp_path):
    """The rollout has only the first responses when the turn completes: those are calls of
    their own, the rest of the stream's total is one more call, the tokens stay the stream's."""
    version = "0.171.0"
    lines = _rollout(version).read_text().splitlines(keepends=True)
    cut = [i for i, x in enumerate(lines) if '"type":"token_usage_record"' in x.replace(" ", "")][2]
    _, events = _live(version, _home_with(tmp_path, version, lines[:cut + 1]))
    got = _figures(events)
    assert got["calls"] == 4 and got["tokens"] == 9385 and got["models"] == {"gpt-5.5"}


def test_a_local_capture_whose_rollout_is_missing_says_so(tmp_path):
    """`agtrace run --agent codex` with a CODEX_HOME that has no rollout of the thread (a real
    capture process; the stream is the pinned session's): the stream's figures, and a warning
    that names the place looked at and what to do, instead of a silent model ""."""
    from agtrace.capture.runner import run_agent

    stdout = REAL / "codex@0.171.0" / "stdout.jsonl"
    (tmp_path / "work").mkdir()
    with Store(tmp_path / "store") as store:
        summary = run_agent(store, [sys.executable, "-c", f"print(open({str(stdout)!r}).read(), end='')"],
                            agent="codex", workdir=tmp_path / "work", env={"CODEX_HOME": str(tmp_path / "home")})
        events = [r.event for r in store.read(summary.run_id)]
    assert summary.status == "completed" and summary.model == ""
    assert _figures(events)["calls"] == 1 and _figures(events)["tokens"] == 9385
    [warning] = summary.warnings
    assert "rollout of Codex thread 01a23c69" in warning and str(tmp_path / "home" / "sessions") in warning
    assert "CODEX_HOME" in warning


def test_a_turn_whose_rollout_is_behind_is_held_until_the_rollout_has_it(tmp_path):
    """At `turn.completed` the rollout has only the first responses (Codex writes it
    asynchronously): the turn's calls wait, and the capture's next tick, once the rest is on
    disk, gives every response its own call, as the import does; nothing is emitted twice."""
    version = "0.171.0"
    lines = _rollout(version).read_text().splitlines(keepends=True)
    cut = [i for i, x in enumerate(lines) if '"type":"token_usage_record"' in x.replace(" ", "")][2]
    home = _home_with(tmp_path, version, lines[:cut + 1])
    [path] = home.glob("sessions/*/*/*/rollout-*.jsonl")
    adapter = make_adapter("codex", agent_version=version, codex_home=str(home), rollout_since_ns=0)
    events = [e.event for line in (REAL / f"codex@{version}" / "stdout.jsonl").read_text().splitlines()
              for e in adapter.feed(line, "stdout")]
    assert _figures(events)["calls"] == 0 and adapter.tick(0.0) == []  # held: the rollout is behind
    path.write_text("".join(lines))
    events += [e.event for e in adapter.tick(0.2)]
    assert adapter.tick(0.4) == []
    events += [e.event for e in adapter.finish()]
    got, want = _figures(events), _figures(_imported(tmp_path, _rollout(version)))
    assert got.pop("tools")[-1] == "shell"  # a call not on disk when its part ended keeps `shell`
    assert got == {k: v for k, v in want.items() if k != "tools"}
