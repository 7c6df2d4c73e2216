"""Agents' homes (`agtrace import --from`), recursive directory import, and sessions that went on.

The homes are laid out as the real CLIs lay them out, from what the pinned CLIs wrote
(tests/golden/real/<cli>@<version>/home/), Codex's rollouts spread over several days of the
``sessions/YYYY/MM/DD/`` layout. Expected counts come from the files themselves.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from agtrace.capture import ImportError_, find_home, import_home
from agtrace.capture.importers import IMPORTERS, import_source
from agtrace.eventlog import Store

from .conftest import FIXTURES, run_agtrace

REAL = Path(__file__).parent / "golden" / "real"
ROLLOUTS = sorted(REAL.glob("codex@*/home/.codex/sessions/*/*/*/rollout-*.jsonl"))


def codex_home(tmp_path: Path, days=("2026/11/29", "2026/11/30", "2026/12/01")) -> Path:
    """A CODEX_HOME with the real rollouts copied into the YYYY/MM/DD layout, one day each,
    plus one renamed copy per day so that several sessions share a day."""
    home = tmp_path / "codex-home"
    n = 0
    for day in days:
        for rollout in ROLLOUTS:
            dest = home / "sessions" / day
            dest.mkdir(parents=True, exist_ok=True)
            lines = rollout.read_text().splitlines()
            meta = json.loads(lines[0])
            n += 1  # a distinct session: its own id (as another run of the CLI would have)
            meta["payload"]["id"] = f"{meta['payload']['id'][:-4]}{n:04d}"
            (dest / f"rollout-{day.replace('/', '-')}-{n}.jsonl").write_text(
                "\n".join([json.dumps(meta), *lines[1:]]) + "\n")
    (home / "sessions" / "2026" / "12" / ".DS_Store").write_text("not a session")
    return home


def test_find_home_honours_the_tools_own_variables(tmp_path):
    env = {"HOME": str(tmp_path)}
    for agent in ("claude", "codex", "opencode", "gemini"):
        assert find_home(agent, env).roots == ()
    looked = {a: find_home(a, env).looked for a in ("claude", "codex", "opencode", "gemini")}
    assert looked["claude"] == (tmp_path / ".claude" / "projects",)
    assert looked["codex"] == (tmp_path / ".codex" / "sessions", tmp_path / ".codex" / "archived_sessions")
    assert looked["opencode"] == (tmp_path / ".local" / "share" / "opencode",)
    assert looked["gemini"] == (tmp_path / ".gemini" / "tmp",)
    env = {"HOME": str(tmp_path), "CLAUDE_CONFIG_DIR": "/c", "CODEX_HOME": "/x",
           "XDG_DATA_HOME": "/d", "OPENCODE_DB": "/elsewhere/oc.db", "GEMINI_CLI_HOME": "/g"}
    looked = {a: find_home(a, env).looked for a in ("claude", "codex", "opencode", "gemini")}
    assert looked == {"claude": (Path("/c/projects"),),
                      "codex": (Path("/x/sessions"), Path("/x/archived_sessions")),
                      "opencode": (Path("/d/opencode"), Path("/elsewhere/oc.db")),
                      "gemini": (Path("/g/.gemini/tmp"),)}
    with pytest.raises(ImportError_, match="one of: claude, codex, opencode, gemini"):
        find_home("aider", env)


def test_from_codex_imports_every_session_of_a_real_layout_then_only_what_changed(tmp_path):
    home = codex_home(tmp_path)
    sessions = sorted(home.rglob("rollout-*.jsonl"))
    assert len(sessions) == 3 * len(ROLLOUTS) >= 6
    env = {"CODEX_HOME": str(home)}
    store = tmp_path / "store"
    proc = run_agtrace(["import", "--from", "codex", "--json", "-j", "2"], store, env=env)
    assert proc.returncode == 0, proc.stderr.decode()
    out = json.loads(proc.stdout)
    assert out["unchanged"] == 0 and [Path(r["source"]) for r in out["results"]] == sessions
    runs = [rid for r in out["results"] for rid in r["runs"]]
    assert len(runs) == len(set(runs)) == len(sessions)
    with Store(store) as s:
        assert sorted(s.run_ids()) == sorted(runs)
        assert {s.info(r).status for r in runs} == {"completed"}

    again = json.loads(run_agtrace(["import", "--from", "codex", "--json"], store, env=env).stdout)
    assert (again["unchanged"], again["results"]) == (len(sessions), [])

    grown = sessions[-1]  # the session went on: the CLI appended to its rollout
    before = next(r["runs"][0] for r in out["results"] if Path(r["source"]) == grown)
    lines = grown.read_text().splitlines()
    grown.write_text("\n".join([*lines, *lines[-3:]]) + "\n")
    third = json.loads(run_agtrace(["import", "--from", "codex", "--json"], store, env=env).stdout)
    assert third["unchanged"] == len(sessions) - 1
    (result,) = third["results"]
    (new,) = result["runs"]
    assert new != before and result["parents"] == {new: before}
    with Store(store) as s:
        started = next(iter(s.read(new))).event
        assert started.parent_run == before
        assert s.has_run(before)  # never overwritten

    (store / "cache" / "imports" / "codex.json").unlink()  # the cache only saves time
    fourth = json.loads(run_agtrace(["import", "--from", "codex", "--json"], store, env=env).stdout)
    assert all(r["runs"] == [] and r["existing"] for r in fourth["results"])


def test_a_directory_is_searched_recursively(store, tmp_path):
    home = codex_home(tmp_path, days=("2026/11/30", "2026/12/01"))
    proc = run_agtrace(["import", "--json", str(home / "sessions" / "2026")], tmp_path / "s")
    results = json.loads(proc.stdout)
    assert proc.returncode == 0
    assert sorted(Path(r["source"]) for r in results) == sorted(home.rglob("rollout-*.jsonl"))
    assert all(r["format"] == "codex-rollout" and r["runs"] for r in results)


def test_from_claude_imports_the_project_transcripts(tmp_path):
    config = tmp_path / "claude-config"
    for d in REAL.glob("claude-code@*/home/.claude"):
        shutil.copytree(d, config, dirs_exist_ok=True)
    files = sorted((config / "projects").rglob("*.jsonl"))
    result = import_home(Store(tmp_path / "store"), "claude", env={"CLAUDE_CONFIG_DIR": str(config)})
    assert [Path(r.source) for r in result.results] == files
    assert all(r.format == "claude-session" and len(r.runs) == 1 and not r.error
               for r in result.results)


def _db_sessions(db: Path) -> list[str]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return [r[0] for r in conn.execute("SELECT id FROM session")]


def test_from_opencode_reads_its_database_and_its_older_json_storage(tmp_path):
    store = Store(tmp_path / "store")
    db_home = REAL / "opencode@1.18.33" / "home" / ".local" / "share"
    result = import_home(store, "opencode", env={"XDG_DATA_HOME": str(db_home), "HOME": "/none"})
    (db,) = [Path(r.source) for r in result.results]
    assert db.name == "opencode.db" and result.results[0].format == "opencode-storage"
    runs = result.results[0].runs
    assert len(runs) == len(_db_sessions(db)) == 1
    assert store.info(runs[0]).status == "completed"
    assert [next(iter(store.read(runs[0]))).event.tags["session_id"]] == _db_sessions(db)

    legacy = REAL / "opencode@1.1.65" / "home" / ".local" / "share"
    result = import_home(store, "opencode", env={"XDG_DATA_HOME": str(legacy)})
    (res,) = result.results
    assert Path(res.source).name == "storage" and len(res.runs) == len(
        list((legacy / "opencode" / "storage" / "session").glob("*/*.json")))


def test_opencode_storage_and_export_of_a_session_are_the_same_run_content(tmp_path):
    """The database and OpenCode's own export of the same session give the same parts."""
    from agtrace.capture.importers.base import import_source

    store = Store(tmp_path / "store")
    d = REAL / "opencode@1.18.33"
    a = import_source(store, d / "home/.local/share/opencode/opencode.db", IMPORTERS["opencode-storage"])
    b = import_source(store, d / "export.json", IMPORTERS["opencode-export"])

    def parts(run_id):
        return [(r.event.part_kind, r.event.tool, r.event.title) for r in store.read(run_id)
                if r.kind == "part_ended"]

    assert parts(a.runs[0]) == parts(b.runs[0]) and len(parts(a.runs[0])) == 11


def test_opencode_storage_ids_that_are_not_plain_names_are_bad_records_and_nothing_outside_is_read(tmp_path):
    """Session and message ids come from the JSON files and name directories: an id with ``..``,
    a slash, a backslash or NUL, or an absolute one, is a bad record of its file and nothing
    is read under it; the other sessions import as before."""
    from .secret_corpus import tree_views

    storage = tmp_path / "oc" / "storage"
    shutil.copytree(REAL / "opencode@1.1.65" / "home/.local/share/opencode/storage", storage)
    good = sorted((storage / "session").glob("*/*.json"))
    outside = tmp_path / "oc" / "outside_private"  # storage/message/../../outside_private
    outside.mkdir()
    (outside / "private_note.json").write_text(json.dumps(
        {"id": "msg_zz", "sessionID": "x", "role": "user", "time": {"created": 1796165119200},
         "note": "PRIVATE-CONTENT-OUTSIDE-STORAGE-12345"}))
    template = json.loads(good[0].read_text())
    hostile = {"ses_evil1": "../../outside_private", "ses_evil2": str(outside),
               "ses_evil3": "..\\..\\outside_private", "ses_evil4": "ses\u0000x", "ses_evil5": ".."}
    for name, sid in hostile.items():
        (good[0].parent / f"{name}.json").write_text(json.dumps({**template, "id": sid}))
    # a plain session whose message names ../../outside_private as its id (parts: part/<id>/)
    (good[0].parent / "ses_evil6.json").write_text(json.dumps({**template, "id": "ses_evil6"}))
    (storage / "message" / "ses_evil6").mkdir()
    (storage / "message" / "ses_evil6" / "msg_evil.json").write_text(json.dumps(
        {"id": "../../outside_private", "sessionID": "ses_evil6", "role": "user",
         "time": {"created": 1796165119200}}))

    proc = run_agtrace(["import", "--json", str(storage)], tmp_path / "store")
    assert proc.returncode == 1, proc.stderr.decode()  # bad records, the rest imported
    (result,) = json.loads(proc.stdout)
    assert not result["error"] and len(result["runs"]) == len(good) + len(hostile) + 1
    bad = {b["location"].rsplit("/", 1)[1]: b["message"] for b in result["bad_records"]}
    assert set(bad) == {f"{name}.json" for name in hostile} | {"msg_evil.json"}, bad
    assert all("unsafe component" in m and "were not read" in m for m in bad.values())
    assert "PRIVATE-CONTENT" not in proc.stdout.decode() + proc.stderr.decode()
    leaked = [where for where, data in tree_views(tmp_path / "store") if b"PRIVATE-CONTENT" in data]
    assert not leaked
    with Store(tmp_path / "store") as store:
        sessions = {next(iter(store.read(r))).event.tags["session_id"]: r for r in result["runs"]}
        for f in good:  # the real sessions: all their parts, as from the untouched storage
            run = sessions[json.loads(f.read_text())["id"]]
            assert store.info(run).status == "completed"
    clean = tmp_path / "clean" / "storage"
    shutil.copytree(REAL / "opencode@1.1.65" / "home/.local/share/opencode/storage", clean)
    with Store(tmp_path / "clean-store") as store:
        from agtrace.capture.importers.base import import_source

        ref = import_source(store, clean, IMPORTERS["opencode-storage"])
        assert not ref.bad_records and len(ref.runs) == len(good)
        ref_parts = sorted(store.info(r).parts for r in ref.runs)
    with Store(tmp_path / "store") as store:
        assert sorted(store.info(sessions[json.loads(f.read_text())["id"]]).parts for f in good) == ref_parts


def test_from_an_agent_without_a_home_says_where_it_looked(tmp_path):
    proc = run_agtrace(["import", "--from", "claude"], tmp_path / "store", env={"HOME": str(tmp_path)})
    assert proc.returncode == 1
    assert f"{tmp_path}/.claude/projects does not exist" in proc.stderr.decode()
    proc = run_agtrace(["import"], tmp_path / "store")
    assert proc.returncode == 2 and "pass PATHS or --from AGENT" in proc.stderr.decode()
    if "gemini-cli" not in IMPORTERS:  # the importers engineer's format; the home is wired here
        (tmp_path / ".gemini" / "tmp").mkdir(parents=True)
        proc = run_agtrace(["import", "--from", "gemini"], tmp_path / "store",
                           env={"HOME": str(tmp_path)})
        assert proc.returncode == 1 and "no gemini-cli importer" in proc.stderr.decode()


@pytest.mark.skipif("gemini-cli" not in IMPORTERS, reason="no gemini-cli importer")
def test_from_gemini_finds_the_sessions_under_gemini_cli_home(tmp_path):
    """Gemini CLI's own sessions (recorded by the importers' tool runs) in its home layout."""
    samples = sorted((Path(__file__).parent / "golden" / "import" / "tools").glob(
        "gemini-cli*/session-*.json*"))
    chats = tmp_path / ".gemini" / "tmp" / "project-hash" / "chats"
    chats.mkdir(parents=True)
    for s in samples:
        shutil.copy(s, chats / s.name)
    result = import_home(Store(tmp_path / "store"), "gemini", env={"GEMINI_CLI_HOME": str(tmp_path)})
    assert sorted(Path(r.source).name for r in result.results) == sorted(s.name for s in samples)
    assert all(r.format == "gemini-cli" and len(r.runs) == 1 for r in result.results) and samples


def test_a_truncated_or_older_copy_of_a_session_does_not_continue_it(store, tmp_path):
    full = FIXTURES / "claude-code" / "daaain_representative_messages.jsonl"
    lines = full.read_text().splitlines()
    claude = IMPORTERS["claude-session"]

    def source(name: str, text: str) -> Path:
        (tmp_path / name).write_text(text)
        return tmp_path / name

    def parent(result) -> str:
        (run,) = result.runs
        return next(iter(store.read(run))).event.parent_run

    first = import_source(store, full, claude)
    # a copy of the session as it was earlier: not its continuation, an import of its own
    older = import_source(store, source("head6.jsonl", "\n".join(lines[:6]) + "\n"), claude)
    assert older.error == "" and older.parents == {} and parent(older) == ""
    # the session went on: it continues the most complete import it extends, not the older copy
    grown = import_source(store, source("grown.jsonl", "\n".join([*lines, lines[-1]]) + "\n"), claude)
    assert grown.parents == {grown.runs[0]: first.runs[0]} and parent(grown) == first.runs[0]
    # a copy imported while its 8th line was being written (it extends the 6-line copy), then
    # with that line whole: goes on from the torn one
    torn = import_source(store, source("torn.jsonl", "\n".join(lines[:7]) + "\n" + lines[7][:40]), claude)
    assert [b.location for b in torn.bad_records] == ["torn.jsonl:8"] and parent(torn) == older.runs[0]
    done = import_source(store, source("done.jsonl", "\n".join(lines[:9]) + "\n"), claude)
    assert done.parents == {done.runs[0]: torn.runs[0]}
    assert store.verify().ok
