"""No command writes its output into its own store.

`agtrace report RUN -o <a sealed segment of the run>` replaced the segment with the HTML page
and the run read as damaged from seq 1 (verify: "bad segment header"); `-o catalog.db`
overwrote the catalog; `replay --out STORE/runs/x` and `demo --workdir STORE/…` put trees and
agents among the runs. Every output path (`-o`, `--out`, `--to`, `--workdir`, and the defaults
in the current directory) inside the store is now bad usage, refused before anything is
written; a path beside the store still works. Real CLI, a real demo store.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from .conftest import run_agtrace


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("outside")
    store = tmp / "S"
    run_agtrace(["demo", "--fast", "--workdir", str(tmp / "work")], store, check=True)
    run_id = json.loads(run_agtrace(["ls", "--json"], store, check=True).stdout)[0]["id"]
    other = run_agtrace(["cp", run_id], store, check=True).stdout.decode().strip()  # compare takes two
    return store, run_id, other, tmp


def _state(root: Path) -> dict[str, tuple]:
    """Every file under ``root`` with its size and bytes' hash (the catalog's WAL files aside)."""
    import hashlib

    out = {}
    for dirpath, _dirnames, filenames in os.walk(root):
        for name in filenames:
            if name.startswith("catalog.db"):
                continue  # folded by every command; its rows are checked through `verify` and `ls`
            p = Path(dirpath, name)
            out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _cases(store: Path, run_id: str, other: str) -> list[tuple[list[str], str]]:
    seg = next((store / "runs" / run_id / "events").glob("*.seg"))
    return [
        (["report", run_id, "-o", str(seg)], "-o"),
        (["report", run_id, "-o", str(store / "catalog.db")], "-o"),
        (["compare", run_id, other, "-o", str(store / "c.html")], "-o"),
        (["replay", run_id, "--part", "9", "--out", str(store / "runs" / "tree")], "--out"),
        (["replay", run_id, "--part", "9", "--out", str(store)], "--out"),
        (["export", run_id, "-o", str(store / "runs" / run_id / "events")], "-o"),
        (["export", run_id, "--format", "parquet", "-o", str(store / "pq")], "-o"),
        (["cp", run_id, "--to", str(store / "runs" / "nested")], "--to"),
        (["run", "--workdir", str(store / "runs"), "--", "true"], "--workdir"),
        (["demo", "--fast", "--workdir", str(store / "d")], "--workdir"),
    ]


def test_an_output_inside_the_store_is_refused_and_nothing_is_written(demo):
    store, run_id, other, _tmp = demo
    before = _state(store)
    for args, option in _cases(store, run_id, other):
        proc = run_agtrace(args, store)
        err = proc.stderr.decode()
        assert proc.returncode == 2, (args, err)
        assert f"error: {option} " in err and f"is inside the store {store}" in err and "Traceback" not in err, err
        assert "choose a path outside the store" in err
    assert _state(store) == before
    assert sorted(p.name for p in (store / "runs").iterdir()) == sorted([run_id, other])
    listed = json.loads(run_agtrace(["ls", "--json"], store, check=True).stdout)
    assert sorted((r["id"], r["status"], r["parts"]) for r in listed) == sorted(
        [(run_id, "completed", 26), (other, "completed", 26)])
    run_agtrace(["verify"], store, check=True)


def test_a_default_output_in_a_current_directory_inside_the_store_is_refused(demo):
    """`report` writes ./<id>-report.html by default: run from inside the store, that is in it."""
    store, run_id, _other, _tmp = demo
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", "from agtrace.cli.main import main; main()", "report", run_id],
                          cwd=store / "runs", capture_output=True, env={**os.environ, "AGTRACE_HOME": str(store)})
    assert proc.returncode == 2 and b"is inside the store" in proc.stderr, proc.stderr
    assert not list((store / "runs").glob("*.html"))


def test_paths_beside_the_store_still_work(demo):
    store, run_id, _other, tmp = demo
    beside = tmp / "S-out"  # a sibling whose name starts with the store's: not inside it
    beside.mkdir()
    run_agtrace(["report", run_id, "-o", str(beside / "r.html")], store, check=True)
    run_agtrace(["replay", run_id, "--part", "9", "--out", str(beside / "tree")], store, check=True)
    copy = json.loads(run_agtrace(["cp", run_id, "--to", str(store), "--json"], store, check=True).stdout)
    assert copy["store"] == str(store)  # --to the store itself: a copy within it, as without --to
    assert (beside / "r.html").stat().st_size > 0 and (beside / "tree" / "textstats").is_dir()
    run_agtrace(["rm", copy["id"], "--yes"], store, check=True)


def test_a_file_remote_overlapping_the_store_is_refused(demo):
    """`gc --remote file://STORE` deleted the store's blobs that no pushed manifest lists (every
    blob of a run never pushed), and `rm --remote file://STORE ID` a run past the store's own
    `rm`; a file remote that is the store, lies in it (a symlink too) or holds it is bad usage."""
    from agtrace.eventlog import Store

    store, run_id, _other, tmp = demo
    with Store(store) as opened:  # a blob as an import of a long tool output leaves one
        digest = opened.blobs.put(os.urandom(200_000))
    link = tmp / "to-store"
    link.symlink_to(store)
    before = _state(store)
    for args in (["push", "--all", "--remote", f"file://{store}"],
                 ["push", run_id, "--remote", str(store / "runs" / "x")],
                 ["pull", "--all", "--remote", str(link)],
                 ["gc", "--remote", f"{store}/", "--min-age", "1s", "--yes"],
                 ["rm", run_id, "--remote", str(store), "--yes"],
                 ["ls", "--remote", str(store)],
                 ["run", "--remote", str(store / "blobs"), "--workdir", str(tmp / "work"), "--", "true"]):
        proc = run_agtrace(args, store)
        err = proc.stderr.decode()
        assert proc.returncode == 2, (args, err)
        assert f"overlaps the store {store}" in err and "choose a directory outside the store" in err, err
        assert "Traceback" not in err
    assert _state(store) == before and f"blobs/{digest[:2]}/{digest}.zst" in before
    beside = tmp / "S-remote"
    beside.mkdir()
    run_agtrace(["push", run_id, "--remote", str(beside)], store, check=True)  # "S-remote" starts as "S" does
    assert (beside / "runs" / run_id).is_dir()
    run_agtrace(["verify"], store, check=True)


def test_default_output_names_never_name_another_runs_file(tmp_path):
    """Runs imported from sources without times share their first 10 characters (``0000000000``,
    an id's start time). `report RUN` wrote ``0000000000-report.html`` for each, over the other
    run's report, and a replay of a run without trees left an empty ``0000000000-part-1``. Real
    CLI, the SWE-agent trajectories of the shared fixtures."""
    import subprocess
    import sys

    from .conftest import FIXTURES

    store, cwd = tmp_path / "S", tmp_path / "cwd"
    cwd.mkdir()
    run_agtrace(["import", str(FIXTURES / "swe-agent")], store, check=True)
    ids = [r["id"] for r in json.loads(run_agtrace(["ls", "--json"], store, check=True).stdout)]
    assert len(ids) >= 4 and len({i[:10] for i in ids}) == 1, ids  # what the names were made of

    def agtrace(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", "from agtrace.cli.main import main; main()", *args],
                              cwd=cwd, capture_output=True, env={**os.environ, "AGTRACE_HOME": str(store)}, timeout=120)

    for run in ids:
        assert agtrace("report", run).returncode == 0
    pages = sorted(cwd.glob("*-report.html"))
    assert len(pages) == len(ids), pages
    for run in ids:  # each page is its own run's
        (page,) = [p for p in pages if run.startswith(p.name.removesuffix("-report.html"))]
        assert run in page.read_text()
    assert agtrace("compare", ids[0], ids[1]).returncode == 0 and agtrace("compare", ids[0], ids[2]).returncode == 0
    assert agtrace("compare", *ids).returncode == 0
    compared = sorted(cwd.glob("compare-*.html"))
    assert len(compared) == 3, compared  # `compare-<first>-2.html` served A+B and A+C alike
    for page in compared:
        page.unlink()
    # the hints and the headers name each run by a prefix that is its own
    shown = agtrace("show", max(ids, key=lambda i: json.loads(agtrace("show", i, "--json").stdout)["parts"]))
    hint = re.search(r"`agtrace show (\S+) --parts`", shown.stdout.decode())
    assert hint and agtrace("show", hint[1], "--parts").returncode == 0, shown.stdout.decode()
    table = agtrace("compare", *ids, "-o", str(tmp_path / "c.html")).stdout.decode()
    heads = [line for line in table.splitlines() if "SCORER" in line]
    assert not heads or len(set(heads[0].split()[4:])) == len(ids), table
    for line in table.splitlines():
        if line.startswith("final tree of"):
            a, b = line.removeprefix("final tree of ").removesuffix(":").split(" against ")
            assert a != b and all(len([i for i in ids if i.startswith(x)]) == 1 for x in (a, b)), line
    failed = agtrace("replay", ids[0], "--part", "1")
    assert failed.returncode == 1 and b"without repository state" in failed.stderr
    assert sorted(p.name for p in cwd.iterdir()) == sorted(p.name for p in pages)  # no empty directory left
