"""`agtrace report` / `compare`: the page's data, its caps, the CLI, and the page in headless Chromium."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from agtrace.capture.demo import run_demo
from agtrace.capture.recorder import Recorder
from agtrace.eventlog import (
    MessageAdded,
    PartEnded,
    RunEnded,
    RunStarted,
    Store,
    Usage,
    UsageReported,
    add_note,
)
from agtrace.replay.compare import compare_table, render_compare
from agtrace.replay.report import ReportLimits, RunFold, render_report, report_data

from . import chromium
from .conftest import REPO, run_agtrace
from .procs import descendants

ARTIFACTS = REPO / "artifacts"
needs_chromium = pytest.mark.skipif(
    not chromium.available(),
    reason=f"{chromium.CHROMIUM} is absent: install Debian's `chromium` package (CI does) to run the browser tests",
)


def _blocks(page: str) -> dict:
    out = {}
    for m in re.finditer(r'<script type="application/json" id="([^"]+)">(.*?)</script>', page, re.S):
        out[m.group(1)] = json.loads(m.group(2))
    return out


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """One real capture of the scripted demo agent (paced, so each part's snapshot is its own)."""
    store = Store(tmp_path_factory.mktemp("report") / "store")
    summary, workdir = run_demo(store)
    yield store, summary
    store.close()
    shutil.rmtree(workdir, ignore_errors=True)


def _many_parts(store: Store, workdir: Path, parts: int) -> str:
    """A run of ``parts`` parts recorded through the Recorder: edits, tests, usage of a priced
    model (the agent reports $0.001 a part, the price table says less)."""
    workdir.mkdir()
    (workdir / "app.py").write_text("".join(f"line {i}\n" for i in range(40)))
    with Recorder(store, workdir=workdir, agent="synthetic", model="claude-sonnet-4-20250514", task="grow app.py", task_id="t/many") as rec:
        for n in range(1, parts + 1):
            if n % 3 == 0:
                (workdir / "app.py").write_text((workdir / "app.py").read_text() + f"part {n}\n")
                call = rec.tool_call("edit", {"path": "app.py"}, command="edit app.py")
                rec.tool_result(call, "ok")
            elif n % 3 == 1:
                call = rec.tool_call("shell", command="pytest -q")
                rec.tool_result(call, f"{n} passed", exit_code=0 if n % 2 else 1, status="ok" if n % 2 else "error")
                rec.test_result(suite="pytest", passed=n // 3, failed=1, total=n // 3 + 1)
            else:
                rec.message("assistant", f"message {n}")
            rec.usage(input=100 + n, output=10, cost_usd=0.001)
        rec.end("completed")
    return rec.run_id


# -- the data the page embeds ------------------------------------------------------------------


def test_report_of_demo_run_embeds_header_parts_series_and_diffs(demo):
    store, summary = demo
    page = render_report(store, summary.run_id)
    data, diffs = _blocks(page)["agtrace-data"], _blocks(page)["agtrace-diffs"]
    run = data["run"]
    assert (run["agent"], run["status"], run["parts"]) == ("demo", "completed", summary.parts)
    assert run["tokens"] == summary.tokens  # same accounting as the capture's live total
    assert data["parts"]["n"] == list(range(1, summary.parts + 1))
    assert [t[2] for t in data["tests"]] == [2, 4, 5]  # passed, as the demo's three test runs report
    assert {c[4] for c in data["calls"]} == {"ok", "error"}
    changed = {p: {f[0] for f in files} for p, files in diffs["parts"].items()}
    lower = next(p for p, files in diffs["parts"].items()
                 if any("+    return WORD.findall(text.lower())" in (f[6] or "") for f in files))
    assert "textstats/core.py" in changed[lower]
    assert data["parts"]["ch"][int(lower) - 1] == len(changed[lower])
    # no external resource of any kind: everything is inline
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", page)
    assert "default-src 'none'" in page


def test_diffs_agree_with_the_shadow_repository(demo):
    from agtrace.replay.workspace import describe_part, snapshots

    store, summary = demo
    _, diffs = report_data(store, summary.run_id)
    git = snapshots(store, summary.run_id)
    for part in range(1, summary.parts + 1):
        view = describe_part(store, summary.run_id, part, git)
        embedded = [(f[0], f[1], f[2], f[3]) for f in diffs["parts"].get(str(part), [])]
        assert embedded == [(c["path"], c["status"], c["lines_added"], c["lines_removed"]) for c in view.changed]


def test_diffs_from_the_child_process_equal_the_diffs_computed_here(demo, monkeypatch):
    """The report's diffs come from a forked child while the events are folded; the same
    function run in this process (no fork, or a child that failed) gives the same diffs, and
    no child is left behind."""
    import os

    from agtrace.replay import report_diff

    store, summary = demo
    before = set(descendants(os.getpid()))
    _, aside = report_data(store, summary.run_id)
    assert aside["parts"]
    monkeypatch.delattr(report_diff.os, "fork")  # a platform without fork
    _, here = report_data(store, summary.run_id)
    assert aside == here
    monkeypatch.undo()

    real_fork = os.fork

    def failing_child():
        pid = real_fork()
        if pid == 0:
            os._exit(3)  # the child dies before it sends anything
        return pid

    monkeypatch.setattr(report_diff.os, "fork", failing_child)
    _, recovered = report_data(store, summary.run_id)
    assert recovered == here
    assert set(descendants(os.getpid())) <= before  # every child was waited for (no zombie either)


def test_a_cancelled_diff_child_is_ended(demo):
    import os

    from agtrace.replay.report import ReportLimits
    from agtrace.replay.report_diff import DiffsAside

    store, summary = demo
    trees = [(r["part"], r["tree_id"] or "") for r in store.catalog.part_rows(summary.run_id)]
    before = set(descendants(os.getpid()))
    aside = DiffsAside(store, summary.run_id, trees, ReportLimits())
    assert set(descendants(os.getpid())) - before  # the child runs
    aside.cancel()
    assert set(descendants(os.getpid())) <= before
    aside.cancel()  # twice is harmless


def test_text_cannot_close_the_data_element_and_caps_are_said(store):
    w = store.create_run(RunStarted(agent="hand", task_id="t"))
    hostile = "</script><script>alert(1)</script><!--" + "x" * 5000
    w.append(MessageAdded(role="assistant", text=hostile), part=1)
    w.append(PartEnded(part_kind="message", title="hi"), part=1)
    w.append(UsageReported(usage=Usage(input=5, output=1), request_id="r1", cost_usd=0.5))
    w.append(UsageReported(usage=Usage(input=5, output=1), request_id="r1", cost_usd=0.5))  # a second delta
    w.append(RunEnded(status="failed", reason="gave up"))
    store.close_writer(w)
    page = render_report(store, w.run_id, limits=ReportLimits(text_chars=100))
    assert page.count("</script>") == 4  # three data blocks and the script, nothing from the message
    data = _blocks(page)["agtrace-data"]
    text = _blocks(page)["agtrace-page-0"][0][4]["text"]
    assert text.startswith("</script><script>alert(1)") and "4,938 more characters" in text
    # deltas are summed, never deduplicated by request_id (the contract of usage_reported)
    assert data["run"]["tokens"] == 12 and data["run"]["cost_usd"] == 1.0
    assert (data["run"]["status"], data["run"]["reason"]) == ("failed", "gave up")
    assert "gave up" in page  # in the server-rendered header too
    assert "no workspace snapshots" in _blocks(page)["agtrace-diffs"]["note"]


def test_diff_caps_bound_the_page(tmp_path):
    store = Store(tmp_path / "store")
    run_id = _many_parts(store, tmp_path / "work", 60)
    full = render_report(store, run_id)
    capped = render_report(store, run_id, limits=ReportLimits(diff_total_bytes=300, blob_total_bytes=0))
    diffs = _blocks(capped)["agtrace-diffs"]
    notes = [f[7] for files in diffs["parts"].values() for f in files if f[6] is None]
    assert notes and all("size cap" in n for n in notes)
    assert diffs["blobs"] == {} and "cut or left out" in diffs["note"]
    assert len(capped) < len(full)
    store.close()


def test_fold_in_chunks_equals_fold_at_once(demo):
    store, summary = demo
    records = list(store.read(summary.run_id))
    whole, parts = RunFold(), RunFold()
    for r in records:
        whole.apply(r)
    for i in range(0, len(records), 7):
        for r in records[i:i + 7]:
            parts.apply(r)
    for name in ("events", "tests", "calls", "t0"):
        assert getattr(whole, name) == getattr(parts, name), name


def test_compare_table_and_page(demo, tmp_path):
    store, summary = demo
    other = _many_parts(store, tmp_path / "work", 12)
    rows = compare_table(store, [summary.run_id, other])
    assert [r["id"] for r in rows] == [summary.run_id, other]
    assert rows[0]["tests_final_passed"] == 5 and rows[0]["tests_best_passed"] == 5
    assert rows[0]["tests_best_part"] == 15
    assert rows[1]["cost_usd"] == pytest.approx(0.012) and rows[1]["parts"] == 12
    assert (rows[0]["net_files_changed"], rows[0]["net_lines_added"], rows[0]["net_lines_removed"]) == (3, 31, 1)
    assert (rows[0]["churn_lines_added"], rows[0]["churn_lines_removed"]) == (34, 4)
    page = render_compare(store, [summary.run_id, other])
    curves = _blocks(page)["agtrace-data"]["runs"]
    assert [c["id"] for c in curves] == [summary.run_id, other]
    priced = rows[1]["cost"]["cost_usd"]  # the cost curve is the priced cost of the table, not the reported
    assert priced != pytest.approx(0.012) and curves[1]["cost"][-1][2] == pytest.approx(priced)


# -- the CLI --------------------------------------------------------------------------------


def test_cli_report_and_compare(demo, tmp_path):
    store, summary = demo
    out = tmp_path / "r.html"
    proc = run_agtrace(["report", summary.run_id[:12], "-o", str(out), "--json"], store.root, check=True)
    doc = json.loads(proc.stdout)
    assert doc == {"path": str(out.resolve()), "bytes": out.stat().st_size}
    proc = run_agtrace(["compare", summary.run_id, summary.run_id[:12]], store.root)
    assert proc.returncode == 2 and b"named twice" in proc.stderr
    proc = run_agtrace(["compare", summary.run_id, "--json"], store.root, check=True)
    assert json.loads(proc.stdout)[0]["id"] == summary.run_id
    cmp_out = tmp_path / "c.html"
    proc = run_agtrace(["compare", summary.run_id, "-o", str(cmp_out)], store.root, check=True)
    assert cmp_out.exists() and b"wrote the comparison" in proc.stdout
    assert run_agtrace(["report", "01ZZZZZZZZ"], store.root).returncode == 2


def test_dash_writes_the_page_to_standard_output_and_nothing_else(demo, tmp_path, monkeypatch):
    """`-o -` is standard output (it wrote a file named "-"): the page, byte for byte what a
    file gets, and nothing beside it; what would print beside it is refused."""
    store, summary = demo
    monkeypatch.chdir(tmp_path)
    page = run_agtrace(["report", summary.run_id, "-o", "-"], store.root, check=True).stdout
    run_agtrace(["report", summary.run_id, "-o", "r.html"], store.root, check=True)
    assert page == (tmp_path / "r.html").read_bytes() and page.startswith(b"<!doctype html>")
    compared = run_agtrace(["compare", summary.run_id, "-o", "-"], store.root, check=True).stdout
    run_agtrace(["compare", summary.run_id, "-o", "c.html"], store.root, check=True)
    assert compared == (tmp_path / "c.html").read_bytes()
    assert not (tmp_path / "-").exists()
    for args, flag in ((["report", summary.run_id, "-o", "-", "--json"], "--json"),
                       (["report", summary.run_id, "-o", "-", "--open"], "--open"),
                       (["compare", summary.run_id, "-o", "-", "--patch"], "--patch")):
        proc = run_agtrace(args, store.root)
        assert proc.returncode == 2 and proc.stdout == b"", args
        assert f"cannot go with {flag}".encode() in proc.stderr, proc.stderr


def test_progress_on_a_terminal_stays_off_standard_output(demo, tmp_path):
    """With stderr a terminal and stdout redirected, the progress bar is drawn on stderr: the
    JSON on stdout starts with its first byte (rich's default console, stdout's, put a newline
    there)."""
    import os
    import pty
    import subprocess
    import sys

    store, summary = demo
    primary, secondary = pty.openpty()
    try:
        proc = subprocess.run([sys.executable, "-c", "from agtrace.cli.main import main; main()", "--store",
                               str(store.root), "report", summary.run_id, "-o", str(tmp_path / "r.html"), "--json"],
                              stdout=subprocess.PIPE, stderr=secondary, timeout=120)
    finally:
        os.close(secondary)
        os.close(primary)
    assert proc.returncode == 0 and proc.stdout.startswith(b'{"path":'), proc.stdout[:80]


# -- in a real browser ------------------------------------------------------------------------


@pytest.mark.slow
@needs_chromium
def test_report_in_headless_chromium(demo, tmp_path):
    store, summary = demo
    page = tmp_path / "report.html"
    page.write_text(render_report(store, summary.run_id))
    _, diffs = report_data(store, summary.run_id)
    part = max(int(p) for p, files in diffs["parts"].items() if any(f[1] == "modified" for f in files))
    path = next(f[0] for f in diffs["parts"][str(part)] if f[1] == "modified")
    with chromium.Chromium() as browser:
        browser.open(page)
        assert browser.console_errors() == []
        assert browser.requests() == [page.resolve().as_uri()]  # nothing but the file itself
        shapes = browser.eval("[...document.querySelectorAll('#plots svg')].map(s => s.querySelectorAll('path,rect,circle').length)")
        assert len(shapes) == 3 and all(n > 0 for n in shapes), shapes
        assert browser.eval("document.querySelectorAll('#parts section.part').length") == summary.parts + 1
        browser.screenshot(ARTIFACTS / "report-demo.png")

        browser.click("#jump-input")
        browser.eval(f"document.querySelector('#jump-input').value = '{part}'")
        browser.click("#jump-go")
        shown = browser.eval(f"""(() => {{ const s = document.getElementById('part-{part}');
            return {{hl: s.classList.contains('hl'), hash: location.hash,
                     files: [...s.querySelectorAll('.diff .fh .p')].map(e => e.textContent),
                     text: s.querySelector('.pd').textContent}}; }})()""")
        assert shown["hl"] and shown["hash"] == f"#part-{part}"
        assert path in shown["files"] and "+++ b/" + path in shown["text"]
        browser.screenshot(ARTIFACTS / "report-demo-jump.png", full_page=False)

        browser.eval(f"document.querySelector('#range-a').value = '0'; document.querySelector('#range-b').value = '{summary.parts}'")
        browser.click("#range-go")
        ranged = browser.eval("[...document.querySelectorAll('#range-out .diff .fh .p')].map(e => e.textContent)")
        assert sorted(ranged) == ["README.md", "tests/test_top_words.py", "textstats/core.py"]
        browser.click("#plot-tests button[data-x=time]")
        assert browser.eval("document.querySelector('#plot-tests svg text:last-of-type').textContent") == "time since start"
        assert browser.console_errors() == []


@pytest.mark.slow
@needs_chromium
def test_long_run_is_paged_in_chromium(tmp_path):
    store = Store(tmp_path / "store")
    run_id = _many_parts(store, tmp_path / "work", 250)
    page = tmp_path / "long.html"
    page.write_text(render_report(store, run_id))
    with chromium.Chromium() as browser:
        browser.open(page)
        assert browser.eval("document.querySelectorAll('#parts section.part').length") == 100
        browser.click("#next")
        assert browser.eval("document.querySelector('#parts section.part').id") == "part-101"
        browser.eval("agtraceJump(243)")
        assert browser.eval("document.querySelectorAll('#parts section.part').length") == 50
        assert browser.eval("!!document.querySelector('#part-243.hl .diff')")
        assert browser.console_errors() == []
        browser.screenshot(ARTIFACTS / "report-long.png", full_page=False)
    store.close()


@pytest.mark.slow
@needs_chromium
def test_compare_in_headless_chromium(demo, tmp_path):
    store, summary = demo
    other = _many_parts(store, tmp_path / "work", 30)
    page = tmp_path / "compare.html"
    page.write_text(render_compare(store, [summary.run_id, other]))
    with chromium.Chromium() as browser:
        browser.open(page)
        assert browser.console_errors() == []
        paths = browser.eval("[...document.querySelectorAll('#plots svg')].map(s => s.querySelectorAll('path').length)")
        assert paths == [2, 2, 2, 1], paths  # tests, rate, tokens for both runs; only one run has a cost
        browser.screenshot(ARTIFACTS / "compare.png")


HOSTILE_NOTE = '<img src=x onerror=alert(1)><img src=y onerror="window.PWNED=1"></script><b>'


def _noted_run(store: Store) -> str:
    """A run of two parts with a note on the run and one on part 2, both HTML."""
    w = store.create_run(RunStarted(agent="hand", task_id="t/notes"))
    for n in (1, 2):
        w.append(MessageAdded(role="assistant", text=f"message {n}"), part=n)
        w.append(PartEnded(part_kind="message", title=f"m{n}"), part=n)
    w.append(RunEnded(status="completed"))
    store.close_writer(w)
    add_note(store, w.run_id, "run note " + HOSTILE_NOTE, author="ann")
    add_note(store, w.run_id, "part note " + HOSTILE_NOTE, part=2, author="bob")
    return w.run_id


@needs_chromium
def test_notes_show_in_the_header_and_at_their_part_escaped(store, tmp_path):
    """Notes (``agtrace note``) were on no page: ``show`` listed them, the report did not. Now the
    header lists every note and the transcript shows a part's note at its part; note text is
    hostile HTML and stays text (real Chromium: no element made, no request, nothing run)."""
    run_id = _noted_run(store)
    page = tmp_path / "report.html"
    page.write_text(render_report(store, run_id))
    assert "<img" not in page.read_text()
    with chromium.Chromium() as browser:
        browser.open(page)
        assert browser.console_errors() == []
        assert browser.requests() == [page.resolve().as_uri()]  # no <img> was made, so none loaded
        assert browser.eval("window.PWNED === undefined && document.querySelectorAll('img').length === 0")
        notes = browser.eval("[...document.querySelectorAll('header .notes li')].map(li => li.textContent)")
        assert len(notes) == 2 and "run note " + HOSTILE_NOTE in notes[0] and "ann" in notes[0]
        assert "part 2" in notes[1] and "part note " + HOSTILE_NOTE in notes[1] and "bob" in notes[1]
        at = browser.eval("[...document.querySelectorAll('#parts section.part')].map(s => [s.dataset.part, "
                          "[...s.querySelectorAll('.ev.note_added')].map(e => e.textContent)])")
        assert [(p, len(texts)) for p, texts in at] == [("1", 0), ("2", 1)]
        assert "part note " + HOSTILE_NOTE in at[1][1][0] and "bob" in at[1][1][0]
        assert browser.console_errors() == []
