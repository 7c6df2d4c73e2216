"""`agtrace ls` for people and scripts, through the CLI as a user types it (issue 13, item 5).

A store of 25 runs whose token totals do not follow their start order, with tasks, tags and
end statuses of their own, next to a run made with `agtrace new` / `append`.
"""

from __future__ import annotations

import json

import pytest

from agtrace.eventlog import RunEnded, RunStarted, Store, Usage, UsageReported

from .conftest import run_agtrace

SECOND = 10**9
T0 = 1_800_000_000 * SECOND
N = 25
# the oldest runs used the most tokens: "newest three" and "top three" differ
TOKENS = [10_000 - 300 * i for i in range(N)]
JSON_KEYS = {"id", "agent", "agent_version", "model", "task_id", "status", "reason", "parts", "events",
             "started_at", "ended_at", "last_ts", "parent_run", "tags", "exit_code", "projection_errors",
             "duration_s", "tokens", "cost"}


@pytest.fixture(scope="module")
def listed(tmp_path_factory):
    root = tmp_path_factory.mktemp("ls") / "store"
    store = Store(root)
    ids = []
    for i in range(N):
        started = RunStarted(agent="claude" if i % 2 else "codex", model="m", task_id=f"swe/task-{i % 3}",
                             tags={"exp": "a" if i < 10 else "b"})
        w = store.create_run(started, ts=T0 + i * 60 * SECOND)
        w.append(UsageReported(usage=Usage(input=TOKENS[i])), ts=T0 + i * 60 * SECOND + 1)
        w.append(RunEnded(status="failed" if i % 5 == 0 else "completed"), ts=T0 + i * 60 * SECOND + 2)
        store.close_writer(w)
        ids.append(w.run_id)
    store.close()
    return root, ids


def _ids(proc) -> list[str]:
    """The run ids of a human listing (the first column of every table row)."""
    lines = proc.stdout.decode().splitlines()
    return [line.split()[0] for line in lines[1:] if line and not line.startswith("…")]


def test_newest_first_with_a_default_limit_and_the_rest_counted(listed):
    root, ids = listed
    proc = run_agtrace(["ls"], root, check=True)
    out = proc.stdout.decode()
    assert _ids(proc) == ids[::-1][:20]
    assert out.splitlines()[-1] == f"… {N - 20} more (of {N}); --limit N or --all shows them"
    assert _ids(run_agtrace(["ls", "--all"], root, check=True)) == ids[::-1]
    assert _ids(run_agtrace(["ls", "--reverse", "--limit", "2"], root, check=True)) == ids[:2]
    every = run_agtrace(["ls", "--limit", "100"], root, check=True).stdout.decode()
    assert "more" not in every


def test_sorting_comes_before_the_limit(listed):
    root, ids = listed
    top3 = _ids(run_agtrace(["ls", "--sort", "tokens", "--limit", "3"], root, check=True))
    assert top3 == ids[:3]  # the three biggest token totals, not the newest three
    low3 = _ids(run_agtrace(["ls", "--sort", "tokens", "--reverse", "--limit", "3"], root, check=True))
    assert low3 == ids[::-1][:3]
    rows = json.loads(run_agtrace(["ls", "--sort", "tokens", "--limit", "3", "--json"], root, check=True).stdout)
    assert [r["tokens"] for r in rows] == TOKENS[:3]


def test_task_column_and_filters(listed):
    root, ids = listed
    proc = run_agtrace(["ls", "--all"], root, check=True)
    header, first = proc.stdout.decode().splitlines()[:2]
    assert header.split() == ["ID", "AGENT", "MODEL", "TASK", "STATUS", "PARTS", "TOKENS", "DURATION", "STARTED"]
    assert first.split()[3] == f"swe/task-{(N - 1) % 3}"
    task1 = [r for i, r in enumerate(ids) if i % 3 == 1][::-1]
    assert _ids(run_agtrace(["ls", "--task", "swe/task-1", "--all"], root, check=True)) == task1
    assert _ids(run_agtrace(["ls", "--task", "SWE/*", "--all"], root, check=True)) == ids[::-1]
    assert _ids(run_agtrace(["ls", "--tag", "exp=a", "--all"], root, check=True)) == ids[:10][::-1]
    failed = [r for i, r in enumerate(ids) if i % 5 == 0][::-1]
    assert _ids(run_agtrace(["ls", "--status", "failed"], root, check=True)) == failed
    both = _ids(run_agtrace(["ls", "--status", "failed", "--tag", "exp=b", "--task", "swe/task-2"], root,
                            check=True))
    assert both == [r for i, r in enumerate(ids) if i % 5 == 0 and i >= 10 and i % 3 == 2][::-1]
    assert run_agtrace(["ls", "--task", "nope"], root, check=True).stdout.decode().strip() == "no runs match"


def test_json_keeps_its_shape_and_lists_every_match(listed):
    root, ids = listed
    rows = json.loads(run_agtrace(["ls", "--json"], root, check=True).stdout)
    assert isinstance(rows, list) and [r["id"] for r in rows] == ids[::-1]  # no default limit for scripts
    assert all(set(r) == JSON_KEYS for r in rows)
    assert rows[0]["task_id"] == f"swe/task-{(N - 1) % 3}"
    two = json.loads(run_agtrace(["ls", "--json", "--limit", "2"], root, check=True).stdout)
    assert [r["id"] for r in two] == ids[::-1][:2]


def test_conflicting_or_bad_limits_say_so(listed):
    root, _ = listed
    proc = run_agtrace(["ls", "--all", "--limit", "3"], root)
    assert proc.returncode == 2 and b"--limit N or --all, not both" in proc.stderr
    assert b"Traceback" not in proc.stderr
    proc = run_agtrace(["ls", "--limit", "-1"], root)
    assert proc.returncode == 2 and b"Traceback" not in proc.stderr


def test_hand_fed_runs_list_beside_the_others(tmp_path):
    root = tmp_path / "store"
    old = run_agtrace(["new", "--agent", "hand", "--task-id", "t/old"], root, check=True).stdout.decode().strip()
    new = run_agtrace(["new", "--agent", "hand", "--task-id", "t/new"], root, check=True).stdout.decode().strip()
    run_agtrace(["close", old, "--status", "completed"], root, check=True)
    proc = run_agtrace(["ls"], root, check=True)
    assert _ids(proc) == [new, old]
    assert "t/new" in proc.stdout.decode().splitlines()[1]


@pytest.mark.parametrize("tz", ["UTC", "America/New_York"])
def test_times_are_printed_and_read_in_utc_whatever_the_machines_zone(listed, tz):
    """``export --since 2026-12-03T13:38:12`` (no zone) was read as local time: under
    TZ=America/New_York it exported 0 of 158 events, 158 under UTC, and ``ls`` printed local
    times without saying so. Now a time without a zone is UTC everywhere, ``ls`` prints UTC
    (marked ``Z``), and a time copied from ``ls`` selects the same runs and events anywhere."""
    import time

    root, ids = listed
    env = {"TZ": tz}
    tenth = T0 + 9 * 60 * SECOND
    want = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(tenth / SECOND)) + "Z"
    rows = run_agtrace(["ls", "--all"], root, env=env, check=True).stdout.decode().splitlines()
    printed = next(line for line in rows if line.startswith(ids[9])).split()[-2:]
    assert " ".join(printed) == want
    for since in (want, want[:-1], want[:-1].replace(" ", "T")):  # as printed, and without its zone
        proc = run_agtrace(["ls", "--all", "--json", "--since", since], root, env=env, check=True)
        assert sorted(r["id"] for r in json.loads(proc.stdout)) == sorted(ids[9:]), since
        proc = run_agtrace(["export", "--all", "--since", since, "--format", "jsonl", "-o", "-"], root, env=env,
                           check=True)
        assert len(proc.stdout.splitlines()) == 3 * (N - 9), since
