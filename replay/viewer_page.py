"""The pages of ``agtrace view``: the runs index, and the report and comparison pages with the
viewer's parts added (a file browser; the diff of two runs' trees at chosen parts).

Run data never reach the HTML as markup: the index is drawn by its script from ``/api/runs``
with ``textContent``; the report and comparison are the pages ``agtrace report``/``compare``
write (they escape everything) with a section and a script added, and their Content Security
Policy gains ``connect-src 'self'`` (the script calls the viewer's API) and nothing else. Every
page marks ``body[data-ready]`` once drawn, for tests and ``bench/bench_view.py``.
"""

from __future__ import annotations

import html

from .report_page import data_block
from .report_style import CSS
from .viewer_script import COMMON_JS, COMPARE_JS, FILES_JS, INDEX_JS

VIEW_CSS = """
main{max-width:1500px}
nav.top{display:flex;gap:14px;align-items:baseline;margin:0 0 8px}nav.top a{color:var(--info);text-decoration:none}
.filters{display:flex;flex-wrap:wrap;gap:6px 10px;align-items:center;margin:6px 0}
.filters label{font-size:12px;color:var(--mute);display:flex;gap:4px;align-items:center}
.filters input{width:9em}.filters input.wide{width:18em}.filters select{font:inherit;padding:1px 4px}
table.runs{border-collapse:collapse;width:100%;font-size:13px}
table.runs th,table.runs td{border-bottom:1px solid var(--line);padding:3px 6px;text-align:left;white-space:nowrap}
table.runs th[data-sort]{cursor:pointer;user-select:none}table.runs th.sorted{color:var(--info)}
table.runs td.num,table.runs th.num{text-align:right;font-variant-numeric:tabular-nums}
table.runs td.task{max-width:22em;overflow:hidden;text-overflow:ellipsis}
table.runs tr.group td{background:var(--card);font-weight:600;padding-top:8px}
table.runs tr.flash td{animation:flash 1.2s}@keyframes flash{from{background:#fff3bf}to{background:transparent}}
table.runs a{color:var(--info);text-decoration:none;font-family:ui-monospace,monospace}
.tag{display:inline-block;font-size:11px;padding:0 5px;margin-right:3px;border-radius:7px;background:var(--line)}
.pager{display:flex;gap:10px;align-items:center;margin:8px 0}.mute{color:var(--mute)}
.err{color:var(--err)}.hits{font-size:12px;color:var(--mute)}
#tree{max-height:520px;overflow:auto;font:12.5px ui-monospace,monospace;min-width:260px}
#tree details{margin-left:12px}#tree summary{cursor:pointer}#tree a{display:block;margin-left:12px;cursor:pointer;color:var(--info)}
#tree a.on{font-weight:700}.browser{display:flex;gap:12px;align-items:flex-start}
#file{flex:1;min-width:0}#file pre{background:var(--card);padding:8px;border-radius:6px;max-height:520px;overflow:auto;margin:0}
"""


def _csp(nonce: str) -> str:
    return (f"default-src 'none'; style-src 'unsafe-inline'; script-src 'nonce-{nonce}'; connect-src 'self'; "
            "img-src data:; base-uri 'none'; form-action 'self'")


def index_page(nonce: str) -> str:
    """The runs index: filters, the table (drawn from ``/api/runs``), paging, live updates."""
    n = html.escape(nonce)
    return (
        "<!doctype html>\n<html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width,initial-scale=1">'
        f'<meta http-equiv=Content-Security-Policy content="{_csp(nonce)}">'
        f"<title>agtrace view</title><style>{CSS}{VIEW_CSS}</style></head>\n"
        '<body data-kind="index"><main><nav class=top><strong>agtrace view</strong>'
        '<span id=count class=mute></span><span id=live class=mute></span></nav>'
        '<form id=filters class=filters autocomplete=off>'
        '<label>search <input name=q class=wide placeholder="text in messages, tools, outputs"></label>'
        '<label>agent <input name=agent list=agents></label><label>model <input name=model list=models></label>'
        '<label>task <input name=task list=tasks></label>'
        '<label>status <select name=status><option value="">any</option>'
        + "".join(f"<option>{s}</option>" for s in ("running", "open", "crashed", "unknown", "damaged", "completed", "failed",
                                                    "limit", "timeout", "interrupted"))
        + '</select></label><label>tag <input name=tag placeholder="k=v"></label>'
        '<label>tests <select name=tests><option value="">any</option><option value=pass>all passed</option>'
        '<option value=fail>failing</option><option value=none>no tests</option></select></label>'
        '<label>scorer <select name=scorer><option value="">latest of any</option></select></label>'
        '<label>tokens ≥ <input name=min_tokens type=number min=0 step=1></label>'
        '<label>cost ≥ $ <input name=min_cost type=number min=0 step=any></label>'
        '<label>duration ≥ s <input name=min_duration type=number min=0 step=any></label>'
        '<label><input type=checkbox name=group value=task> group by task</label>'
        '<button type=submit>apply</button><button type=button id=clear>clear</button>'
        '<button type=button id=compare disabled>compare selected</button></form>'
        '<datalist id=agents></datalist><datalist id=models></datalist><datalist id=tasks></datalist>'
        '<div id=msg class=err></div><div id=hits class=hits></div>'
        '<table class=runs id=runs><thead><tr><th></th>'
        '<th data-sort=id>run</th><th data-sort=agent>agent</th><th data-sort=model>model</th>'
        '<th data-sort=task>task</th><th data-sort=status>status</th><th data-sort=parts class=num>parts</th>'
        '<th data-sort=tests class=num>tests</th><th data-sort=score class=num>score</th>'
        '<th data-sort=tokens class=num>tokens</th><th data-sort=cost class=num>cost</th>'
        '<th data-sort=duration class=num>duration</th><th data-sort=started>started</th><th>tags</th>'
        '</tr></thead><tbody></tbody></table>'
        '<div class=pager><button id=prev>◀ newer</button><span id=pageof class=mute></span>'
        '<button id=next>older ▶</button></div></main>\n'
        f"<script nonce={n}>{COMMON_JS}{INDEX_JS}</script></body></html>\n"
    )


def _inject(page_html: str, section: str, data: dict, script: str, nonce: str) -> str:
    """A report or comparison page with a nav bar, ``section`` (before the footer), the
    ``viewer-data`` block and ``script`` added, and ``connect-src 'self'`` in its policy."""
    policy = "content=\"default-src 'none';"
    if policy not in page_html or "<main>" not in page_html or "<footer>" not in page_html:
        raise ValueError("the report page changed shape: the viewer cannot add its sections")
    nav = ("<nav class=top><a href=\"/\">← all runs</a><strong>agtrace view</strong></nav>")
    out = page_html.replace(policy, f"{policy} connect-src 'self';", 1)
    out = out.replace("<main>", f"<main>{nav}", 1)
    marker = "<section><h2>Transcript</h2>" if "<section><h2>Transcript</h2>" in out else "<footer>"
    head, _, tail = out.partition(marker) if marker != "<footer>" else out.rpartition(marker)
    out = f"{head}{section}{marker}{tail}"
    block = f'<script type="application/json" id="viewer-data">{data_block(data)}</script>\n'
    style = f"<style>{VIEW_CSS}</style>"
    out = out.replace("</head>", f"{style}</head>", 1)
    head, _, tail = out.rpartition("</body>")
    return f"{head}{block}<script nonce={html.escape(nonce)}>{COMMON_JS}{script}</script></body>{tail}"


FILES_SECTION = (
    "<section id=files><h2>Files</h2><div class=toolbar><label>part <input id=fpart type=number min=0 "
    "step=1></label><button id=flast>last</button><input id=ffilter placeholder=\"filter paths\">"
    "<span id=fcount class=mute></span></div><div class=browser><div id=tree class=card></div>"
    "<div id=file><p class=mute>Pick a file to see it as it was after that part.</p></div></div></section>"
)


def run_page(report_html: str, info: dict, nonce: str) -> str:
    """The report of one run with the file browser added."""
    return _inject(report_html, FILES_SECTION, {"run": info}, FILES_JS, nonce)


COMPARE_SECTION = (
    "<section id=treediff><h2>Trees at chosen parts</h2><p class=note id=tasknote></p>"
    "<div class=toolbar><label>run A <select id=ra></select></label><label>part <input id=pa "
    "placeholder=last size=5></label><label>run B <select id=rb></select></label><label>part <input id=pb "
    "placeholder=last size=5></label><button id=dodiff>diff</button><span id=dstat class=mute></span></div>"
    "<div id=dout></div></section>"
)


def compare_page(compare_html: str, runs: list[dict], nonce: str) -> str:
    """The comparison of several runs with the diff of any two runs' trees at chosen parts."""
    return _inject(compare_html, COMPARE_SECTION, {"runs": runs}, COMPARE_JS, nonce)
