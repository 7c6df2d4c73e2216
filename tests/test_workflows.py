"""The README's workflows on one real store holding captured, imported and copied runs side by
side, through the CLI as a user types it (issue 13): copy a run, re-score a store, name parts."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from agtrace.capture import Recorder
from agtrace.eventlog import Store, copy_run

from .conftest import FIXTURES, run_agtrace

ROLLOUT = FIXTURES / "codex-rollout" / "localpush_rollout-2026-02-23T13-19-38-019c8a70-dda7-7f33-98ea-f30553347322.jsonl"


def cli(store: Path, *args: str, input: bytes | None = None, ok: bool | None = True):
    proc = run_agtrace(list(args), store, input=input)
    if ok is True:
        assert proc.returncode == 0, f"agtrace {args} failed ({proc.returncode}): {proc.stderr.decode()}"
    return proc


def out(proc) -> str:
    return proc.stdout.decode()


def err(proc) -> str:
    return proc.stderr.decode()


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> dict:
    """A store with a captured demo run, an imported Codex rollout, and the demo run copied
    with `log --json | append` (events only)."""
    root = tmp_path_factory.mktemp("workflows")
    store = root / "store"
    demo = json.loads(out(cli(store, "demo", "--fast", "--json", "--workdir", str(root / "demo"))))
    imported = json.loads(out(cli(store, "import", str(ROLLOUT), "--json")))
    ids = {"captured": demo["run_id"], "imported": imported[0]["runs"][0]}
    appended = out(cli(store, "new")).strip()
    cli(store, "append", appended, input=cli(store, "log", ids["captured"], "--json").stdout)
    ids["appended"] = appended
    return {"store": store, **ids}


@pytest.fixture
def world(base, tmp_path) -> dict:
    """A private copy of the base store (tests add runs and scores to it)."""
    store = tmp_path / "store"
    shutil.copytree(base["store"], store)
    return {**base, "store": store}


# -- 1. agtrace cp ---------------------------------------------------------------------------

def test_cp_is_a_complete_replayable_copy_linked_to_its_source(world, tmp_path):
    s, a = world["store"], world["captured"]
    b = out(cli(s, "cp", a)).strip()
    assert b != a
    show = json.loads(out(cli(s, "show", b, "--json")))
    assert show["tags"]["copied_from"] == a and show["status"] == "completed" and show["parts"] > 15
    events_a = [json.loads(x) for x in out(cli(s, "log", a, "--json")).splitlines()]
    events_b = [json.loads(x) for x in out(cli(s, "log", b, "--json")).splitlines()]
    assert [e["kind"] for e in events_b].count("run_started") == 1
    assert events_b[0]["tags"] == {**events_a[0]["tags"], "copied_from": a}
    same = lambda e: {k: v for k, v in e.items() if k != "tags"}  # noqa: E731
    assert [same(e) for e in events_b] == [same(e) for e in events_a]  # seqs, original ts, parts
    assert min(e["ts"] for e in events_b) == events_b[0]["ts"]  # nothing before its own start

    replayed = {}
    for run in (a, b):
        view = json.loads(out(cli(s, "replay", run, "--part", "15", "--out", str(tmp_path / run), "--json")))
        replayed[run] = view["tree_id"]
    assert replayed[a] == replayed[b]
    assert sorted(p.name for p in (tmp_path / a).rglob("*")) == sorted(p.name for p in (tmp_path / b).rglob("*"))
    assert out(cli(s, "diff", b, "8", "12")) == out(cli(s, "diff", a, "8", "12"))
    assert json.loads(out(cli(s, "verify", b, "--json")))["ok"]


def test_cp_of_a_copy_in_another_store_through_the_python_api(world, tmp_path):
    s, a = world["store"], world["captured"]
    with Store(s) as src, Store(tmp_path / "other") as dest:
        b = copy_run(src, a, into=dest, tags={"why": "backup"})
        assert dest.info(b).tags == {**src.info(a).tags, "copied_from": a, "why": "backup"}
    view = json.loads(out(cli(tmp_path / "other", "replay", b, "--part", "last", "--out", str(tmp_path / "o"), "--json")))
    assert view["tree_id"]
    with Store(s) as src:  # a run whose large output went to the blob store
        with Recorder(src, agent="big") as rec:
            call = rec.tool_call("shell", command="cat big.log")
            rec.tool_result(call, output="".join(f"line {i} of a long log\n" for i in range(20_000)), exit_code=0)
        big = rec.run_id
    copied = json.loads(out(cli(s, "cp", big, "--to", str(tmp_path / "third"), "--json")))
    report = json.loads(out(cli(tmp_path / "third", "verify", copied["id"], "--json")))
    assert report["ok"] and report["blobs"] >= 1
    copied = json.loads(out(cli(s, "cp", a, "--to", str(tmp_path / "third"), "--json")))
    assert copied["copied_from"] == a and copied["store"] == str(tmp_path / "third")
    assert json.loads(out(cli(tmp_path / "third", "verify", copied["id"], "--json")))["ok"]
    assert out(cli(tmp_path / "third", "diff", copied["id"], "8", "12")) == out(cli(s, "diff", a, "8", "12"))


def test_runs_without_trees_say_why_in_words_never_pull_it_again(world, tmp_path):
    s = world["store"]
    copied = cli(s, "replay", world["appended"], "--part", "15", "--out", str(tmp_path / "x"), ok=False)
    assert copied.returncode != 0 and "copied events only, without repository state" in err(copied)
    diff = cli(s, "diff", world["appended"], "8", "12", ok=False)
    assert diff.returncode != 0 and "copied events only, without repository state" in err(diff)
    # parts 1 and 2 name one tree: an empty diff would have been a guess (it printed nothing, exit 0)
    same = cli(s, "diff", world["appended"], "1", "2", ok=False)
    assert same.returncode != 0 and "copied events only, without repository state" in err(same)
    imported = cli(s, "replay", world["imported"], "--part", "1", "--out", str(tmp_path / "y"), ok=False)
    assert imported.returncode != 0 and "imported without repository state" in err(imported)
    c = out(cli(s, "cp", world["imported"])).strip()  # a copy of an imported run says the same
    again = cli(s, "diff", c, "first", "last", ok=False)
    assert "imported without repository state" in err(again)
    for proc in (copied, diff, imported, again):
        assert "pull it again" not in err(proc) and "Traceback" not in err(proc)


def test_verify_of_runs_without_trees_says_they_cannot_replay_and_why(world):
    """Issue 13: replay of the events-only copy failed "while `verify` says OK" without a word;
    the runs are intact (exit 0), and verify now says which parts cannot replay and the cause."""
    s = world["store"]
    copied = cli(s, "verify", world["appended"])
    assert "cannot be replayed: copied events only, without repository state" in out(copied)
    imported = cli(s, "verify", world["imported"])
    assert "cannot be replayed: imported without repository state (import:codex-rollout)" in out(imported)
    assert "cannot be replayed" not in out(cli(s, "verify", world["captured"]))
    assert "2 run(s) intact but with no part to replay" in out(cli(s, "verify"))
    report = json.loads(out(cli(s, "verify", world["appended"], "--json")))
    (check,) = report["checks"]
    assert report["ok"] and check["replayable"] == [] and check["not_replayable"]
    assert all("copied events only" in why for why in check["not_replayable"].values())
    for proc in (copied, imported):
        assert "pull" not in out(proc) + err(proc)


def test_append_copies_events_only_and_keeps_one_identity(world):
    s = world["store"]
    kinds = [json.loads(x)["kind"] for x in out(cli(s, "log", world["appended"], "--json")).splitlines()]
    assert kinds.count("run_started") == 1 and kinds[0] == "run_started"
    again = out(cli(s, "new")).strip()
    appended = cli(s, "append", again, "--json", input=cli(s, "log", world["captured"], "--json").stdout)
    report = json.loads(out(appended))
    assert report["skipped_lines"] == [1] and report["before_start"] == report["appended"]
    assert "skipped the run_started event of line 1" in err(appended)
    assert "timestamps before run" in err(appended) and "agtrace cp" in err(appended)
    # such a run ended "before it started": no duration, not a negative one (`ls` said -4.0s)
    rows = {r["id"]: r for r in json.loads(out(cli(s, "ls", "--json")))}
    assert rows[again]["duration_s"] is None and rows[world["captured"]]["duration_s"] > 0
    assert "duration:      -\n" in out(cli(s, "show", again))
    assert json.loads(out(cli(s, "metrics", again, "--json")))["duration_s"] is None
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    assert "events only" in readme and "agtrace cp" in readme


# -- 2. re-scoring across a store ----------------------------------------------------------------

def test_rescore_all_skips_runs_without_trees_and_goes_on(world):
    s = world["store"]
    copy = out(cli(s, "cp", world["captured"])).strip()
    proc = cli(s, "rescore", "--all", "--name", "unit", "--cmd", "python3 -m unittest", "--json")
    report = json.loads(out(proc))
    scored = {r["run_id"] for r in report["results"]}
    assert scored == {world["captured"], copy} and report["ok"] == 2 and report["failed"] == 0
    reasons = {r["run_id"]: r["reason"] for r in report["unscored_reasons"]}
    assert report["unscored"] == 2
    assert "imported without repository state" in reasons[world["imported"]]
    assert "copied events only" in reasons[world["appended"]]
    human = cli(s, "rescore", "--all", "--name", "unit", "--cmd", "python3 -m unittest")
    assert "not scored: 2" in out(human) and "imported without repository state" in out(human)
    where = cli(s, "rescore", "--where", "agent=codex", "--name", "unit", "--cmd", "true", ok=False)
    assert where.returncode == 1 and "imported without repository state" in out(where)
    assert "nothing was scored" in err(where)


@pytest.mark.parametrize(("cmd", "status", "says"), [
    ("no-such-command-agtrace", "error", "command not found"),
    ("kill -9 $$", "error", "killed by signal 9"),
    ("echo started; sleep 30", "timeout", "started"),
])
def test_a_broken_scorer_is_an_error_with_its_output(world, cmd, status, says):
    s, run = world["store"], world["captured"]
    proc = cli(s, "rescore", run, "--name", "broken", "--cmd", cmd, "--timeout", "2", "--json", ok=False)
    assert proc.returncode == 1, err(proc)
    report = json.loads(out(proc))
    assert report[status] == 1 and report["ok"] == 0
    (row,) = json.loads(out(cli(s, "scores", run, "--name", "broken", "--json")))
    assert row["status"] == status and row["value"] is None and says in row["output_tail"]
    human = out(cli(s, "scores", run))
    assert status in human and says in human and "ok 0.000" not in human


def test_dedupe_is_within_one_scorer_name_and_each_is_its_own_series(world):
    s, run = world["store"], world["captured"]
    first = json.loads(out(cli(s, "rescore", run, "--name", "a", "--cmd", "python3 -m unittest", "--json")))
    second = json.loads(out(cli(s, "rescore", run, "--name", "b", "--cmd", "python3 -m unittest", "--json")))
    assert first["scorer_digest"] == second["scorer_digest"]
    assert (second["ran"], second["skipped"]) == (1, 0)
    (row,) = json.loads(out(cli(s, "scores", run, "--name", "b", "--json")))
    assert row["scorer"] == "b" and row["status"] == "ok"
    again = json.loads(out(cli(s, "rescore", run, "--name", "b", "--cmd", "python3 -m unittest", "--json")))
    assert (again["ran"], again["skipped"]) == (0, 1)
    cli(s, "rescore", run, "--name", "c", "--cmd", "echo v=0.5", "--regex", r"v=(?P<value>[\d.]+)", "--parts", "1-3")
    (row,) = json.loads(out(cli(s, "compare", run, "--json")))
    assert sorted(row["scorers"]) == ["a", "b", "c"]
    assert [p["part"] for p in row["scorers"]["c"]["series"]] == [1, 2, 3]
    assert row["scorers"]["c"]["value"] == 0.5
    human = out(cli(s, "compare", run, "-o", str(s.parent / "c.html")))
    assert "SCORER" in human and all(name in human for name in ("a ", "b ", "c "))


# -- 7. one vocabulary for parts ------------------------------------------------------------------

def _parts_of(proc) -> set:
    return {json.loads(x)["part"] for x in out(proc).splitlines()}


def test_one_part_vocabulary_in_every_command(world, tmp_path):
    s, run = world["store"], world["captured"]
    n = json.loads(out(cli(s, "show", run, "--json")))["parts"]
    assert _parts_of(cli(s, "log", run, "--part", "3-5", "--json")) == {3, 4, 5}
    assert _parts_of(cli(s, "log", run, "--parts", "1,4,last", "--json")) == {1, 4, n}
    assert _parts_of(cli(s, "log", run, "--part", f"{n - 1}-last", "--json")) == {n - 1, n}
    rows = json.loads(out(cli(s, "metrics", run, "--per-part", "--parts", "first,10-12", "--json")))
    assert [r["part"] for r in rows] == [1, 10, 11, 12]
    first = json.loads(out(cli(s, "replay", run, "--part", "first", "--out", str(tmp_path / "f"), "--json")))
    assert first["part"] == 1
    last = json.loads(out(cli(s, "diff", run, "first", "last", "--json")))
    assert (last["part_a"], last["part_b"]) == (1, n)
    page = json.loads(out(cli(s, "report", run, "-o", str(tmp_path / "r.html"), "--part", "last", "--json")))
    assert page["link"].endswith(f"#part-{n}")


def test_rescore_and_bad_selections_speak_the_same_vocabulary(world, tmp_path):
    s, run = world["store"], world["captured"]
    n = json.loads(out(cli(s, "show", run, "--json")))["parts"]
    report = json.loads(out(cli(s, "rescore", run, "--name", "v", "--cmd", "true", "--parts", "2-4", "--json")))
    assert sorted(r["part"] for r in report["results"]) == [2, 3, 4]
    for spelling in ("last", "final"):  # the old word is an alias
        report = json.loads(out(cli(s, "rescore", run, "--name", "w", "--cmd", "true", "--part", spelling, "--json")))
        assert report["selected"] == 1
    bad = [
        cli(s, "log", run, "--part", "3-x", ok=False),
        cli(s, "replay", run, "--part", "3-x", ok=False),
        cli(s, "diff", run, "3-x", "4", ok=False),
        cli(s, "rescore", run, "--name", "v", "--cmd", "true", "--parts", "3-x", ok=False),
        cli(s, "metrics", run, "--per-part", "--parts", "3-x", ok=False),
        cli(s, "report", run, "-o", str(tmp_path / "bad.html"), "--part", "3-x", ok=False),
    ]
    for proc in bad:
        assert proc.returncode != 0 and "cannot read '3-x' as parts" in err(proc), err(proc)
    missing = cli(s, "log", run, "--part", "999", ok=False)
    assert missing.returncode == 2 and f"it has parts 1..{n}" in err(missing)
    one = cli(s, "replay", run, "--part", "1-3", ok=False)
    assert "one part is needed here" in err(one)


# -- 3. raw capture that matches intuition ---------------------------------------------------------

RAW_SCRIPT = """\
echo "STEP look"; cat calc.py
echo "STEP fix add"; python3 -c "import pathlib; p = pathlib.Path('calc.py'); p.write_text(p.read_text().replace('a - b', 'a + b'))"
echo "STEP add test"; python3 -c "open('test_calc.py', 'w').write('from calc import add\\nassert add(2, 3) == 5\\n')"
echo "STEP run tests"; python3 test_calc.py && echo "tests ok"
"""


def test_raw_markers_start_parts_lines_belong_to_their_part_and_snapshots_come_before_the_next_marker(
        tmp_path):
    s, work = tmp_path / "store", tmp_path / "work"
    work.mkdir()
    (work / "calc.py").write_text("def add(a, b):\n    return a - b\n")
    (tmp_path / "agent.sh").write_text(RAW_SCRIPT)
    summary = json.loads(out(cli(s, "run", "--agent", "raw", "--marker", "^STEP", "--workdir", str(work), "--json",
                                 "-q", "--", "bash", str(tmp_path / "agent.sh"))))
    run = summary["run_id"]
    assert summary["status"] == "completed" and summary["parts"] == 4
    titles = [json.loads(x)["title"] for x in out(cli(s, "log", run, "--kind", "part_ended", "--json")).splitlines()]
    assert titles == ["STEP look", "STEP fix add", "STEP add test", "STEP run tests"]
    lines = [json.loads(x) for x in out(cli(s, "log", run, "--kind", "line_logged", "--json")).splitlines()]
    assert all(e["part"] is not None for e in lines)
    by_part = {}
    for e in lines:
        by_part.setdefault(e["part"], []).append(e["text"])
    assert by_part[1] == ["STEP look", "def add(a, b):", "    return a - b"]
    assert by_part[4] == ["STEP run tests", "tests ok"]
    part4 = [json.loads(x) for x in out(cli(s, "log", run, "--part", "4", "--json")).splitlines()]
    assert [e["text"] for e in part4 if e["kind"] == "line_logged"] == ["STEP run tests", "tests ok"]
    transcript = out(cli(s, "replay", run, "--part", "4", "--transcript"))
    assert "tests ok" in transcript and "return a - b" in transcript

    def tree(part: int) -> dict[str, str]:
        where = tmp_path / f"part{part}"
        cli(s, "replay", run, "--part", str(part), "--out", str(where))
        return {p.name: p.read_text() for p in where.iterdir() if p.is_file()}

    assert "a - b" in tree(1)["calc.py"]  # the fix printed after "STEP fix add" is not in part 1
    two = tree(2)
    assert "a + b" in two["calc.py"] and "test_calc.py" not in two  # the fix, and nothing after it
    assert "test_calc.py" in tree(3)
    stat = out(cli(s, "diff", run, "1", "2", "--name-only")).split()
    assert stat == ["calc.py"]


def test_echo_shows_the_agents_lines_on_stderr_redacted_and_leaves_stdout_to_the_summary(tmp_path):
    """`run --echo` copies each line the agent prints (stdout and stderr) to stderr as it is
    read, redacted as it is stored; stdout still holds only the --json summary. Without it the
    agent's lines are stored but not shown."""
    s, work = tmp_path / "store", tmp_path / "work"
    work.mkdir()
    key = "sk-" + "abcdefghij" * 3
    # stdout and stderr are read by two threads: the pauses keep the stderr line inside part 1
    script = (f"echo 'STEP one'; echo hello; sleep 0.3; echo oops >&2; sleep 0.3; echo 'STEP two'; "
              f"echo 'OPENAI_API_KEY={key}'")
    shown = cli(s, "run", "--echo", "--json", "--marker", "^STEP", "--workdir", str(work), "--", "sh", "-c", script)
    summary = json.loads(out(shown))
    assert summary["status"] == "completed" and summary["parts"] == 2
    lines = err(shown).splitlines()
    assert {"STEP one", "hello", "oops", "STEP two"} <= set(lines), lines
    assert key not in err(shown) and any(x.startswith("OPENAI_API_KEY=[REDACTED") for x in lines), lines
    stored = [json.loads(x)["text"] for x in out(cli(s, "log", summary["run_id"], "--kind", "line_logged",
                                                     "--json")).splitlines()]
    assert [x for x in lines if x in stored] == [x for x in stored if x in lines]  # as stored, in order per stream
    quiet = cli(s, "run", "--json", "--marker", "^STEP", "--workdir", str(work), "--", "sh", "-c", script)
    assert not {"hello", "oops"} & set(err(quiet).splitlines())  # (part lines show marker lines as titles)


def test_the_part_vocabulary_parser():
    from agtrace.eventlog import BadPartSelection, parse_parts

    parts = [1, 2, 3, 5, 8]
    cases = {"3": [3], "first": [1], "LAST": [8], "final": [8], "all": parts, "2-5": [2, 3, 5],
             "first-3": [1, 2, 3], "5..last": [5, 8], " 1 , 8 ,1": [1, 8], "0,2": [0, 2], "0-2": [0, 1, 2]}
    for text, want in cases.items():
        assert parse_parts(text).resolve(parts, base=True) == want, text
    assert parse_parts("changed").resolve(parts, changed=[2, 5]) == [2, 5]
    assert parse_parts([8, 1]).resolve(parts) == [1, 8]
    assert parse_parts("last").one(parts) == 8 and not parse_parts("1,2").single
    for bad, says in {"x": "cannot read 'x'", "3-": "cannot read '3-'", "": "no parts named",
                      "5-2": "is empty", "4": "has no part 4", "0": "has no part 0"}.items():
        with pytest.raises(BadPartSelection, match=says):
            parse_parts(bad).resolve(parts)
    with pytest.raises(BadPartSelection, match="no completed part"):
        parse_parts("last").resolve([])
    with pytest.raises(BadPartSelection, match="needs the run's trees"):
        parse_parts("changed").resolve(parts)
