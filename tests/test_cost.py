"""Cost from the price table: real captured usage of Anthropic and OpenAI models priced per call,
checked against figures computed here by hand from the table's published per-token prices."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agtrace.capture.adapters import make_adapter
from agtrace.eventlog import (
    ModelCalled,
    RunEnded,
    RunStarted,
    Store,
    Usage,
    UsageReported,
    call_costs,
    part_costs,
    price_usage,
    prices_version,
    run_costs,
)

from .conftest import run_agtrace

REAL = Path(__file__).parent / "golden" / "real"
FIXTURES = Path("/work/shared/fixtures")

# USD per million tokens, as genai-prices 0.2.x publishes them (input, cache read, cache write, output)
SONNET_45 = (3.00, 0.30, 3.75, 15.00)  # anthropic claude-sonnet-4-5, prompts under 200k tokens
SONNET_46 = (3.00, 0.30, 3.75, 15.00)  # anthropic claude-sonnet-4-6
GPT_51 = (1.25, 0.125, 0.0, 10.00)  # openai gpt-5.1 (what gpt-5.1-codex is billed as)


def by_hand(usages: list[Usage], prices: tuple[float, float, float, float]) -> float:
    """Our input excludes cached tokens; reasoning is inside output (priced once, as output)."""
    i, cr, cw, o = prices
    return sum(u.input * i + u.cache_read * cr + u.cache_write * cw + u.output * o for u in usages) / 1e6


def _capture(store: Store, cli: str, model: str) -> tuple[str, list[Usage]]:
    adapter = make_adapter(cli)
    emits = []
    for line in (REAL / f"{cli}.jsonl").read_text().splitlines():
        emits.extend(adapter.feed(line, "stdout"))
    emits.extend(adapter.finish())
    w = store.create_run(RunStarted(agent=cli, model=model), durability="off")
    for e in emits:
        w.append(e.event, part=e.part)
    w.append(RunEnded(status="completed"))
    store.close_writer(w)
    return w.run_id, [e.event.usage for e in emits if isinstance(e.event, UsageReported)]


def test_real_claude_code_and_codex_usage_priced_by_hand(tmp_path):
    store = Store(tmp_path)
    claude, claude_usage = _capture(store, "claude-code", "")  # the stream names claude-sonnet-4-5
    codex, codex_usage = _capture(store, "codex", "gpt-5.1-codex")  # its usage names no model
    assert len(claude_usage) > 1 and sum(u.cache_read for u in claude_usage) > 0
    assert sum(u.reasoning for u in codex_usage) > 0 and sum(u.cache_read for u in codex_usage) > 0
    costs = run_costs(store)
    assert costs[claude].cost_usd == pytest.approx(by_hand(claude_usage, SONNET_45), rel=1e-9)
    assert costs[codex].cost_usd == pytest.approx(by_hand(codex_usage, GPT_51), rel=1e-9)
    for c in costs.values():
        assert c.complete and c.prices == prices_version() and c.prices.startswith("genai-prices 0.2.")
    calls = call_costs(store, claude)
    assert len(calls) == len(claude_usage) and {c["provider"] for c in calls} == {"anthropic"}
    assert all(c["prices"] == prices_version() for c in calls)  # the table's version beside every cost
    assert calls[0]["cost_usd"] == pytest.approx(by_hand(claude_usage[:1], SONNET_45), rel=1e-9)
    assert sum(v or 0 for v in part_costs(store, claude).values()) == pytest.approx(costs[claude].cost_usd)
    assert {c["provider"] for c in call_costs(store, codex)} == {"openai"}
    store.close()


@pytest.mark.skipif(not (FIXTURES / "isobench").is_dir(), reason="shared fixtures not mounted")
def test_imported_claude_code_run_priced_by_hand_and_as_the_agent_reported(tmp_path):
    run_agtrace(["import", str(FIXTURES / "isobench" / "claude_code_sonnet_sglang_core-0000")], tmp_path, check=True)
    store = Store(tmp_path)
    (run_id,) = store.run_ids()
    usage = [r.event for r in store.read(run_id) if isinstance(r.event, UsageReported)]
    cost = run_costs(store)[run_id]
    assert usage[0].model == "claude-sonnet-4-6"
    assert cost.cost_usd == pytest.approx(by_hand([u.usage for u in usage], SONNET_46), rel=1e-9)
    assert cost.cost_usd == pytest.approx(cost.reported_cost_usd, rel=1e-6)  # Claude Code's own total_cost_usd
    store.close()


def test_unknown_model_is_unpriced_by_name_and_cli_shows_costs(tmp_path):
    store = Store(tmp_path)
    w = store.create_run(RunStarted(agent="raw", model="scripted-model"), durability="off")
    w.append(UsageReported(usage=Usage(input=100, output=10)), part=1)
    w.append(ModelCalled(model="claude-sonnet-4-5"))
    w.append(UsageReported(usage=Usage(input=100_000, output=0)), part=2)  # priced as sonnet: $0.30
    w.append(RunEnded(status="completed"))
    store.close_writer(w)
    run_id = w.run_id
    store.close()
    data = json.loads(run_agtrace(["metrics", run_id, "--json"], tmp_path, check=True).stdout)
    assert data["cost"]["cost_usd"] == pytest.approx(0.3)
    assert data["cost"]["unpriced_models"] == ["scripted-model"] and not data["cost"]["complete"]
    assert data["cost"]["label"] == "$0.3000 + unpriced (scripted-model)"
    # each call is priced alone: a prompt over 200k tokens is billed at the long-context tier
    assert price_usage(Usage(input=1_000_000), "claude-sonnet-4-5")[0] == pytest.approx(6.0)
    assert price_usage(Usage(input=1_000_000), "anthropic/claude-sonnet-4-5")[1] == "anthropic"
    listed = json.loads(run_agtrace(["ls", "--json"], tmp_path, check=True).stdout)
    assert listed[0]["cost"]["label"] == "$0.3000 + unpriced (scripted-model)"
    shown = run_agtrace(["show", run_id], tmp_path, check=True).stdout.decode()
    assert f"$0.3000 + unpriced (scripted-model) ({prices_version()})" in shown
    with Store(tmp_path) as again:
        assert part_costs(again, run_id) == {1: None, 2: pytest.approx(0.3)}
    rows = json.loads(run_agtrace(["compare", run_id, "--json"], tmp_path, check=True).stdout)
    assert rows[0]["cost"] == data["cost"]


MODELS = ["claude-sonnet-4-5", "claude-opus-4-1", "gpt-5.1-codex", "gpt-4o", "gemini-2.5-pro", "o3",
          "anthropic/claude-sonnet-4-5", "claude-3-5-haiku"]


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(MODELS), st.sampled_from([0, 10, 1_000, 150_000, 199_999, 200_001, 300_000]),
       st.integers(0, 20_000), st.sampled_from([0, 500, 250_000]), st.sampled_from([0, 3_000]))
def test_the_fast_path_prices_like_the_table_itself(model, input_, output, cache_read, cache_write):
    """Pricing from the per-million rates (memoized model lookup) equals genai-prices' own
    calc_price, tiers included."""
    from genai_prices import calc_price

    from agtrace.eventlog.cost import _table_usage

    usage = Usage(input=input_, output=output, cache_read=cache_read, cache_write=cache_write)
    ts = 1_790_000_000 * 10**9
    cost, provider, reason = price_usage(usage, model, ts)
    table = calc_price(_table_usage(usage), model.rpartition("/")[2],
                       genai_request_timestamp=datetime.datetime.fromtimestamp(ts / 1e9, datetime.UTC))
    assert (cost, provider, reason) == (pytest.approx(float(table.total_price), rel=1e-12, abs=1e-15),
                                        table.provider.id, "")
