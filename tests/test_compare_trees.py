"""`agtrace compare` of runs that ended in different trees (issue 13, item 6): the stat and the
patch between their final trees, human, --json and HTML, checked against git's own diff of the
replayed trees; a run without snapshots says why it cannot be compared."""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from agtrace.capture import setup_demo_repo

from . import chromium
from .conftest import REPO, run_agtrace

ARTIFACTS = REPO / "artifacts"

EDIT_A = "printf 'from A\\n' >> README.md; printf 'new\\n' > notes.txt; echo done"
EDIT_B = "sed -i 's/textstats/TEXTSTATS/' README.md; rm tests/test_core.py; echo done"


def _capture(root, work, script) -> str:
    work.mkdir()
    setup_demo_repo(work)
    proc = run_agtrace(["run", "-q", "--json", "--workdir", str(work), "--", "bash", "-c", script], root, check=True)
    return json.loads(proc.stdout)["run_id"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("trees")
    root = tmp / "store"
    a, b = _capture(root, tmp / "a", EDIT_A), _capture(root, tmp / "b", EDIT_B)
    plain = run_agtrace(["new", "--agent", "hand"], root, check=True).stdout.decode().strip()
    run_agtrace(["close", plain, "--status", "completed"], root, check=True)
    return tmp, root, a, b, plain


def _git_numstat(tmp, root, a, b) -> dict[str, tuple[int, int]]:
    for run, out in ((a, tmp / "ra"), (b, tmp / "rb")):
        if not out.exists():
            run_agtrace(["replay", run, "--part", "last", "--out", str(out)], root, check=True)
    proc = subprocess.run(["git", "diff", "--no-index", "--numstat", "ra", "rb"], cwd=tmp, capture_output=True, text=True)
    stats = {}
    for line in proc.stdout.splitlines():
        plus, minus, path = line.split("\t")  # {ra => rb}/README.md, ra/x => /dev/null, /dev/null => rb/x
        if path.startswith("{"):
            path = path.split("}/", 1)[1]
        else:
            left, _, right = path.partition(" => ")
            path = (left if right == "/dev/null" else right or left).split("/", 1)[1]
        stats[path] = (int(plus), int(minus))
    return stats


def test_compare_prints_the_stat_and_with_patch_the_patch(runs):
    tmp, root, a, b, _ = runs
    out = run_agtrace(["compare", a, b, "-o", str(tmp / "c.html")], root, check=True).stdout.decode()
    assert f"final tree of {b[:10]} against {a[:10]}:" in out
    assert "README.md" in out and "notes.txt" in out and "tests/test_core.py" in out
    assert "3 files changed" in out and "diff --git" not in out
    patched = run_agtrace(["compare", a, b, "--patch", "-o", str(tmp / "c.html")], root, check=True).stdout.decode()
    assert "diff --git a/notes.txt b/notes.txt\ndeleted file mode 100644" in patched
    assert "-from A\n" in patched and "\n+# TEXTSTATS" in patched


def test_json_diff_matches_git_on_the_replayed_trees(runs):
    tmp, root, a, b, _ = runs
    rows = json.loads(run_agtrace(["compare", a, b, "--json"], root, check=True).stdout)
    assert rows[0]["final_tree_diff"] is None
    diff = rows[1]["final_tree_diff"]
    assert (diff["run_a"], diff["run_b"], diff["reason"]) == (a, b, "")
    got = {f["path"]: (f["lines_added"], f["lines_removed"]) for f in diff["files"]}
    assert got == _git_numstat(tmp, root, a, b)
    status = {f["path"]: f["status"] for f in diff["files"]}
    assert status == {"README.md": "modified", "notes.txt": "deleted", "tests/test_core.py": "deleted"}
    # the patch applies: a's final tree patched gives b's
    work = tmp / "apply"
    subprocess.run(["cp", "-r", str(tmp / "ra"), str(work)], check=True)
    mode = {"added": "new file mode 100644\n", "deleted": "deleted file mode 100644\n", "modified": ""}
    patch = "".join(f"diff --git a/{f['path']} b/{f['path']}\n{mode[f['status']]}" + f["patch"] for f in diff["files"])
    subprocess.run(["git", "apply", "-"], cwd=work, input=patch, text=True, check=True)
    same = subprocess.run(["diff", "-r", "-x", ".agtrace-replay*", str(work), str(tmp / "rb")], capture_output=True)
    assert same.returncode == 0, same.stdout.decode()
    assert diff["lines_added"] == sum(v[0] for v in got.values())


def test_html_shows_the_final_trees(runs):
    tmp, root, a, b, _ = runs
    page = tmp / "c.html"
    run_agtrace(["compare", a, b, "-o", str(page)], root, check=True)
    text = page.read_text()
    assert "<h2>Final trees</h2>" in text and "+++ b/README.md" in text and "notes.txt" in text
    assert "default-src 'none'" in text


def test_a_run_without_trees_says_why(runs):
    tmp, root, a, _, plain = runs
    out = run_agtrace(["compare", a, plain, "-o", str(tmp / "p.html")], root, check=True).stdout.decode()
    assert f"run {plain} recorded no workspace snapshot" in out
    rows = json.loads(run_agtrace(["compare", a, plain, "--json"], root, check=True).stdout)
    assert "no final tree" in rows[1]["final_tree_diff"]["reason"] and rows[1]["final_tree_diff"]["files"] == []
    same = json.loads(run_agtrace(["compare", a, a[:12], "--json"], root).stdout or "null")
    assert same is None  # named twice: refused (exit 2), nothing printed


def test_each_scorer_is_its_own_row_and_plot(runs):
    tmp, root, a, b, _ = runs
    for name, cmd in (("has-notes", "test -f notes.txt"), ("shouts", "grep -q TEXTSTATS README.md")):
        run_agtrace(["rescore", a, b, "--name", name, "--cmd", cmd], root, check=True)
    page = tmp / "scores.html"
    run_agtrace(["compare", a, b, "-o", str(page)], root, check=True)
    text = page.read_text()
    rows = dict(re.findall(r"<tr><th>(score: [^<]+)</th>(.*?)</tr>", text))
    assert set(rows) == {"score: has-notes", "score: shouts"}
    assert re.findall(r"<td class=num>([^<]+)</td>", rows["score: has-notes"]) == ["1 (part 1)", "0 (part 1)"]
    assert re.findall(r"<td class=num>([^<]+)</td>", rows["score: shouts"]) == ["0 (part 1)", "1 (part 1)"]
    if not chromium.available():
        pytest.skip(f"{chromium.CHROMIUM} is absent")
    with chromium.Chromium() as browser:
        browser.open(page)
        assert browser.console_errors() == []
        plots = browser.eval("""[...document.querySelectorAll('#plots .card')].map(c =>
            [c.querySelector('h3').firstChild.textContent, c.querySelectorAll('svg circle').length])""")
        assert ["Score: has-notes", 2] in plots and ["Score: shouts", 2] in plots, plots
        browser.screenshot(ARTIFACTS / "compare-trees.png")
