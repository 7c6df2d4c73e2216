"""Write tests/golden/log-v1: a store with one run holding every event type (fixed ids and ts).

Run once per format version; never regenerate an existing version's golden log — it is the
evidence that old logs keep reading.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from agtrace.eventlog import Store, record_to_json

sys.path.insert(0, str(Path(__file__).resolve().parent.parent.parent))
from tests.conftest import one_of_each  # noqa: E402

RUN_ID = "01JGOLDENV1000000000000000"
T0 = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z

if __name__ == "__main__":
    out = Path(sys.argv[1])
    if out.exists():
        shutil.rmtree(out)
    store = Store(out / "store")
    events = one_of_each()
    writer = store.create_run(events[0], run_id=RUN_ID, ts=T0, durability="strict")
    for i, ev in enumerate(events[1:], 1):
        part = 1 if 2 <= i <= 11 else None
        writer.append(ev, part=part, ts=T0 + i * 1_000_000)
    store.close_writer(writer)
    lines = [record_to_json(r).decode() for r in store.read(RUN_ID)]
    (out / "expected.jsonl").write_text("\n".join(lines) + "\n")
    store.close()
    for f in (out / "store").glob("catalog.db*"):
        f.unlink()
    for f in (out / "store" / "runs" / RUN_ID).glob("lock"):
        f.unlink()
