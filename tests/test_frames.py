"""DataFrames: runs_df is `ls --json`, and docs/frames.md runs as written."""

from __future__ import annotations

import json
import re

import pytest

from agtrace.eventlog import RunEnded, RunStarted, Store, Usage, UsageReported, tag_run

from .conftest import REPO, run_agtrace

pd = pytest.importorskip("pandas")


def test_runs_df_equals_ls_json(tmp_path):
    from agtrace.replay import runs_df

    store = Store(tmp_path)
    for i, model in enumerate(("claude-sonnet-4-5", "no-such-model", "")):
        w = store.create_run(RunStarted(agent=f"a{i}", model=model, tags={"i": str(i)}), durability="off")
        w.append(UsageReported(usage=Usage(input=1000 * (i + 1), output=10)), part=1)
        if i != 2:
            w.append(RunEnded(status="completed"))
        store.close_writer(w)
    first = store.run_ids()[0]
    tag_run(store, first, {"verdict": "ok"})
    df = runs_df(store)
    store.close()
    listed = json.loads(run_agtrace(["ls", "--json"], tmp_path, check=True).stdout)
    assert list(df["id"]) == [r["id"] for r in listed]
    for row, want in zip(df.to_dict("records"), listed, strict=True):
        cost = want.pop("cost")
        got = {k: row[k] for k in want}
        got = {k: (None if not isinstance(v, (list, dict)) and pd.isna(v) else v) for k, v in got.items()}
        assert got == want
        assert (row["cost_label"], row["prices"]) == (cost["label"], cost["prices"])
        assert row["cost_usd"] == cost["cost_usd"] or (cost["cost_usd"] is None and pd.isna(row["cost_usd"]))
    by_id = df.set_index("id")
    assert df["started"].dt.tz is not None and by_id.loc[first, "tags"] == {"i": "0", "verdict": "ok"}
    assert df.loc[df["model"] == "no-such-model", "cost_label"].item() == "unpriced (no-such-model)"
    with Store(tmp_path) as again:
        assert list(runs_df(again, limit=1, offset=1)["id"]) == [listed[1]["id"]]


def test_docs_frames_page_runs_as_written():
    page = (REPO / "docs" / "frames.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", page, re.S)
    assert len(blocks) >= 4
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, "docs/frames.md", "exec"), namespace)  # noqa: S102 - the page is ours
    namespace["store"].close()
