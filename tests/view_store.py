"""Stores of many runs for the viewer's tests and bench, written fast through the library writer
(no capture): identity, parts, token usage, a test run and an end, with varied values so sorts
and filters have something to tell apart. Deterministic for a given ``n``."""

from __future__ import annotations

import random

from agtrace.eventlog import PartEnded, RunEnded, RunStarted, Store, TestsRan, Usage, UsageReported

SECOND = 10**9
T0 = 1_790_000_000 * SECOND
AGENTS = ("claude-code", "codex", "opencode")
MODELS = ("claude-sonnet-4-5", "gpt-5-codex", "qwen3-coder")
STATUSES = ("completed", "completed", "completed", "failed", "limit")
HOSTILE_TASK = "swe/<img src=x onerror=\"window.PWNED=1\">"


def run_values(i: int) -> dict:
    """What run ``i`` of a store made by :func:`make_store` holds."""
    rng = random.Random(i)
    total = rng.randint(3, 12)
    return {
        "agent": AGENTS[i % 3], "model": MODELS[(i // 3) % 3], "task_id": f"swe/task-{i % 7:02d}",
        "tags": {"exp": "a" if i % 2 else "b", "seed": str(i % 5)}, "tokens": rng.randint(1_000, 900_000),
        "parts": rng.randint(1, 6), "passed": rng.randint(0, total), "total": total,
        "status": STATUSES[i % len(STATUSES)], "started": T0 + i * 60 * SECOND, "seconds": rng.randint(5, 3000),
    }


def make_store(root, n: int, *, hostile: bool = True) -> list[str]:
    """``n`` ended runs (oldest first); with ``hostile``, run 0's task, tag and message are HTML."""
    store = Store(root)
    ids = []
    try:
        for i in range(n):
            v = run_values(i)
            task = HOSTILE_TASK if hostile and i == 0 else v["task_id"]
            tags = {**v["tags"], "note": "<script>window.PWNED=2</script>"} if hostile and i == 0 else v["tags"]
            started = RunStarted(agent=v["agent"], model=v["model"], task_id=task, tags=tags,
                                 prompt="<b onmouseover=\"window.PWNED=3\">fix it</b>")
            t = v["started"]
            w = store.create_run(started, ts=t, durability="off")
            step = v["seconds"] * SECOND // (v["parts"] + 2)
            for p in range(1, v["parts"] + 1):
                w.append(PartEnded(part_kind="message", title=f"step {p}"), ts=t + p * step, part=p)
            w.append(UsageReported(usage=Usage(input=v["tokens"] * 3 // 4, output=v["tokens"] - v["tokens"] * 3 // 4)),
                     ts=t + (v["parts"] + 1) * step)
            w.append(TestsRan(suite="pytest", passed=v["passed"], failed=v["total"] - v["passed"], total=v["total"]),
                     ts=t + (v["parts"] + 1) * step + 1)
            w.append(RunEnded(status=v["status"]), ts=t + v["seconds"] * SECOND)
            store.close_writer(w)
            ids.append(w.run_id)
    finally:
        store.close()
    return ids
