"""`agtrace view` in headless Chromium (issue 15, acceptance): a server on 127.0.0.1 started by
the test over a store of 1,000 runs (written through the library) plus captured ones. The index
loads and sorts, filters and searches; a live capture appears, updates and ends; a killed
capture shows as crashed; a run page and a compare page render without page errors, and hostile
run data run nothing. Screenshots are saved in artifacts/view-*.png."""

from __future__ import annotations

import json
import os
import shutil
import signal
import time

import pytest

from . import chromium
from .conftest import REPO, run_agtrace
from .procs import end
from .test_view import capture
from .view_server import ViewServer, fast_dir
from .view_store import make_store, run_values

ARTIFACTS = REPO / "artifacts"
N = 1000
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not chromium.available(), reason=f"{chromium.CHROMIUM} is absent (install Debian's chromium)"),
]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    tmp = fast_dir(tmp_path_factory.mktemp("view-browser"))
    root = tmp / "store"
    ids = make_store(root, N)
    demo = json.loads(run_agtrace(["demo", "--fast", "--json"], root, check=True).stdout)["run_id"]
    other = capture(root, tmp, "other", task_id="demo/textstats")
    with ViewServer(root) as server, chromium.Chromium(1400, 900) as browser:
        yield server, browser, root, ids, demo, other, tmp
    shutil.rmtree(tmp, ignore_errors=True)


def _wait(browser, expression: str, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = browser.eval(expression)
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"{expression} stayed false for {timeout}s")


def _loads(browser) -> int:
    return int(browser.eval("Number(document.body.dataset.loads || 0)"))


def _after_load(browser, before: int) -> None:
    _wait(browser, f"Number(document.body.dataset.loads || 0) > {before}")


def _column(browser, n: int) -> list[str]:
    return browser.eval(f"[...document.querySelectorAll('#runs tbody tr[data-id]')].map(tr => tr.children[{n}].textContent)")


def _ids(browser) -> list[str]:
    return browser.eval("[...document.querySelectorAll('#runs tbody tr[data-id]')].map(tr => tr.dataset.id)")


def _no_page_errors(browser) -> None:
    assert browser.console_errors() == []
    assert browser.eval("window.PWNED === undefined")


def test_index_of_1000_runs_loads_sorts_and_filters(site):
    server, browser, _, ids, _, _, _ = site
    browser.open(server.url)
    _no_page_errors(browser)
    assert browser.eval("document.getElementById('count').textContent") == "1,002 runs"
    assert len(_ids(browser)) == 50
    assert _ids(browser)[2:] == ids[::-1][:48]  # newest first: the two captures, then the store's newest
    browser.screenshot(ARTIFACTS / "view-index.png", full_page=False)
    values = {r: run_values(i) for i, r in enumerate(ids)}
    before = _loads(browser)
    browser.click("th[data-sort=tokens]")
    _after_load(browser, before)
    by_tokens = sorted(ids, key=lambda r: (values[r]["tokens"], r), reverse=True)
    assert _ids(browser) == by_tokens[:50]
    assert _column(browser, 9)[0] == f"{values[by_tokens[0]]['tokens']:,}"
    before = _loads(browser)
    browser.click("th[data-sort=tokens]")  # again: smallest first
    _after_load(browser, before)
    shown = [r for r in _ids(browser) if r in values]  # a raw capture reports no usage: 0 tokens
    assert len(shown) >= 48 and shown == by_tokens[::-1][:len(shown)]
    assert "sort=tokens" in browser.eval("location.search") and "reverse=1" in browser.eval("location.search")
    browser.screenshot(ARTIFACTS / "view-index-sorted.png", full_page=False)
    # filter: the codex runs of experiment a that failed their tests, by form
    before = _loads(browser)
    browser.eval("""(() => { const f = document.getElementById('filters');
        f.elements.agent.value = 'codex'; f.elements.tag.value = 'exp=a'; f.elements.tests.value = 'fail';
        f.requestSubmit(); })()""")
    _after_load(browser, before)
    want = [r for i, r in enumerate(ids) if i % 3 == 1 and i % 2 == 1
            and run_values(i)["passed"] != run_values(i)["total"]]
    assert browser.eval("document.getElementById('count').textContent") == f"{len(want):,} runs"
    assert set(_column(browser, 2)) == {"codex"}
    assert set(_ids(browser)) <= set(want) and len(_ids(browser)) == min(50, len(want))
    # next page, then group by task
    before = _loads(browser)
    browser.click("#next")
    _after_load(browser, before)
    assert len(_ids(browser)) == min(50, len(want) - 50)
    before = _loads(browser)
    browser.eval("(() => { const f = document.getElementById('filters'); f.elements.group.checked = true; f.requestSubmit(); })()")
    _after_load(browser, before)
    groups = browser.eval("[...document.querySelectorAll('#runs tr.group')].map(tr => tr.textContent)")
    assert groups and all(" runs, " in g for g in groups)
    _no_page_errors(browser)
    browser.eval("window.scrollTo(0, 0)")
    browser.screenshot(ARTIFACTS / "view-index-grouped.png", full_page=False)


def test_search_box_finds_runs_by_their_text(site):
    server, browser, _, _, demo, _, _ = site
    browser.open(server.url)
    if not server.json("/api/facets")["search"]:
        assert browser.eval("document.querySelector('#filters [name=q]').disabled")
        pytest.skip("this agtrace has no full-text search (agtrace.eventlog.search) to test the box with")
    before = _loads(browser)
    browser.eval("(() => { const f = document.getElementById('filters'); f.elements.q.value = 'average_word_length';"
                 " f.requestSubmit(); })()")
    _after_load(browser, before)
    assert _ids(browser) == [demo]
    assert "matching events" in browser.eval("document.getElementById('hits').textContent")
    _no_page_errors(browser)
    browser.screenshot(ARTIFACTS / "view-search.png", full_page=False)


def test_a_live_capture_appears_updates_and_ends(site):
    server, browser, root, _, _, _, tmp = site
    browser.open(server.url)
    rows_before = set(_ids(browser))
    proc = capture(root, tmp, "live", pause=1.5, wait=False)
    try:
        new = _wait(browser, f"[...document.querySelectorAll('#runs tbody tr[data-id]')].map(tr => tr.dataset.id)"
                    f".filter(id => !{json.dumps(sorted(rows_before))}.includes(id))[0]", timeout=90)
        sel = f"#runs tbody tr[data-id='{new}']"
        assert _wait(browser, f"document.querySelector(\"{sel}\").children[5].textContent") == "running"
        parts = []
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and browser.eval(f"document.querySelector(\"{sel}\").children[5].textContent") == "running":
            parts.append(int(browser.eval(f"document.querySelector(\"{sel}\").children[6].textContent") or 0))
            time.sleep(0.1)
        browser.screenshot(ARTIFACTS / "view-live.png", full_page=False)
        assert proc.wait(timeout=90) == 0
        assert _wait(browser, f"document.querySelector(\"{sel}\").children[5].textContent === 'completed'", timeout=30)
        assert len(set(parts)) >= 2, parts  # the row moved while the run was going on, not only at the end
        assert browser.eval(f"document.querySelector(\"{sel}\").children[6].textContent") == "4"
        assert int(browser.eval("Number(document.body.dataset.updates || 0)")) >= 2
    finally:
        if proc.poll() is None:
            proc.terminate()
        end([proc.pid])
        proc.wait()
    _no_page_errors(browser)


def test_a_killed_capture_shows_as_crashed(site):
    server, browser, root, _, _, _, tmp = site
    browser.open(server.url)
    proc = capture(root, tmp, "killed", pause=30, wait=False)
    try:
        new = _wait(browser, "[...document.querySelectorAll('#runs tbody tr[data-id]')]"
                    ".filter(tr => tr.children[5].textContent === 'running').map(tr => tr.dataset.id)[0]", timeout=90)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        sel = f"#runs tbody tr[data-id='{new}']"
        assert _wait(browser, f"document.querySelector(\"{sel}\").children[5].textContent === 'crashed'", timeout=60)
        reason = browser.eval(f"document.querySelector(\"{sel}\").children[5].firstChild.title")
        assert "stopped without ending" in reason
        browser.screenshot(ARTIFACTS / "view-crashed.png", full_page=False)
    finally:
        end([proc.pid])
    _no_page_errors(browser)


def test_run_page_browses_files_at_any_part(site):
    server, browser, _, ids, demo, _, _ = site
    browser.open(f"{server.base}/runs/{demo}", ready="document.body.dataset.ready && document.body.dataset.trees")
    _no_page_errors(browser)
    assert browser.eval("document.getElementById('fcount').textContent") == "7 files at part 26"
    browser.click('#tree a[data-path="README.md"]')
    _wait(browser, "document.body.dataset.files")
    assert "## average_word_length" in browser.eval("document.querySelector('#file pre').textContent")
    browser.eval("(() => { const i = document.getElementById('fpart'); i.value = '0'; i.dispatchEvent(new Event('change')); })()")
    _wait(browser, "document.body.dataset.trees === '2' && document.body.dataset.files === '2'")
    assert browser.eval("document.getElementById('fcount').textContent").endswith("at part 0")
    assert "average_word_length" not in browser.eval("document.querySelector('#file pre').textContent")
    browser.eval("document.getElementById('files').scrollIntoView()")
    browser.screenshot(ARTIFACTS / "view-run-files.png", full_page=False)
    _no_page_errors(browser)
    # the hostile run: its task, tags and prompt are HTML; nothing of it runs, its files say why there are none
    browser.open(f"{server.base}/runs/{ids[0]}", ready="document.body.dataset.ready && document.body.dataset.trees")
    _no_page_errors(browser)
    assert "onerror" in browser.eval("document.querySelector('header').textContent")
    assert "recorded no snapshot" in browser.eval("document.getElementById('tree').textContent")
    browser.screenshot(ARTIFACTS / "view-run-hostile.png", full_page=False)
    browser.open(server.url + "?task=swe/%3Cimg*", ready="document.body.dataset.loads")
    assert _ids(browser) == [ids[0]]
    _no_page_errors(browser)


def test_run_page_shows_the_runs_notes_as_text(site):
    """Notes were on no page of the viewer (``show`` listed them). The run page shows each, in
    the header and at its part; a note's HTML stays text."""
    server, browser, root, _, demo, _, _ = site
    hostile = '<img src=x onerror="window.PWNED=1"> look <b>here</b>'
    run_agtrace(["note", demo, "run: " + hostile], root, check=True)
    run_agtrace(["note", demo, "--part", "3", "part: " + hostile], root, check=True)
    browser.open(f"{server.base}/runs/{demo}", ready="document.body.dataset.ready")
    _no_page_errors(browser)
    notes = browser.eval("[...document.querySelectorAll('header .notes li .text')].map(e => e.textContent)")
    assert notes == ["run: " + hostile, "part: " + hostile]
    browser.eval("document.getElementById('part-3').scrollIntoView()")
    assert browser.eval("document.querySelector('#part-3 .ev.note_added pre').textContent") == "part: " + hostile
    assert browser.eval("document.querySelectorAll('main img').length") == 0
    _no_page_errors(browser)


def test_compare_page_diffs_two_runs_at_chosen_parts(site):
    server, browser, _, _, demo, other, _ = site
    browser.open(f"{server.base}/compare?runs={demo},{other}", ready="document.body.dataset.ready && document.body.dataset.diffs")
    _no_page_errors(browser)
    assert "All runs are of task demo/textstats" in browser.eval("document.getElementById('tasknote').textContent")
    stat = browser.eval("document.getElementById('dstat').textContent")
    assert "files differ" in stat and "A at part 26 → B at part 4" in stat
    paths = browser.eval("[...document.querySelectorAll('#dout .fh .p')].map(p => p.textContent)")
    assert "data.bin" in paths and "README.md" in paths
    assert browser.eval("document.querySelectorAll('#plots svg').length") >= 2
    browser.eval("document.getElementById('pa').value = '3'; document.getElementById('pb').value = '1'")
    browser.click("#dodiff")
    _wait(browser, "document.body.dataset.diffs === '2'")
    assert "A at part 3 → B at part 1" in browser.eval("document.getElementById('dstat').textContent")
    browser.screenshot(ARTIFACTS / "view-compare.png")
    _no_page_errors(browser)
    # from the index: tick two runs and compare them
    browser.open(server.url + "?task=demo/textstats", ready="document.body.dataset.loads")
    for run_id in (demo, other):
        browser.click(f"#runs tr[data-id='{run_id}'] input[type=checkbox]")
    browser.click("#compare")
    _wait(browser, "location.pathname === '/compare' && !!document.body && !!document.body.dataset.ready")
    assert sorted(browser.eval("new URLSearchParams(location.search).get('runs')").split(",")) == sorted([demo, other])
    _no_page_errors(browser)
