"""A store opened in a parent and used by its forked children (a harness's ``multiprocessing``
pool over trajectories, the ``fork`` start method): each child opens its own catalog connection.

SQLite forbids using a connection across ``fork``. Using the inherited one also inherits its
lock: a child forked while a parent thread was inside a catalog transaction (a writer's flusher
folding projections, a ``sync``) waited forever for a lock no thread of its own would release.
The work runs in a child process, so that a hang or crash fails the test instead of pytest."""

from __future__ import annotations

import subprocess
import sys
import textwrap

_SCRIPT = """
import multiprocessing, os, sqlite3, sys, threading, time
from agtrace.eventlog import MessageAdded, RunEnded, RunStarted, Store
from agtrace.eventlog.database import transaction

root = sys.argv[1]
store = Store(root)
w = store.create_run(RunStarted(agent="parent"))
store.close_writer(w)

def job(k):
    w = store.create_run(RunStarted(agent=f"child-{k}"))
    for i in range(500):
        w.append(MessageAdded(role="assistant", text=f"{k} {i}"), part=i // 10 + 1)
    w.append(RunEnded(status="completed"))
    store.close_writer(w)
    return len(store.runs())

if __name__ == "__main__":
    inside = threading.Event()

    def hold():  # a parent thread inside a catalog transaction while the pool forks
        with transaction(store.catalog.conn):
            inside.set()
            time.sleep(1.0)

    holder = threading.Thread(target=hold)
    holder.start()
    inside.wait()
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(2) as pool:
        result = pool.map_async(job, range(4))
        holder.join()
        seen = result.get(timeout=60)
    runs = store.runs()
    check = sqlite3.connect(os.path.join(root, "catalog.db")).execute("PRAGMA integrity_check").fetchone()[0]
    print(min(seen) >= 2, len(runs), sum(r.status == "completed" for r in runs), store.verify().ok, check)
"""


def test_forked_children_of_a_parent_inside_a_catalog_transaction_write_their_runs(tmp_path):
    code = textwrap.dedent(_SCRIPT)
    try:
        done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "store")], capture_output=True,
                              text=True, timeout=120)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"the children hung: {exc.stderr}") from None
    assert done.returncode == 0, f"the script ended with {done.returncode}: {done.stderr[-2000:]}"
    assert done.stdout.split() == ["True", "5", "4", "True", "ok"]
