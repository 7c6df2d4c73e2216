"""The static page of ``agtrace report`` and ``agtrace compare``: inline CSS, inline JS, no network.

:func:`page` wraps server-rendered HTML (the header, tables) and JSON data blocks into one
document. The script draws every plot as inline SVG, pages the transcript (``page`` parts at a
time; each page's events are a data block of their own, parsed only when that page is shown, so
a long run's page opens as fast as a short one's), jumps to ``#part-N``, and shows any part's diff against the
previous part or any two parts against each other (from embedded file versions, with a small
Myers diff, falling back to the per-part diffs of the range when versions were left out).

The script marks ``performance.mark("agtrace-ready")`` and sets ``body[data-ready]`` once the
first screen is drawn, so tests and ``bench/bench_report.py`` can wait for it.
"""

from __future__ import annotations

import html
from typing import Any

import msgspec

from .report_markdown import MARKDOWN_CSS, MARKDOWN_JS
from .report_style import CSS

JS = r"""
(function(){
"use strict";
const P0 = performance.now();
const $ = (s, r) => (r || document).querySelector(s);
const esc = s => String(s == null ? "" : s).replace(/[&<>"']/g, c => ({"&":"&amp;","<":"&lt;",">":"&gt;",'"':"&quot;","'":"&#39;"})[c]);
const block = id => { const el = document.getElementById(id); return el ? JSON.parse(el.textContent) : null; };
const COLORS = ["#2f6fdd","#d64545","#1f9d55","#d98a00","#8a4fd8","#0f9bb0","#c2408d","#6b7c2f","#7a5230","#4a5568"];
const SCORE_COLORS = ["#8a4fd8","#0f9bb0","#c2408d","#d98a00","#6b7c2f","#2f6fdd","#7a5230"];
const OPEN_LINES = 6;  /* a successful tool output longer than this starts collapsed; a failing one starts open */
const OUTCOME = {ok:"#1f9d55", error:"#d64545", exit:"#e07a2f", timeout:"#d98a00", declined:"#8893a5", pending:"#8a4fd8"};

function fmtNum(v){ const a = Math.abs(v);
  if (a >= 1e9) return (v/1e9).toFixed(1)+"G"; if (a >= 1e6) return (v/1e6).toFixed(1)+"M";
  if (a >= 1e3) return (v/1e3).toFixed(a >= 1e4 ? 0 : 1)+"k";
  return Number.isInteger(v) ? String(v) : String(+v.toFixed(a < 1 ? 3 : 1)); }
function fmtTime(s){ if (s < 60) return (s < 10 ? s.toFixed(1) : s.toFixed(0))+"s";
  if (s < 3600) return Math.floor(s/60)+"m"+String(Math.floor(s%60)).padStart(2,"0");
  return Math.floor(s/3600)+"h"+String(Math.floor(s%3600/60)).padStart(2,"0"); }
const timeFmt = max => max < 2 ? (v => Math.round(v*1000)+"ms") : fmtTime;  /* an axis under 2 s reads in ms */
const fmtCost = v => "$"+(v >= 100 ? v.toFixed(0) : v >= 1 ? v.toFixed(2) : v.toFixed(4));
function ticks(min, max, n){ if (!(max > min)) max = min + 1;
  const raw = (max-min)/n, mag = Math.pow(10, Math.floor(Math.log10(raw))), f = raw/mag;
  const step = (f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10)*mag, out = [];
  for (let v = Math.ceil(min/step)*step; v <= max + step*1e-9; v += step) out.push(+v.toFixed(10));
  return out; }
function extent(vals, floor){ let lo = floor === undefined ? Infinity : floor, hi = -Infinity;
  for (const v of vals) { if (v == null) continue; if (v < lo) lo = v; if (v > hi) hi = v; }
  if (hi === -Infinity) { lo = 0; hi = 1; } if (hi <= lo) hi = lo + 1; return {min: lo, max: hi}; }

/* A lane's label in at most 28 characters: an MCP tool (mcp__server__tool) by its tool, others cut at the end. */
const laneLabel = n => n.length <= 28 ? n : n.includes("__") && n.split("__").pop().length <= 27 ? "…"+n.split("__").pop() : n.slice(0, 27)+"…";
/* One chart as an SVG string: o = {label, x:{min,max,label,fmt}, y:{...}, y2?, series:[{name,color,type,points,axis,step}], lanes?} */
function chart(o){
  const laneW = o.lanes ? 12 + 6.4*Math.max(...o.lanes.map(n => laneLabel(n).length)) : 0;
  const W = 600, H = o.h || 230, m = {l: o.lanes ? Math.max(60, laneW) : o.y.label ? 64 : 50, r: o.y2 ? (o.y2.label ? 66 : 54) : 14, t: 10, b: 34};
  const pw = W-m.l-m.r, ph = H-m.t-m.b, xa = o.x;
  const X = v => m.l + (v - xa.min)/(xa.max - xa.min)*pw;
  const Y = (v, a) => m.t + ph - (v - a.min)/(a.max - a.min)*ph;
  let s = `<svg class="chart" viewBox="0 0 ${W} ${H}" role="img" aria-label="${esc(o.label)}">`;
  if (o.lanes) {
    o.lanes.forEach((name, i) => { const y = m.t + (i+0.5)*ph/o.lanes.length;
      s += `<line class="grid" x1="${m.l}" x2="${m.l+pw}" y1="${y}" y2="${y}"/><text x="${m.l-6}" y="${y+4}" text-anchor="end">${esc(laneLabel(name))}<title>${esc(name)}</title></text>`; });
  } else if (o.series.some(se => se.points.length)) {
    for (const t of ticks(o.y.min, o.y.max, 4)) { const y = Y(t, o.y);
      s += `<line class="grid" x1="${m.l}" x2="${m.l+pw}" y1="${y}" y2="${y}"/><text x="${m.l-6}" y="${y+4}" text-anchor="end">${(o.y.fmt||fmtNum)(t)}</text>`; }
    if (o.y2) for (const t of ticks(o.y2.min, o.y2.max, 4)) { const y = Y(t, o.y2);
      s += `<text x="${m.l+pw+6}" y="${y+4}">${(o.y2.fmt||fmtNum)(t)}</text>`; }
    const yc = m.t + ph/2;
    if (o.y.label) s += `<text class="ylabel" x="12" y="${yc}" text-anchor="middle" transform="rotate(-90 12 ${yc})">${esc(o.y.label)}</text>`;
    if (o.y2 && o.y2.label) s += `<text class="ylabel y2label" x="${W-8}" y="${yc}" text-anchor="middle" transform="rotate(90 ${W-8} ${yc})">${esc(o.y2.label)}</text>`;
  }
  for (const t of ticks(xa.min, xa.max, 6)) { if (xa.whole && !Number.isInteger(t)) continue; const x = X(t);
    s += `<line class="tickmark" x1="${x}" x2="${x}" y1="${m.t+ph}" y2="${m.t+ph+4}"/><text x="${x}" y="${m.t+ph+16}" text-anchor="middle">${(xa.fmt||fmtNum)(t)}</text>`; }
  s += `<line class="axis" x1="${m.l}" x2="${m.l+pw}" y1="${m.t+ph}" y2="${m.t+ph}"/><text x="${m.l+pw/2}" y="${H-3}" text-anchor="middle">${esc(xa.label)}</text>`;
  let drawn = 0;
  for (const se of o.series) {
    const a = se.axis === "y2" ? o.y2 : o.y, pts = se.points; if (!pts.length) continue; drawn++;
    if (se.type === "bars") {
      const bw = Math.max(1, (se.width || 1)/(xa.max - xa.min)*pw - 0.5), y0 = Y(Math.max(a.min, 0), a);
      for (const p of pts) { const y = Y(p[1], a);
        s += `<rect x="${(X(p[0]) - bw/2).toFixed(1)}" y="${y.toFixed(1)}" width="${bw.toFixed(1)}" height="${Math.max(0.5, y0-y).toFixed(1)}" fill="${se.color}" opacity="0.75" data-part="${p[2]}"><title>${esc(p[3])}</title></rect>`; }
    } else if (se.type === "dots") {
      for (const p of pts) s += `<circle cx="${X(p[0]).toFixed(1)}" cy="${Y(p[1], a).toFixed(1)}" r="3.5" fill="${se.color}" data-part="${p[2]}"><title>${esc(p[3])}</title></circle>`;
    } else if (se.type === "spans") {
      const lh = ph/o.lanes.length;
      for (const p of pts) { const x0 = X(p[0]), x1 = X(p[1]), y = m.t + p[2]*lh + lh*0.2;
        s += `<rect x="${x0.toFixed(1)}" y="${y.toFixed(1)}" width="${Math.max(1.5, x1-x0).toFixed(1)}" height="${(lh*0.6).toFixed(1)}" fill="${p[3]}" data-part="${p[4]}"><title>${esc(p[5])}</title></rect>`; }
    } else {
      let d = "", prev = null;
      for (const p of pts) { const x = X(p[0]).toFixed(1), y = Y(p[1], a).toFixed(1);
        d += prev === null ? `M${x},${y}` : se.step ? `H${x}V${y}` : `L${x},${y}`; prev = y; }
      if (se.step && o.extend !== false) d += `H${(m.l+pw).toFixed(1)}`;
      s += `<path d="${d}" fill="none" stroke="${se.color}" stroke-width="${se.thin ? 1.2 : 2}"${se.dash ? ' stroke-dasharray="4 3"' : ""}/>`;
      if (pts.length <= 400 && !se.nodots) for (const p of pts) if (p[2] != null)
        s += `<circle cx="${X(p[0]).toFixed(1)}" cy="${Y(p[1], a).toFixed(1)}" r="2.5" fill="${se.color}" data-part="${p[2]}"><title>${esc(p[3] || "")}</title></circle>`;
    }
  }
  if (!drawn) s += `<text class="empty" x="${m.l+pw/2}" y="${m.t+ph/2}" text-anchor="middle">${esc(o.empty || "nothing recorded")}</text>`;
  return s + "</svg>";
}
function legend(items){ return `<div class="legend">${items.map(([c, n]) => `<span><i style="background:${c}"></i>${esc(n)}</span>`).join("")}</div>`; }
function xAxis(mode, maxPart, maxT){ return mode === "time"
  ? {min: 0, max: Math.max(maxT, 1), label: "time since start", fmt: timeFmt(Math.max(maxT, 1))}
  : {min: 0, max: Math.max(maxPart, 1) + 0.5, label: "part", whole: true}; }
function toggles(card, draw){ let mode = "part";
  const h = $("h3", card); h.insertAdjacentHTML("beforeend", `<span class="sp"></span><button data-x="part" class="on">parts</button><button data-x="time">time</button>`);
  h.addEventListener("click", e => { const b = e.target.closest("button[data-x]"); if (!b) return; mode = b.dataset.x;
    h.querySelectorAll("button[data-x]").forEach(x => x.classList.toggle("on", x === b)); draw(mode); });
  draw(mode); }
function card(root, id, title){ root.insertAdjacentHTML("beforeend", `<div class="card" id="${id}"><h3>${esc(title)}</h3><div class="body"></div></div>`);
  return document.getElementById(id); }

/* ---- line diff (Myers, on trimmed middles) for any-two-parts ---- */
function diffLines(a, b){
  let s = 0; while (s < a.length && s < b.length && a[s] === b[s]) s++;
  let e = 0; while (e < a.length-s && e < b.length-s && a[a.length-1-e] === b[b.length-1-e]) e++;
  const A = a.slice(s, a.length-e), B = b.slice(s, b.length-e), N = A.length, M = B.length, max = N+M;
  const ops = []; for (let i = 0; i < s; i++) ops.push([" ", a[i]]);
  if (N && M) {
    const v = new Int32Array(2*max+2), trace = []; let done = false;
    for (let d = 0; d <= max && !done; d++) {
      if (d > 2000) return null;
      trace.push(v.slice());
      for (let k = -d; k <= d; k += 2) {
        let x = (k === -d || (k !== d && v[max+k-1] < v[max+k+1])) ? v[max+k+1] : v[max+k-1]+1, y = x-k;
        while (x < N && y < M && A[x] === B[y]) { x++; y++; }
        v[max+k] = x; if (x >= N && y >= M) { done = true; break; }
      }
    }
    const mid = []; let x = N, y = M;
    for (let d = trace.length-1; d >= 0 && (x > 0 || y > 0); d--) {
      const vv = trace[d], k = x-y;
      const pk = (k === -d || (k !== d && vv[max+k-1] < vv[max+k+1])) ? k+1 : k-1;
      const px = vv[max+pk], py = px-pk;
      while (x > px && y > py) { mid.push([" ", A[--x]]); y--; }
      if (d > 0) { if (x === px) mid.push(["+", B[--y]]); else mid.push(["-", A[--x]]); }
    }
    ops.push(...mid.reverse());
  } else { for (const l of A) ops.push(["-", l]); for (const l of B) ops.push(["+", l]); }
  for (let i = a.length-e; i < a.length; i++) ops.push([" ", a[i]]);
  return ops;
}
function textLines(text){  /* git's lines: a final newline ends the last line, it does not start another */
  if (!text) return [];
  const lines = text.split("\n");
  if (lines[lines.length-1] === "") lines.pop();
  return lines;
}
function unified(ops, path){
  const out = [`--- a/${path}`, `+++ b/${path}`], ctx = 3, idx = [];
  ops.forEach((o, i) => { if (o[0] !== " ") idx.push(i); });
  let i = 0; const ai = [], bi = []; let na = 0, nb = 0;
  for (const o of ops) { ai.push(na); bi.push(nb); if (o[0] !== "+") na++; if (o[0] !== "-") nb++; }
  while (i < idx.length) {
    let lo = Math.max(0, idx[i]-ctx), j = i;
    while (j+1 < idx.length && idx[j+1]-idx[j] <= 2*ctx) j++;
    const hi = Math.min(ops.length, idx[j]+ctx+1), body = ops.slice(lo, hi);
    const ca = body.filter(o => o[0] !== "+").length, cb = body.filter(o => o[0] !== "-").length;
    out.push(`@@ -${ai[lo]+(ca?1:0)},${ca} +${bi[lo]+(cb?1:0)},${cb} @@`);
    for (const o of body) out.push(o[0]+o[1]);
    i = j+1;
  }
  return out.join("\n");
}
function diffHtml(text){ return `<pre>${text.split("\n").map(l => {
  const c = l.startsWith("+++") || l.startsWith("---") ? "dl-h" : l[0] === "+" ? "dl-a" : l[0] === "-" ? "dl-d" : l.startsWith("@@") ? "dl-h" : "";
  return `<span class="${c}">${esc(l) || " "}</span>`; }).join("")}</pre>`; }
function fileHtml(path, status, add, del, body){
  return `<div class="diff"><div class="fh"><span class="p">${esc(path)}</span><span class="badge">${esc(status)}</span><span class="added">+${add}</span><span class="removed">−${del}</span></div>${body}</div>`; }

/*@markdown@*/
/* ================================ report ================================ */
function report(){
  const D = block("agtrace-data"), run = D.run, P = D.parts, PAGE = D.page, nParts = P.n.length;
  let DIFFS = null; const diffs = () => DIFFS || (DIFFS = block("agtrace-diffs"));
  const idxOf = new Map(P.n.map((n, i) => [n, i]));
  const maxPart = nParts ? P.n[nParts-1] : 1;
  let lastMs = nParts ? P.t[nParts-1] : 0;
  for (const c of D.calls) lastMs = Math.max(lastMs, c[2] == null ? c[1] : c[2]);
  for (const u of D.usage) lastMs = Math.max(lastMs, u[1]);
  const lastT = Math.max(0.001, lastMs/1000, run.duration_s || 0);
  const tOfPart = n => { const i = idxOf.get(n); return i === undefined ? 0 : P.t[i]/1000; };
  const plots = $("#plots");

  // tests passed / scores
  toggles(card(plots, "plot-tests", "Tests and scores"), mode => {
    const xv = (part, t) => mode === "time" ? t/1000 : part;
    const pass = [], fail = [], tot = [], sc = new Map();
    for (const r of D.tests) { const x = xv(r[0], r[1]), tip = `part ${r[0]}: ${r[2]} passed, ${r[3]} failed, ${r[4]} errors of ${r[5]} (${r[6]})`;
      pass.push([x, r[2], r[0], tip]); fail.push([x, r[3]+r[4], r[0], tip]); tot.push([x, r[5], r[0], tip]); }
    const hasScore = D.scores.length > 0, rate = D.scores.every(r => r[2] == null || (r[2] >= 0 && r[2] <= 1));
    for (const r of D.scores) if (r[0] != null) { const v = r[2] != null ? r[2] : (r[4] ? r[3]/r[4] : null); if (v == null) continue;
      const name = r[5] || "scorer"; if (!sc.has(name)) sc.set(name, []);
      sc.get(name).push([xv(r[0], mode === "time" ? tOfPart(r[0])*1000 : r[1]), v, r[0], `${name}: ${r[7] ? `the final tree (after part ${r[0]})` : `part ${r[0]}`} scored ${v} (${r[6]})`, r[7] ? 1 : 0]); }
    const scorers = [...sc.keys()].sort(), scoreColor = i => SCORE_COLORS[i % SCORE_COLORS.length];
    const scoreSeries = scorers.map((name, i) => ({name, color: scoreColor(i), points: sc.get(name).sort((a, b) => a[0]-b[0] || a[4]-b[4]), axis: "y2", thin: true}));
    const allScores = scorers.flatMap(n => sc.get(n).map(p => p[1]));
    const y = {...extent([...tot.map(p => p[1]), ...pass.map(p => p[1])], 0), label: "tests"};
    $("#plot-tests .body").innerHTML = chart({label: "tests over " + mode, x: xAxis(mode, maxPart, lastT), y, empty: "no tests ran in this run",
      y2: hasScore ? {min: 0, max: rate ? 1 : extent(allScores, 0).max, fmt: rate ? (v => Math.round(v*100)+"%") : fmtNum, label: "score"} : null,
      series: [{name: "total", color: "#8893a5", points: tot, step: true, dash: true, thin: true, nodots: true},
               {name: "failed+errors", color: "#d64545", points: fail, step: true, thin: true},
               {name: "passed", color: "#1f9d55", points: pass, step: true}, ...scoreSeries]})
      + legend([["#1f9d55", "tests passed"], ["#d64545", "failed + errors"], ["#8893a5", "tests run"]]
               .concat(scorers.map((n, i) => [scoreColor(i), `score: ${n} (right axis)`])));
  });

  // tokens per part, cumulative priced cost (the `cost` object of show/metrics) when any call was priced
  const priced = run.cost && run.cost.cost_usd != null;
  toggles(card(plots, "plot-tokens", "Tokens per part and cumulative " + (priced ? "cost" : "tokens")), mode => {
    const bins = new Map(), width = mode === "time" ? Math.max(lastT/300, 0.001) : Math.max(1, Math.ceil(maxPart/300));
    const cum = []; let c = 0, ctok = 0;
    for (const u of D.usage) {
      const x = mode === "time" ? u[1]/1000 : u[0], key = Math.floor(x/width);
      const b = bins.get(key) || [key*width + (mode === "time" ? width/2 : (width > 1 ? width/2 : 0)), 0, u[0], ""]; b[1] += u[2];
      b[3] = (width > 1 || mode === "time" ? `parts near ${u[0]}` : `part ${u[0]}`)+`: ${b[1].toLocaleString()} tokens`; bins.set(key, b);
      c += u[3] || 0; ctok += u[2];
      cum.push([x, priced ? c : ctok, u[0], priced ? `${fmtCost(c)} by part ${u[0]}` : `${ctok.toLocaleString()} tokens by part ${u[0]}`]);
    }
    const bars = [...bins.values()];
    $("#plot-tokens .body").innerHTML = chart({label: "tokens over " + mode, x: xAxis(mode, maxPart, lastT),
      y: {...extent(bars.map(b => b[1]), 0), label: "tokens"},
      y2: {...extent(cum.map(p => p[1]), 0), fmt: priced ? fmtCost : fmtNum, label: priced ? "cumulative cost" : "cumulative tokens"},
      empty: "no token usage was reported",
      series: [{name: "tokens", color: "#2f6fdd", points: bars, type: "bars", width},
               {name: "cumulative", color: "#d98a00", points: cum, step: true, axis: "y2", nodots: true}]})
      + legend([["#2f6fdd", "tokens per " + (mode === "time" ? "interval" : width > 1 ? width+" parts" : "part")],
                ["#d98a00", "cumulative " + (priced ? "cost" : "tokens") + " (right axis)"]]);
  });

  // tool calls on a timeline, coloured by outcome
  const tc = card(plots, "plot-calls", "Tool calls over time, by outcome");
  (() => {
    const count = new Map(); for (const c of D.calls) count.set(c[3], (count.get(c[3]) || 0)+1);
    let lanes = [...count.entries()].sort((a, b) => b[1]-a[1]).map(e => e[0] || "?");
    if (lanes.length > 8) lanes = lanes.slice(0, 7).concat(["other"]);
    const laneOf = t => { const i = lanes.indexOf(t || "?"); return i < 0 ? lanes.length-1 : i; };
    const spans = D.calls.map(c => { const end = (c[2] == null ? c[1] : c[2])/1000;
      return [c[1]/1000, Math.max(end, c[1]/1000), laneOf(c[3]), OUTCOME[c[4]] || "#8893a5", c[0],
              `part ${c[0]}: ${c[3]} ${c[4]} (${c[2] == null ? "no result" : fmtTime(Math.max(0, end - c[1]/1000))})`]; });
    $(".body", tc).innerHTML = chart({label: "tool calls", h: Math.max(120, 40 + 26*Math.max(lanes.length, 1)), lanes: lanes.length ? lanes : ["–"],
      x: {min: 0, max: lastT, label: "time since start", fmt: timeFmt(lastT)}, y: {min: 0, max: 1}, empty: "no tool calls",
      series: [{name: "calls", type: "spans", points: spans}]})
      + legend(Object.entries(OUTCOME).filter(([k]) => D.calls.some(c => c[4] === k)).map(([k, v]) => [v, k === "exit" ? "non-zero exit" : k]));
  })();
  plots.addEventListener("click", e => { const el = e.target.closest("[data-part]"); if (el && el.dataset.part !== "null") jump(+el.dataset.part); });

  // ---- transcript ----
  const pageOf = slot => slot <= 0 ? 0 : Math.floor((slot-1)/PAGE);
  const nPages = Math.max(1, pageOf(maxPart)+1, D.npages || 0);
  const pageEvents = p => block("agtrace-page-"+p) || [];  // parsed when the page is shown
  const list = $("#parts"); let current = -1;

  function evHtml(e){
    const [seq, t, slot, kind, b] = e, k = `<span class="k">${esc(kind.replace(/_/g, " "))}</span>`;
    switch (kind) {
      case "message_added": return `<div class="ev ${kind}">${k}<b>${esc(b.role)}</b>${md(b.text)}</div>`;
      case "reasoning_added": return `<div class="ev ${kind}">${k}${md(b.text)}</div>`;
      case "tool_called": return `<div class="ev ${kind}">${k}<b>${esc(b.tool)}</b><pre class="mono">$ ${esc(b.command)}</pre></div>`;
      case "tool_returned": { const bad = b.status !== "ok" || (b.exit_code != null && b.exit_code !== 0);
        const head = `${k}<span class="badge ${bad ? "o-error" : "o-ok"}">${esc(b.status)}${b.exit_code != null ? " · exit "+b.exit_code : ""}</span> ${b.ms != null ? fmtTime(b.ms/1000) : ""} · ${b.bytes.toLocaleString()} bytes`;
        const open = bad || (b.output.length < 400 && b.output.split("\n").length <= OPEN_LINES);  /* failures first */
        return b.output ? `<div class="ev ${kind}${bad ? " bad" : ""}"><details${open ? " open" : ""}><summary>${head}</summary><pre class="out">${esc(b.output)}</pre></details></div>` : `<div class="ev ${kind}">${head}</div>`; }
      case "tests_ran": return `<div class="ev ${kind}${b.failed || b.errors ? " bad" : ""}">${k}<b>${b.passed} passed</b>, ${b.failed} failed, ${b.errors} errors of ${b.total} <span class="k">${esc(b.suite)}</span>${b.failing.length ? `<pre>${b.failing.map(esc).join("\n")}</pre>` : ""}</div>`;
      case "usage_reported": return `<div class="ev ${kind}">${k}in ${b.input.toLocaleString()} · out ${b.output.toLocaleString()} · cache read ${b.cache_read.toLocaleString()} · cache write ${b.cache_write.toLocaleString()}${b.cost != null ? " · "+fmtCost(b.cost) : ""}${b.reported_cost != null ? " · the agent reported "+fmtCost(b.reported_cost) : ""}</div>`;
      case "turn_started": case "turn_ended": return `<div class="ev ${kind}">${k}turn ${b.turn}</div>`;
      case "error_occurred": return `<div class="ev ${kind}">${k}<b>${esc(b.origin)}${b.fatal ? " (fatal)" : ""}</b><pre>${esc(b.message)}</pre></div>`;
      case "file_changed": return `<div class="ev ${kind}">${k}${esc(b.change)} <code>${esc(b.path)}</code></div>`;
      case "line_logged": return `<div class="ev ${kind}">${k}${esc(b.stream)}: <code>${esc(b.text)}</code></div>`;
      case "note_added": return `<div class="ev ${kind}">${k}<b>${esc(b.author || "?")}</b>, ${esc(b.when)}<pre>${esc(b.text)}</pre></div>`;
      case "run_ended": return `<div class="ev ${kind}">${k}<span class="status s-${esc(b.status)}">${esc(b.status)}</span> ${esc(b.reason)}</div>`;
      default: return `<div class="ev ${kind}">${k}<code>${esc(JSON.stringify(b))}</code></div>`;
    }
  }
  function partHead(n){
    const i = idxOf.get(n); if (i === undefined) return `<div class="ph"><span class="n">before the first part</span></div>`;
    const ch = P.ch[i], tests = P.outcome[i];
    return `<div class="ph"><a class="n" href="#part-${n}">#${n}</a><span class="badge">${esc(P.kind[i])}</span>` +
      (tests ? `<span class="badge o-${esc(tests)}">${esc(tests)}</span>` : "") +
      `<span class="title">${P.kind[i] === "message" || P.kind[i] === "reasoning" ? mdInline(esc(P.title[i])) : esc(P.title[i])}</span><span class="t">+${fmtTime(P.t[i]/1000)}</span>` +
      (ch ? `<button data-diff="${n}">diff: ${ch} file${ch > 1 ? "s" : ""}, <span class="added">+${P.add[i]}</span> <span class="removed">−${P.del[i]}</span></button>` : `<span class="t">${P.tree[i] < 0 ? "no snapshot" : "no file changes"}</span>`) +
      `</div><div class="pd"></div>`;
  }
  function renderPage(p){
    if (p === current) return; current = p;
    const lo = p*PAGE+1, hi = Math.min((p+1)*PAGE, maxPart), bySlot = new Map();
    for (const e of pageEvents(p)) (bySlot.get(e[2]) || bySlot.set(e[2], []).get(e[2])).push(e);
    let h = "";
    if (p === 0 && bySlot.has(0)) h += `<section class="part" id="part-0" data-part="0">${partHead(0)}${bySlot.get(0).map(evHtml).join("")}</section>`;
    for (let n = lo; n <= hi; n++) { if (!idxOf.has(n) && !bySlot.has(n)) continue;
      h += `<section class="part" id="part-${n}" data-part="${n}">${partHead(n)}${(bySlot.get(n) || []).map(evHtml).join("")}</section>`; }
    list.innerHTML = h || `<p class="note">no parts</p>`;
    $("#page-of").textContent = `parts ${lo}–${hi} of ${maxPart.toLocaleString()} (page ${p+1}/${nPages})`;
    $("#prev").disabled = p === 0; $("#next").disabled = p >= nPages-1;
  }
  function partDiffHtml(n){
    const items = diffs().parts[String(n)];
    if (!items) return `<p class="note">${esc(diffs().note || "no files changed in this part")}</p>`;
    return items.map(([path, st, a, d, ka, kb, text, note]) => fileHtml(path, st, a, d, text != null ? diffHtml(text) : `<p class="note">${esc(note)}</p>`)).join("");
  }
  function rangeDiffHtml(a, b){
    if (a === b) return `<p class="note">the same part</p>`;
    if (a > b) [a, b] = [b, a];
    const dd = diffs(), files = new Map();
    for (let n = a+1; n <= b; n++) { const items = dd.parts[String(n)]; if (!items) continue;
      for (const it of items) { const f = files.get(it[0]); if (f) { f.last = it; f.steps.push([n, it]); } else files.set(it[0], {first: it, last: it, steps: [[n, it]]}); } }
    if (!files.size) return `<p class="note">no file differs between part ${a} and part ${b}</p>`;
    let h = "", seen = 0;
    for (const [path, f] of [...files.entries()].sort()) {
      const ka = f.first[4], kb = f.last[5];
      if (ka === kb) continue; seen++;
      const st = ka == null ? "added" : kb == null ? "deleted" : "modified";
      const ta = ka == null ? "" : dd.blobs[ka], tb = kb == null ? "" : dd.blobs[kb];
      let ops = null;
      if (ta !== undefined && tb !== undefined) ops = diffLines(textLines(ta), textLines(tb));
      if (ops) { const add = ops.filter(o => o[0] === "+").length, del = ops.filter(o => o[0] === "-").length;
        h += fileHtml(path, st, add, del, diffHtml(unified(ops, path))); continue; }
      h += fileHtml(path, st, "?", "?", `<p class="note">file versions not embedded (size caps); the diffs of each part in the range, in order:</p>` +
        f.steps.map(([n, it]) => `<p class="note">part ${n}</p>` + (it[6] != null ? diffHtml(it[6]) : `<p class="note">${esc(it[7])}</p>`)).join(""));
    }
    return h || `<p class="note">files changed between part ${a} and part ${b} but ended as they were</p>`;
  }
  function toggleDiff(n, open){
    const sec = document.getElementById("part-"+n); if (!sec) return;
    const pd = $(".pd", sec); if (!pd) return;
    if (open === false || (open === undefined && pd.innerHTML)) { pd.innerHTML = ""; return; }
    pd.innerHTML = partDiffHtml(n);
  }
  function jump(n){
    n = Math.max(0, Math.min(maxPart, Math.round(n))); renderPage(pageOf(n));
    const sec = document.getElementById("part-"+n); if (!sec) return;
    document.querySelectorAll(".part.hl").forEach(x => x.classList.remove("hl")); sec.classList.add("hl");
    if (idxOf.has(n) && P.ch[idxOf.get(n)]) toggleDiff(n, true);
    sec.scrollIntoView({block: "start"}); $("#jump-input").value = n;
    if (location.hash !== "#part-"+n) history.replaceState(null, "", "#part-"+n);
  }
  window.agtraceJump = jump;
  $("#jump-go").addEventListener("click", () => { const v = parseInt($("#jump-input").value, 10); if (!isNaN(v)) jump(v); });
  $("#jump-input").addEventListener("keydown", e => { if (e.key === "Enter") $("#jump-go").click(); });
  $("#prev").addEventListener("click", () => { renderPage(current-1); list.scrollIntoView(); });
  $("#next").addEventListener("click", () => { renderPage(current+1); list.scrollIntoView(); });
  list.addEventListener("click", e => { const b = e.target.closest("button[data-diff]"); if (b) toggleDiff(+b.dataset.diff); });
  $("#range-go").addEventListener("click", () => {
    const a = parseInt($("#range-a").value, 10), b = parseInt($("#range-b").value, 10);
    $("#range-out").innerHTML = isNaN(a) || isNaN(b) ? `<p class="note">give two part numbers</p>` : rangeDiffHtml(a, b); });
  $("#range-a").max = $("#range-b").max = $("#jump-input").max = maxPart; $("#range-b").value = maxPart;
  window.addEventListener("hashchange", () => { const m = /^#part-(\d+)$/.exec(location.hash); if (m) jump(+m[1]); });
  const m = /^#part-(\d+)$/.exec(location.hash);
  if (m) jump(+m[1]); else renderPage(0);
}

/* ================================ compare ================================ */
function compare(){
  const D = block("agtrace-data"), plots = $("#plots");
  const maxPart = Math.max(1, ...D.runs.map(r => r.parts_max)), maxT = Math.max(1, ...D.runs.map(r => r.t_max/1000));
  const leg = () => legend(D.runs.map((r, i) => [COLORS[i % COLORS.length], r.label]));
  const draw = (id, title, pick, fmt, ylabel) => toggles(card(plots, id, title), mode => {
    const series = D.runs.map((r, i) => ({name: r.label, color: COLORS[i % COLORS.length], step: true,
      points: pick(r).map(p => [mode === "time" ? p[1]/1000 : p[0], p[2], p[0], `${r.label} ${p[3] ? "final tree" : `part ${p[0]}`}: ${fmt ? fmt(p[2]) : p[2].toLocaleString()}`])}));
    $(`#${id} .body`).innerHTML = chart({label: title, x: xAxis(mode, maxPart, maxT), y: {...extent(series.flatMap(s => s.points.map(p => p[1])), 0), fmt, label: ylabel},
      series, empty: "nothing recorded", extend: false}) + leg();
  });
  draw("plot-tests", "Tests passed", r => r.tests, undefined, "tests passed");
  draw("plot-rate", "Pass rate", r => r.rate, v => Math.round(v*100)+"%", "pass rate");
  draw("plot-tokens", "Cumulative tokens", r => r.tokens, undefined, "tokens");
  if (D.runs.some(r => r.cost.length)) draw("plot-cost", "Cumulative cost", r => r.cost, fmtCost, "cost");
  const scorers = [...new Set(D.runs.flatMap(r => Object.keys(r.scores || {})))].sort();
  scorers.forEach((name, i) => draw(`plot-score-${i}`, `Score: ${name}`, r => (r.scores || {})[name] || [], fmtNum, name));
}

if (document.body.dataset.kind === "compare") compare(); else report();
performance.mark("agtrace-ready");
document.body.dataset.ready = String(Math.round(performance.now() - P0));
})();
"""

MD_SLOT = "/*@markdown@*/"
"""Where the markdown renderer (:mod:`agtrace.replay.report_markdown`) goes in :data:`JS`."""

REPORT_BODY = """
<section><h2>Plots</h2><div class="plots" id="plots"></div></section>
<section><h2>Compare two parts</h2>
<div class="toolbar" style="position:static">diff from part <input type="number" id="range-a" min="0" value="0">
to part <input type="number" id="range-b" min="0"> <button id="range-go">show</button></div>
<div id="range-out"></div></section>
<section><h2>Transcript</h2>
<div class="toolbar"><label>jump to part <input type="number" id="jump-input" min="0"></label><button id="jump-go">go</button>
<span class="sp"></span><button id="prev">◀ previous</button><span id="page-of" class="mono"></span><button id="next">next ▶</button></div>
<div id="parts"></div></section>
"""

COMPARE_BODY = """<section><h2>Curves</h2><div class="plots" id="plots"></div></section>"""


def data_block(obj: Any) -> str:
    """JSON for a ``<script type="application/json">`` element (no ``<`` can end the element).
    A file name that is not UTF-8 is written in its quoted form (``json_safe``)."""
    try:
        data = msgspec.json.encode(obj)
    except UnicodeEncodeError:
        from agtrace.eventlog import json_safe

        data = msgspec.json.encode(json_safe(msgspec.to_builtins(obj)))
    return data.replace(b"<", b"\\u003c").decode()


def page(*, title: str, kind: str, header_html: str, blocks: dict[str, Any], body_html: str = "",
         footer: str = "") -> str:
    """The whole document. ``kind`` is ``report`` or ``compare``; ``blocks`` are id → JSON data."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        made_by = f"agtrace {version('agtrace')}"
    except PackageNotFoundError:
        made_by = "agtrace"
    body = REPORT_BODY if kind == "report" else COMPARE_BODY
    data = "".join(f'<script type="application/json" id="{k}">{data_block(v)}</script>\n' for k, v in blocks.items())
    return (
        "<!doctype html>\n<html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width,initial-scale=1">'
        "<meta http-equiv=Content-Security-Policy content=\"default-src 'none'; style-src 'unsafe-inline'; "
        "script-src 'unsafe-inline'; img-src data:\">"
        f"<title>{html.escape(title)}</title><style>{CSS}{MARKDOWN_CSS}</style></head>\n"
        f'<body data-kind="{kind}"><main><header>{header_html}</header>{body_html}{body}'
        f"<footer>{html.escape(footer)} Made by {html.escape(made_by)}; self-contained: no network, "
        "plots drawn by the page.</footer></main>\n"
        f"{data}<script>{JS.replace(MD_SLOT, MARKDOWN_JS)}</script></body></html>\n"
    )
