"""Adapters on REAL CLI output (captured from the pinned CLIs driven by the scripted model
server, tests/golden/real/): every scripted tool call is a part, and token totals equal what the
server billed — cached tokens kept apart, nothing double counted."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from agtrace.capture.adapters import make_adapter
from agtrace.eventlog import PartEnded, RawRecorded, ToolCalled, ToolReturned, UsageReported

REAL = Path(__file__).parent / "golden" / "real"
sys.path.insert(0, str(Path(__file__).parent / "agents"))

import model_server  # noqa: E402

ADAPTER = {"codex": "codex", "claude-code": "claude-code", "opencode": "opencode"}


CASES = [(cli, "", REAL / f"{cli}.jsonl") for cli in sorted(ADAPTER)] + [
    (*d.name.split("@"), d / "stdout.jsonl") for d in sorted(REAL.glob("*@*"))]  # version matrix


def _feed(cli: str, path: Path):
    adapter = make_adapter(ADAPTER[cli])
    emits = []
    for line in path.read_text().splitlines():
        emits.extend(adapter.feed(line, "stdout"))
    emits.extend(adapter.finish())
    return adapter, emits


@pytest.mark.parametrize("cli,version,path", CASES,
                         ids=[f"{c}@{v}" if v else c for c, v, _ in CASES])
def test_real_output_parses_into_parts_tools_and_exact_tokens(cli, version, path):
    adapter, emits = _feed(cli, path)
    events = [e.event for e in emits]
    assert not [e for e in events if isinstance(e, RawRecorded) and e.parse_error], "a real line did not parse"
    steps = [s for s in model_server.scripted_session(cli, version=version) if s.tool]
    calls = [e for e in events if isinstance(e, ToolCalled)]
    results = [e for e in events if isinstance(e, ToolReturned)]
    assert len(calls) == len(steps) == len(results)
    assert {c.call_id for c in calls} == {r.call_id for r in results}
    parts = [e.part for e in emits if isinstance(e.event, PartEnded)]
    assert parts == list(range(1, len(parts) + 1))
    want = model_server.expected_usage_totals(cli, version)
    got = [e.usage for e in events if isinstance(e, UsageReported)]
    assert sum(u.input + u.cache_read for u in got) == want.input_tokens
    assert sum(u.cache_read for u in got) == want.cached_tokens
    assert sum(u.output for u in got) == want.output_tokens
    # Anthropic's usage has no separate reasoning count (thinking is inside output_tokens)
    # (and Codex 0.66's exec stream reports no reasoning tokens either)
    silent = cli == "claude-code" or (cli == "codex" and "reasoning_output_tokens" not in
                                      path.read_text())
    assert sum(u.reasoning for u in got) == (0 if silent else want.reasoning_tokens)
    assert adapter.state.model_calls_ok >= 1 and adapter.state.model_calls_failed == 0
    assert adapter.state.unknown == {}  # every record type of these versions is known


@pytest.mark.parametrize("cli,version,path", CASES,
                         ids=[f"{c}@{v}" if v else c for c, v, _ in CASES])
def test_every_real_line_that_ends_a_part_is_recognised_at_its_arrival(cli, version, path):
    """``may_end_part`` (what the capture freezes the agent at, the moment the line is read)
    accepts every line of the real streams that ends a part: an under-estimate would let the
    agent run on until the loop got to that line, and its next edits into the part's tree."""
    adapter = make_adapter(ADAPTER[cli])
    ending = 0
    for line in path.read_text().splitlines():
        ends = any(isinstance(e.event, PartEnded) for e in adapter.feed(line, "stdout"))
        ending += ends
        assert adapter.may_end_part(line, "stdout") or not ends, line[:200]
    assert ending >= len(model_server.scripted_session(cli, version=version))
    assert not adapter.may_end_part(path.read_text().splitlines()[0], "stderr")
