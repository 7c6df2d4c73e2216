"""Write tests/golden/catalog-v0: a store whose catalog.db was made by agtrace before the
projection mechanism (main at bdeb5cc): the log-v1 run, one re-score in its score stream, and
the catalog, metrics and scores tables exactly as that version left them.

Run once, against that checkout (never regenerate it: it is the evidence that an older catalog
is rebuilt on open instead of failing)::

    PYTHONPATH=<a tree whose agtrace/ holds that version's packages> \
        python tests/golden/make_catalog_v0.py tests/golden/catalog-v0
"""

from __future__ import annotations

import shutil
import sqlite3
import sys
from pathlib import Path

from agtrace.eventlog import Scored, Store
from agtrace.replay import score_table
from agtrace.replay.listing import list_runs
from agtrace.replay.projections import update_metrics

RUN_ID = "01JGOLDENV1000000000000000"
T0 = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z

if __name__ == "__main__":
    out = Path(sys.argv[1])
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(Path(__file__).parent / "log-v1" / "store", out / "store")
    store = Store(out / "store")
    scores = store.open_writer(RUN_ID, stream="scores", durability="strict")
    scores.append(Scored(scorer="pytest", scorer_digest="e" * 64, tree_id="a" * 40, scored_part=1,
                         value=0.75, passed=3, failed=1, total=4, status="ok", exit_code=1),
                  part=1, ts=T0 + 10**9)
    scores.close()
    update_metrics(store, RUN_ID)
    score_table.sync_scores(store, RUN_ID)
    listed = list_runs(store)
    assert [r.info.id for r in listed] == [RUN_ID], listed
    store.close()
    conn = sqlite3.connect(out / "store" / "catalog.db")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
    conn.close()
    for f in (out / "store").rglob("*lock"):
        f.unlink()
    for f in (out / "store").glob("catalog.db-*"):
        f.unlink()
