"""Cost: every model call priced from a maintained price table (genai-prices), per call, part
and run, with the table's version beside every figure.

The ``costs`` projection (lazy, see :mod:`agtrace.eventlog.projection`: the price table takes
a quarter of a second to import, too much for the write path) keeps one row per
``usage_reported`` in ``usage_costs``: the model priced, the provider the table matched, the
token counts, ``cost_usd`` (NULL when unpriced, with the ``reason``), ``prices`` (the table's
name and version, ``genai-prices 0.2.3``) and the cost the agent itself reported, if any
(``reported_cost_usd``, kept apart). ``cost_runs`` holds what the fold needs between batches
(the run's model, the latest part seen).

Pricing rule (``docs/metrics.md``):

* the model is the usage event's, else the latest ``model_called``'s, else ``run_started``'s;
  ``provider/model`` names the provider;
* our ``Usage.input`` excludes cached tokens, the table's ``input_tokens`` includes them, so
  the table gets ``input + cache_read + cache_write`` input tokens of which ``cache_read`` are
  priced at the cache-read rate and ``cache_write`` at the cache-write rate;
* reasoning tokens are inside ``output`` and priced as output, never counted twice;
* each call is priced alone (tiered prices depend on the call's prompt size) at the table's
  price in force at the event's time;
* a model the table does not know leaves the call unpriced: the run's cost says
  ``unpriced (MODEL)`` and never pretends to be complete.

A new version of the table re-prices every run: the projection's version follows it.
"""

from __future__ import annotations

import datetime as dt
import functools
import importlib.util
import os
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING

from .events import ModelCalled, Record, RunStarted, UsageReported
from .projection import Projection

if TYPE_CHECKING:
    from .events import Usage
    from .store import Store

PRICE_TABLE = "genai-prices"


def prices_version() -> str:
    """``genai-prices X.Y.Z``, read from its installed metadata without importing it (cheap:
    every store open asks, through the projection's version); ``genai-prices missing`` when
    the package is not installed."""
    spec = importlib.util.find_spec("genai_prices")
    if spec is None or not spec.origin:
        return f"{PRICE_TABLE} missing"
    site = os.path.dirname(os.path.dirname(spec.origin))
    for name in os.listdir(site):
        if name.startswith("genai_prices-") and name.endswith(".dist-info"):
            return f"{PRICE_TABLE} {name[len('genai_prices-'):-len('.dist-info')]}"
    from importlib.metadata import version

    return f"{PRICE_TABLE} {version(PRICE_TABLE)}"


def _version_number(label: str) -> int:
    nums = [int(x) if x.isdigit() else 0 for x in label.rpartition(" ")[2].split(".")[:3]]
    nums += [0] * (3 - len(nums))
    return nums[0] * 1_000_000 + nums[1] * 1_000 + nums[2]


def price_usage(usage: Usage, model: str, ts_ns: int | None = None) -> tuple[float | None, str, str]:
    """``(cost in USD or None, provider, reason when unpriced)`` of one call's usage at the
    table's price in force at ``ts_ns`` (see the module's pricing rule)."""
    if not model:
        return None, "", "no model named"
    when = dt.datetime.fromtimestamp(ts_ns / 1e9, dt.UTC) if ts_ns else dt.datetime.now(dt.UTC)
    found = _model_price(model, when.date())
    if found is None:
        return None, "", f"{model} is not in {prices_version()}"
    model_price, provider = found
    fast = _fast_price(model_price, usage)
    if fast is not None:
        return fast, provider, ""
    from genai_prices import calc_price

    try:
        calc = calc_price(_table_usage(usage), model.rpartition("/")[2], provider_id=provider,
                          genai_request_timestamp=when)
    except (LookupError, ValueError, TypeError) as exc:  # a usage the table cannot price
        return None, "", f"{type(exc).__name__}: {exc}"
    return float(calc.total_price), provider, ""


def _table_usage(usage: Usage):
    from genai_prices import Usage as PriceUsage

    return PriceUsage(input_tokens=usage.input + usage.cache_read + usage.cache_write, output_tokens=usage.output,
                      cache_read_tokens=usage.cache_read, cache_write_tokens=usage.cache_write)


@functools.lru_cache(maxsize=4096)
def _model_price(model: str, day: dt.date):
    """The table's ``(ModelPrice, provider id)`` for ``model`` on ``day``, or None (memoized:
    finding a model in the table is the slow part of pricing)."""
    from genai_prices import Usage as PriceUsage
    from genai_prices import calc_price

    provider, _, ref = model.rpartition("/")
    when = dt.datetime.combine(day, dt.time(12), dt.UTC)
    for provider_id in [provider or None] + ([None] if provider else []):
        try:
            calc = calc_price(PriceUsage(input_tokens=0, output_tokens=0), ref, provider_id=provider_id,
                              genai_request_timestamp=when)
        except LookupError:
            continue
        return calc.model_price, calc.provider.id
    return None


_TOKEN_PRICES = ("input_mtok", "output_mtok", "cache_read_mtok", "cache_write_mtok")
_NOT_TEXT_TOKENS = ("audio", "image", "video", "search", "storage", "cache_write_1h")


def _fast_price(model_price, usage: Usage) -> float | None:
    """The table's price of a text-token call computed from its per-million rates (genai-prices'
    own rule: uncached input, cache reads, cache writes and output each at their rate; a tier
    chosen by the call's whole prompt applies to all of its tokens), or None when the model has
    a price this does not cover (per request, …) and the table's own calculation must run."""
    prices = {k: v for k, v in vars(model_price).items() if v is not None and not k.startswith("_")}
    if any(k not in _TOKEN_PRICES and not any(w in k for w in _NOT_TEXT_TOKENS) for k in prices):
        return None
    counts = {"input_mtok": usage.input, "output_mtok": usage.output, "cache_read_mtok": usage.cache_read,
              "cache_write_mtok": usage.cache_write}
    if any(n and k not in prices for k, n in counts.items()):
        return None
    prompt = usage.input + usage.cache_read + usage.cache_write
    total = Decimal(0)
    for key, n in counts.items():
        if not n:
            continue
        price = prices[key]
        if not isinstance(price, Decimal):  # TieredPrices: base, tiers sorted by start
            rate = price.base
            for tier in reversed(price.tiers):
                if prompt > tier.start:
                    rate = tier.price
                    break
            price = rate
        total += price * n
    return float(total / 1_000_000)


USAGE_COLUMNS = ("run_id", "seq", "ts", "part", "model", "provider", "input", "output", "cache_read", "cache_write",
                 "reasoning", "cost_usd", "prices", "reason", "reported_cost_usd")
"""The columns of ``usage_costs`` this version writes, named (a newer agtrace may add more)."""


def m001_costs(conn: sqlite3.Connection) -> None:
    conn.execute("CREATE TABLE usage_costs (run_id TEXT NOT NULL, seq INTEGER NOT NULL, ts INTEGER, part INTEGER, "
                 "model TEXT, provider TEXT, input INTEGER, output INTEGER, cache_read INTEGER, "
                 "cache_write INTEGER, reasoning INTEGER, cost_usd REAL, prices TEXT, reason TEXT, "
                 "reported_cost_usd REAL, PRIMARY KEY (run_id, seq))")
    conn.execute("CREATE TABLE cost_runs (run_id TEXT PRIMARY KEY NOT NULL, model TEXT, last_part INTEGER)")


class CostsProjection(Projection):
    """The ``usage_costs`` and ``cost_runs`` tables (see the module docstring)."""

    name = "costs"
    stream = "events"
    tables = ("usage_costs", "cost_runs")
    migrations = (m001_costs,)
    eager = False

    def __init__(self) -> None:
        self.prices = prices_version()

    @property
    def version(self) -> int:  # type: ignore[override]  # follows the price table's version
        return _version_number(self.prices)

    def apply(self, conn: sqlite3.Connection, run_id: str, records: Iterable[Record]) -> None:
        row = conn.execute("SELECT model, last_part FROM cost_runs WHERE run_id=?", [run_id]).fetchone()
        model, last_part = row if row else ("", None)
        rows = []
        for rec in records:
            ev, t = rec.event, type(rec.event)
            if rec.part is not None:
                last_part = rec.part
            if t is RunStarted and ev.model or t is ModelCalled and ev.model:
                model = ev.model
            elif t is UsageReported:
                which = ev.model or model
                cost, provider, reason = price_usage(ev.usage, which, rec.ts)
                u = ev.usage
                rows.append((run_id, rec.seq, rec.ts, last_part, which, provider, u.input, u.output, u.cache_read,
                             u.cache_write, u.reasoning, cost, self.prices, reason, ev.cost_usd))
        conn.executemany(f"INSERT OR REPLACE INTO usage_costs ({', '.join(USAGE_COLUMNS)}) "
                         f"VALUES ({', '.join('?' * len(USAGE_COLUMNS))})", rows)
        conn.execute("INSERT OR REPLACE INTO cost_runs (run_id, model, last_part) VALUES (?, ?, ?)",
                     [run_id, model, last_part])


@dataclass
class RunCost:
    """A run's cost: the sum over its priced calls, and what could not be priced.

    ``cost_usd`` is None when no call was priced; ``unpriced_models`` names the models of the
    calls left out (``calls - priced_calls`` of them), so a partial sum never passes as whole.
    """

    run_id: str
    cost_usd: float | None = None
    calls: int = 0
    priced_calls: int = 0
    unpriced_models: list[str] = field(default_factory=list)
    prices: str = ""
    reported_cost_usd: float | None = None

    @property
    def complete(self) -> bool:
        return self.priced_calls == self.calls

    def label(self) -> str:
        """``$0.0123``, ``unpriced (MODEL)``, ``$0.01 + unpriced (MODEL)`` or ``-`` (no usage)."""
        if not self.calls:
            return "-"
        unpriced = f"unpriced ({', '.join(self.unpriced_models) or 'no model named'})"
        if self.cost_usd is None:
            return unpriced
        money = f"${self.cost_usd:,.4f}"
        return money if self.complete else f"{money} + {unpriced}"

    def line(self) -> str:
        """``$0.0123 (genai-prices 0.2.3)``, ``unpriced (MODEL)``, plus what the agent reported:
        the cost as every command prints it for people (``show``, ``metrics``, the report)."""
        line = self.label() + (f" ({self.prices})" if self.calls else "")
        if self.reported_cost_usd is not None:
            line += f"; the agent reported ${self.reported_cost_usd:,.4f}"
        return line

    def left_out(self) -> str:
        """Why no whole cost can be given: ``""`` when every call was priced (or there was no
        call), else ``1 of 2 calls unpriced (MODEL) by genai-prices 0.2.3``: what an export
        says in place of a cost figure it leaves out rather than give a partial sum."""
        if self.complete:
            return ""
        return (f"{self.calls - self.priced_calls} of {self.calls} calls unpriced "
                f"({', '.join(self.unpriced_models) or 'no model named'}) by {self.prices}")

    def to_dict(self) -> dict:
        return {**asdict(self), "complete": self.complete, "label": self.label()}

    def cost_object(self) -> dict:
        """The ``cost`` object of ``metrics --json``, ``show --json`` and the exports: ``to_dict``
        without ``run_id`` (the object sits in the run's own record)."""
        d = self.to_dict()
        d.pop("run_id")
        return d

    @classmethod
    def of_dict(cls, d: dict, run_id: str = "") -> RunCost:
        """The cost of a ``to_dict`` (``run_id`` for one without it: a ``cost`` object of JSON)."""
        names = ("cost_usd", "calls", "priced_calls", "unpriced_models", "prices", "reported_cost_usd")
        return cls(run_id=d.get("run_id", run_id), **{k: d[k] for k in names if k in d})


def _require(store: Store) -> None:
    from .errors import StoreError

    if store.catalog.projections.get(CostsProjection.name) is None:
        raise StoreError("this store was opened without the costs projection; open it with the default "
                         "projections (Store(root)) to read costs")


_SUMS = ("count(*), count(cost_usd), sum(cost_usd), sum(reported_cost_usd), "
         "json_group_array(DISTINCT CASE WHEN cost_usd IS NULL THEN coalesce(nullif(model, ''), '?') END)")
"""What a :class:`RunCost` sums over ``usage_costs`` rows (see :func:`_fill`)."""


def _fill(c: RunCost, calls: int, priced: int, cost: float | None, reported: float | None, models: str) -> RunCost:
    import json

    c.calls, c.priced_calls, c.cost_usd, c.reported_cost_usd = calls, priced, cost, reported
    c.unpriced_models = sorted(m for m in json.loads(models) if m)
    return c


def run_costs(store: Store, run_ids: Sequence[str] | None = None, progress=None) -> dict[str, RunCost]:
    """The cost of each run (default: every run), by id; the costs projection is caught up
    with those runs first."""
    _require(store)
    ids = store.run_ids() if run_ids is None else list(run_ids)
    store.catch_up([CostsProjection.name], ids, progress=progress)
    out = {r: RunCost(run_id=r, prices=store.catalog.projections.get("costs").prices) for r in ids}
    for run_id, *sums in store.catalog.conn.execute(f"SELECT run_id, {_SUMS} FROM usage_costs GROUP BY run_id"):
        c = out.get(run_id)
        if c is not None:
            _fill(c, *sums)
    return out


def part_cost_details(store: Store, run_id: str) -> dict[int, RunCost]:
    """The cost of each part of a run as a :class:`RunCost` (its calls, those priced, the
    unpriced models, what the agent reported), for a reader that must not pass a part's
    partial sum as its cost (ATIF's step ``cost_usd``); parts attributed as in
    :func:`part_costs`."""
    _require(store)
    store.catch_up([CostsProjection.name], [run_id])
    prices = store.catalog.projections.get("costs").prices
    rows = store.catalog.conn.execute(f"SELECT part, {_SUMS} FROM usage_costs WHERE run_id=? AND part IS NOT NULL "
                                      "GROUP BY part ORDER BY part", [run_id])
    return {part: _fill(RunCost(run_id=run_id, prices=prices), *sums) for part, *sums in rows}


def call_costs(store: Store, run_id: str) -> list[dict]:
    """Every priced (or unpriced) call of a run, by seq: the ``usage_costs`` rows."""
    _require(store)
    store.catch_up([CostsProjection.name], [run_id])
    return list(store.catalog.query("SELECT * FROM usage_costs WHERE run_id=? ORDER BY seq", [run_id]))


def part_costs(store: Store, run_id: str) -> dict[int, float | None]:
    """Cost per part of a run (calls without a part before any count for none); None for a
    part whose calls were all unpriced."""
    _require(store)
    store.catch_up([CostsProjection.name], [run_id])
    rows = store.catalog.conn.execute("SELECT part, sum(cost_usd) FROM usage_costs WHERE run_id=? AND part IS NOT NULL "
                                      "GROUP BY part ORDER BY part", [run_id])
    return dict(rows.fetchall())
