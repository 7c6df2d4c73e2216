"""The stylesheet of the report and compare pages (inline in each page; light and dark)."""

CSS = r"""
:root{--fg:#1d2330;--mute:#687184;--bg:#fff;--card:#f6f7f9;--line:#dde1e7;--ok:#1f9d55;--err:#d64545;
--warn:#d98a00;--info:#2f6fdd;--pur:#8a4fd8;--add:#e6f6ea;--del:#fbe9e9;--hunk:#eef3fd}
@media (prefers-color-scheme:dark){:root{--fg:#e3e6ec;--mute:#99a2b3;--bg:#14171c;--card:#1d2128;--line:#323844;
--add:#163222;--del:#3a1d1f;--hunk:#1b2740}}
*{box-sizing:border-box}body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;color:var(--fg);background:var(--bg)}
main{max-width:1240px;margin:0 auto;padding:16px 20px 60px}
h1{font-size:19px;margin:4px 0 10px;font-weight:600}h2{font-size:16px;margin:22px 0 8px}
code,pre,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12.5px}
pre{white-space:pre-wrap;word-break:break-word;margin:4px 0}
.status{display:inline-block;padding:1px 9px;border-radius:10px;font-size:13px;color:#fff;background:var(--mute);vertical-align:2px}
.s-completed{background:var(--ok)}.s-failed,.s-crashed,.s-damaged{background:var(--err)}.s-limit,.s-timeout,.s-interrupted{background:var(--warn)}
.s-running,.s-open{background:var(--info)}.reason{font-size:14px;color:var(--mute);font-weight:400}
dl.facts{display:grid;grid-template-columns:max-content 1fr max-content 1fr;gap:2px 14px;margin:0}
dl.facts dt{color:var(--mute)}dl.facts dd{margin:0;overflow-wrap:anywhere}
.notes{margin-top:8px}.notes h2{font-size:14px;margin:0 0 4px}.notes ul{margin:0;padding-left:18px}.notes .text{white-space:pre-wrap}.notes .by,.notes .about{color:var(--mute);font-size:12px}
details.prompt{margin-top:8px}details.prompt pre{background:var(--card);padding:8px;border-radius:6px;max-height:240px;overflow:auto}
.plots{display:grid;grid-template-columns:repeat(auto-fit,minmax(560px,1fr));gap:12px}
.card{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:10px 12px}
.card h3{font-size:14px;margin:0 0 6px;display:flex;gap:8px;align-items:center}.card h3 .sp{flex:1}
svg.chart{width:100%;height:auto;display:block}svg .grid{stroke:var(--line)}svg .axis,svg .tickmark{stroke:var(--mute)}
svg text{fill:var(--mute);font-size:11px}svg text.ylabel{font-size:11.5px;fill:var(--fg)}svg [data-part]{cursor:pointer}svg .empty{font-size:13px}
.legend{display:flex;flex-wrap:wrap;gap:4px 14px;font-size:12px;color:var(--mute)}.legend i{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:4px;vertical-align:-1px}
button,input{font:inherit;color:inherit;background:var(--bg);border:1px solid var(--line);border-radius:5px;padding:2px 8px}
button{cursor:pointer}button:hover{border-color:var(--info)}button.on{background:var(--info);color:#fff;border-color:var(--info)}
input[type=number]{width:90px}
.toolbar{display:flex;flex-wrap:wrap;gap:8px;align-items:center;margin:6px 0 10px;position:sticky;top:0;background:var(--bg);padding:6px 0;z-index:2;border-bottom:1px solid var(--line)}
.toolbar .sp{flex:1}
.part{border:1px solid var(--line);border-radius:8px;margin:8px 0;padding:6px 10px;scroll-margin-top:60px}
.part.hl{outline:2px solid var(--info)}
.ph{display:flex;gap:8px;align-items:baseline;flex-wrap:wrap}.ph .n{font-weight:600}.ph .t{color:var(--mute);font-size:12px}
.ph .title{flex:1;min-width:200px;overflow-wrap:anywhere}
.badge{font-size:11px;padding:0 6px;border-radius:8px;background:var(--line);color:var(--fg)}
.o-ok,.o-pass{background:var(--ok);color:#fff}.o-error,.o-fail,.o-exit{background:var(--err);color:#fff}.o-timeout{background:var(--warn);color:#fff}
.ev{margin:3px 0 3px 4px;padding-left:8px;border-left:3px solid var(--line)}
.ev .k{color:var(--mute);font-size:12px;margin-right:6px}.ev.message_added{border-color:var(--info)}.ev.reasoning_added pre{font-style:italic;color:var(--mute)}
.ev.note_added{border-color:var(--warn)}.ev.tool_called{border-color:var(--pur)}.ev.tests_ran{border-color:var(--ok)}.ev.tests_ran.bad,.ev.error_occurred{border-color:var(--err)}
.ev.usage_reported,.ev.turn_started,.ev.turn_ended,.ev.line_logged{font-size:12px;color:var(--mute)}
.ev details>summary{cursor:pointer;color:var(--mute);font-size:12px}.ev pre.out{max-height:300px;overflow:auto;background:var(--card);padding:6px;border-radius:5px}
.diff{margin:6px 0;border:1px solid var(--line);border-radius:6px;overflow:hidden}
.diff .fh{background:var(--card);padding:4px 8px;display:flex;gap:8px;font-size:13px}.diff .fh .p{flex:1;font-family:ui-monospace,monospace}
.diff pre{margin:0;padding:0 0 4px;white-space:pre;overflow:auto;max-height:600px}
.diff pre span{display:block;padding:0 8px}.dl-a{background:var(--add)}.dl-d{background:var(--del)}.dl-h{background:var(--hunk);color:var(--mute)}
.note{color:var(--mute);font-size:12.5px;padding:4px 8px}.added{color:var(--ok)}.removed{color:var(--err)}
table.metrics{border-collapse:collapse;width:100%;font-size:13px}table.metrics th,table.metrics td{border-bottom:1px solid var(--line);padding:4px 8px;text-align:left;vertical-align:top}
table.metrics td.num{text-align:right;font-variant-numeric:tabular-nums}
footer{color:var(--mute);font-size:12px;margin-top:30px}
"""
