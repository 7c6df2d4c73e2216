"""One store used from several threads of one process, as a library user's threaded harness and
the viewer's request threads use it: every frame and blob written whole, every read right.

zstd contexts are not safe to share between threads; one shared context made concurrent writers
write frames that fail their check ("Src size is incorrect") and concurrent readers crash the
process ("double free or corruption"). The work runs in a child process, so that a crash fails
the test instead of ending pytest."""

from __future__ import annotations

import subprocess
import sys
import textwrap

_WRITERS = """
import os, sys, threading
from agtrace.eventlog import MessageAdded, RunStarted, Store

store = Store(sys.argv[1])
errors = []

def write(k):
    try:
        w = store.create_run(RunStarted(agent=f"agent-{k}"))
        for i in range(EVENTS):
            text = f"{k} {i} " + os.urandom(100).hex()
            if i % 500 == 0:
                text += os.urandom(40_000).hex()  # over the inline limit: a blob
            inline, blob, _ = store.blobs.inline_or_put(text)
            w.append(MessageAdded(role="assistant", text=inline, text_blob=blob), part=i // 10 + 1)
        store.close_writer(w)
    except Exception as exc:
        errors.append(repr(exc))

threads = [threading.Thread(target=write, args=(k,)) for k in range(THREADS)]
for t in threads:
    t.start()
for t in threads:
    t.join()
report = store.verify()
counts = sorted(sum(1 for _ in store.read(r.id)) for r in store.runs())
print(errors, report.ok, counts)
"""

_READERS = """
import os, sys, threading
from agtrace.eventlog import MessageAdded, RunStarted, Store

store = Store(sys.argv[1])
ids = []
for k in range(THREADS):
    w = store.create_run(RunStarted(agent=f"agent-{k}"))
    for i in range(EVENTS):
        text = f"{k} {i} " + os.urandom(100).hex()
        if i % 500 == 0:
            text += os.urandom(40_000).hex()
        inline, blob, _ = store.blobs.inline_or_put(text)
        w.append(MessageAdded(role="assistant", text=inline, text_blob=blob), part=i // 10 + 1)
    store.close_writer(w)
    ids.append(w.run_id)
errors = []

def read(run_id):
    try:
        for _ in range(4):
            reader = Store(sys.argv[1])
            events = list(reader.read(run_id))
            assert len(events) == EVENTS + 1, len(events)
            blobs = [r.event for r in events if getattr(r.event, "text_blob", "")]
            assert len(blobs) == EVENTS // 500, len(blobs)
            for ev in blobs:
                assert len(reader.text(ev.text, ev.text_blob)) > 80_000
    except Exception as exc:
        errors.append(repr(exc))

threads = [threading.Thread(target=read, args=(r,)) for r in ids]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(errors)
"""


def _run(script: str, root, *, events: int, threads: int = 3) -> str:
    code = textwrap.dedent(script).replace("EVENTS", str(events)).replace("THREADS", str(threads))
    done = subprocess.run([sys.executable, "-c", code, str(root)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"the child ended with {done.returncode}: {done.stderr[-2000:]}"
    return done.stdout.strip()


def test_runs_written_from_several_threads_at_once_are_whole(tmp_path):
    out = _run(_WRITERS, tmp_path / "store", events=30_000)
    assert out == "[] True [30001, 30001, 30001]"


def test_runs_read_from_several_threads_at_once_read_right(tmp_path):
    out = _run(_READERS, tmp_path / "store", events=20_000)
    assert out == "[]"
