"""A report a person can read (issue 13, item 6), made through the CLI and looked at in headless
Chromium: labelled axes, one named series per scorer, tool lanes whose labels fit, markdown
rendered without letting a message inject HTML, failing output open first. Screenshots of the
demo report and of a 3,000-part report are saved under artifacts/."""

from __future__ import annotations

import json
import re

import pytest

from agtrace.capture import Recorder
from agtrace.eventlog import Store

from . import chromium
from .conftest import REPO, run_agtrace

ARTIFACTS = REPO / "artifacts"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not chromium.available(), reason=f"{chromium.CHROMIUM} is absent (install Debian's chromium)"),
]
LONG_TOOL = "mcp__github__create_pull_request"
HOSTILE = (
    "## Plan\n\nI will **fix** `parse()` and *then* test.\n\n"
    "- step one\n- step <two>\n\n"
    "<img src=x onerror=\"window.PWNED=1\"><script>window.PWNED=2</script>\n"
    "[click me](javascript:window.PWNED=3) and [docs](https://example.org/a?b=1&c=\"2\")\n"
    "**<b onmouseover=\"window.PWNED=4\">bold</b>** `<i>code</i>`\n\n"
    "```\n<svg onload=\"window.PWNED=5\">\n```\n"
)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """A demo run (through the CLI), re-scored by two scorers."""
    root = tmp_path_factory.mktemp("readable") / "store"
    out = run_agtrace(["demo", "--fast", "--json"], root, check=True).stdout
    run_id = json.loads(out)["run_id"]
    for name, cmd in (("unittest", "python3 -m unittest"), ("has-tests", "test -f tests/test_top_words.py")):
        run_agtrace(["rescore", run_id, "--name", name, "--cmd", cmd, "--parts", "changed"], root, check=True)
    return root, run_id


def _report(root, run_id, path) -> str:
    run_agtrace(["report", run_id, "-o", str(path)], root, check=True)
    return path.read_text()


def test_demo_report_reads_well(demo, tmp_path):
    root, run_id = demo
    page = tmp_path / "demo.html"
    text = _report(root, run_id, page)
    assert "default-src 'none'" in text
    with chromium.Chromium() as browser:
        browser.open(page)
        assert browser.console_errors() == []
        labels = browser.eval("""Object.fromEntries(['plot-tests', 'plot-tokens'].map(id =>
            [id, [...document.querySelectorAll('#' + id + ' svg text.ylabel')].map(t => t.textContent)]))""")
        assert labels == {"plot-tests": ["tests", "score"], "plot-tokens": ["tokens", "cumulative tokens"]}
        legend = browser.eval("[...document.querySelectorAll('#plot-tests .legend span')].map(s => s.textContent)")
        assert "score: unittest (right axis)" in legend and "score: has-tests (right axis)" in legend
        colours = browser.eval("""[...new Set([...document.querySelectorAll('#plot-tests svg path')]
            .map(p => p.getAttribute('stroke')))]""")
        assert len(colours) == 5, colours  # total, failed, passed and one per scorer
        # markdown: the demo's reasoning titles are bold, not asterisks
        first = browser.eval("document.querySelector('#part-1 .ev.reasoning_added .md strong').textContent")
        assert first == "Exploring the repository layout"
        assert "**" not in browser.eval("document.querySelector('#part-1 .ph .title').textContent")
        # a failing test run's output starts open; a long successful listing starts closed
        outputs = browser.eval("""[...document.querySelectorAll('.ev.tool_returned details')].map(d =>
            [d.closest('section').id, d.open, d.parentElement.classList.contains('bad')])""")
        bad = [o for o in outputs if o[2]]
        assert bad and all(o[1] for o in bad), outputs
        assert ["part-2", False, False] in outputs  # `ls -R`: 17 lines of listing
        assert "Traceback" in browser.eval("document.querySelector('.ev.tool_returned.bad details[open] pre').textContent")
        browser.screenshot(ARTIFACTS / "report-demo.png")
        browser.eval("agtraceJump(9)")
        browser.screenshot(ARTIFACTS / "report-demo-failing.png", full_page=False)


def test_markdown_cannot_inject_html(tmp_path):
    store = Store(tmp_path / "store")
    with Recorder(store, agent="hostile", task_id="t/xss") as rec:
        rec.message("assistant", HOSTILE)
        rec.reasoning("**Thinking** about <iframe src=x>")
        call = rec.tool_call(LONG_TOOL, {"title": "t"})
        rec.tool_result(call, "created")
        call = rec.tool_call("shell", command="make test")
        rec.tool_result(call, "FAILED\n" + "trace line\n" * 40, exit_code=2, status="error")
    store.close()
    page = tmp_path / "xss.html"
    _report(store.root, rec.run_id, page)
    with chromium.Chromium() as browser:
        browser.open(page)
        assert browser.console_errors() == []
        found = browser.eval("""(() => { const m = document.querySelector('#part-1 .ev.message_added .md');
            return {pwned: window.PWNED === undefined ? null : window.PWNED,
                    bad: [...document.querySelectorAll('#parts img, #parts script, #parts svg, #parts iframe, #parts .md b, #parts .md i')].length,
                    handlers: [...document.querySelectorAll('#parts *')].filter(e => [...e.attributes].some(a => a.name.startsWith('on'))).length,
                    links: [...m.querySelectorAll('a')].map(a => a.getAttribute('href')),
                    h: m.querySelector('h5') && m.querySelector('h5').textContent,
                    items: [...m.querySelectorAll('li')].map(li => li.textContent),
                    strong: [...m.querySelectorAll('strong')].map(s => s.textContent),
                    code: [...m.querySelectorAll('code')].map(s => s.textContent),
                    text: m.textContent}; })()""")
        assert found["pwned"] is None and found["bad"] == 0 and found["handlers"] == 0, found
        assert found["links"] == ['https://example.org/a?b=1&c="2"'], found["links"]
        assert found["h"] == "Plan" and found["items"] == ["step one", "step <two>"]
        assert found["strong"] == ["fix", '<b onmouseover="window.PWNED=4">bold</b>']
        assert "parse()" in found["code"] and "<i>code</i>" in found["code"]
        assert '<img src=x onerror="window.PWNED=1">' in found["text"] and "[click me](javascript:" in found["text"]
        assert '<svg onload="window.PWNED=5">' in found["text"]
        # the long tool name's lane label fits inside the plot, and its full name is its tooltip
        lane = browser.eval(f"""(() => {{ const t = [...document.querySelectorAll('#plot-calls svg text')]
            .find(t => t.querySelector('title') && t.querySelector('title').textContent === {json.dumps(LONG_TOOL)});
            const b = t.getBBox(); return {{x: b.x, shown: t.firstChild.textContent}}; }})()""")
        assert lane["x"] >= 0 and lane["shown"] == "…create_pull_request", lane
        failing = browser.eval("document.querySelector('#part-4 .ev.tool_returned details').open")
        assert failing is True
        browser.screenshot(ARTIFACTS / "report-markdown.png")


def test_a_3000_part_report_in_chromium(tmp_path):
    store = Store(tmp_path / "store")
    work = tmp_path / "work"
    work.mkdir()
    (work / "app.py").write_text("x = 0\n")
    with Recorder(store, workdir=work, agent="synthetic", model="m-1", task_id="t/3000") as rec:
        for n in range(1, 3001):
            if n % 10 == 0:
                (work / "app.py").write_text(f"x = {n}\n")
            if n % 3 == 0:
                call = rec.tool_call("shell" if n % 2 else "str_replace_based_edit_tool", command=f"step {n}")
                rec.tool_result(call, "ok" if n % 7 else "Traceback: boom", exit_code=0 if n % 7 else 1,
                                status="ok" if n % 7 else "error")
            elif n % 3 == 1:
                rec.reasoning(f"**Step {n}**: look at `app.py`")
                rec.test_result(suite="pytest", passed=n // 100, failed=1, total=n // 100 + 1)
            else:
                rec.message("assistant", f"part {n} done")
            rec.usage(input=100 + n % 50, output=10)
    store.close()
    page = tmp_path / "long.html"
    _report(store.root, rec.run_id, page)
    with chromium.Chromium(1280, 1300) as browser:
        browser.open(page, timeout=120)
        assert browser.console_errors() == []
        assert browser.eval("document.querySelectorAll('#parts section.part').length") == 100
        labels = browser.eval("[...document.querySelectorAll('#plots svg text.ylabel')].map(t => t.textContent)")
        assert labels[:2] == ["tests", "tokens"], labels
        lanes = browser.eval("""[...document.querySelectorAll('#plot-calls svg text title')].map(t =>
            [t.textContent, t.parentElement.getBBox().x >= 0])""")
        assert ["str_replace_based_edit_tool", True] in lanes, lanes
        browser.screenshot(ARTIFACTS / "report-3000.png", full_page=False)  # header, plots, first parts
        browser.eval("agtraceJump(2999)")
        assert re.search(r"parts 2901–3000", browser.eval("document.querySelector('#page-of').textContent"))
        browser.screenshot(ARTIFACTS / "report-3000-end.png", full_page=False)
