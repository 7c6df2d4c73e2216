"""The scripts of ``agtrace view``'s pages (see :mod:`agtrace.replay.viewer_page`).

They build every element with ``textContent`` (never ``innerHTML`` of data), read the page's
data from ``<script type="application/json">`` blocks and the rest from ``/api/…``.
"""

COMMON_JS = r"""
"use strict";
const V$ = (s, r) => (r || document).querySelector(s);
function el(tag, attrs, ...kids){ const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) { if (v == null || v === false) continue;
    if (k === "text") e.textContent = v; else if (k === "cls") e.className = v; else e.setAttribute(k, v === true ? "" : v); }
  for (const k of kids) if (k != null) e.append(k.nodeType ? k : document.createTextNode(String(k)));
  return e; }
async function api(url){ const r = await fetch(url, {credentials: "same-origin", headers: {"Accept": "application/json"}});
  let body; try { body = await r.json(); } catch (e) { throw new Error(url + ": " + r.status + " " + r.statusText); }
  if (!r.ok) throw new Error(body && body.error ? body.error : url + ": " + r.status);
  return body; }
const viewerData = () => JSON.parse(document.getElementById("viewer-data").textContent);
const fmtInt = v => v == null ? "–" : Number(v).toLocaleString("en-US");
const fmtUsd = v => v == null ? "–" : "$" + (v >= 100 ? v.toFixed(0) : v >= 1 ? v.toFixed(2) : v.toFixed(4));
// as `show` labels it: a partial sum never shows as whole ("$0.0100 + unpriced", "unpriced")
const fmtCost = r => !r.cost_unpriced ? fmtUsd(r.cost_usd)
  : r.cost_usd == null ? "unpriced" : fmtUsd(r.cost_usd) + " + unpriced";
function fmtDur(s){ if (s == null) return "–"; if (s < 60) return s.toFixed(1) + "s";
  if (s < 3600) return Math.floor(s/60) + "m" + String(Math.floor(s%60)).padStart(2, "0") + "s";
  return Math.floor(s/3600) + "h" + String(Math.floor(s%3600/60)).padStart(2, "0") + "m"; }
function fmtWhen(ns){ if (!ns) return "–"; const d = new Date(ns/1e6), p = n => String(n).padStart(2, "0");
  return d.getUTCFullYear() + "-" + p(d.getUTCMonth()+1) + "-" + p(d.getUTCDate()) + " " + p(d.getUTCHours()) + ":" + p(d.getUTCMinutes()) + ":" + p(d.getUTCSeconds()) + "Z"; }  // UTC, as the CLI prints it
function bump(key){ document.body.dataset[key] = String(Number(document.body.dataset[key] || 0) + 1); }
function diffFile(f){
  const counts = f.binary ? "binary" : "+" + f.lines_added + " −" + f.lines_removed;
  const sum = el("summary", {cls: "fh"}, el("span", {cls: "p", text: f.path}), el("span", {cls: "badge", text: f.status}), el("span", {text: counts}));
  const box = el("details", {cls: "diff", open: true}, sum);
  if (f.patch) { const pre = el("pre");
    for (const line of f.patch.split("\n")) { const c = /^(\+\+\+|---|@@)/.test(line) ? "dl-h" : line[0] === "+" ? "dl-a" : line[0] === "-" ? "dl-d" : "dl-c";
      pre.append(el("span", {cls: c, text: line || " "})); }
    box.append(pre);
  } else if (f.note) box.append(el("p", {cls: "note", text: f.note}));
  return box; }
"""

INDEX_JS = r"""
(function(){
const form = V$("#filters"), tbody = V$("#runs tbody"), COLS = 14;
const FIELDS = ["q","agent","model","task","status","tag","tests","scorer","min_tokens","min_cost","min_duration"];
let state = new URLSearchParams(location.search), last = null, timer = null;
const selected = new Set();
function fill(){ for (const k of FIELDS) { const i = form.elements[k]; if (i) i.value = state.get(k) || ""; }
  form.elements.group.checked = state.get("group") === "task"; }
function params(){ const p = new URLSearchParams();
  for (const k of FIELDS) { const v = (form.elements[k].value || "").trim(); if (v) p.set(k, v); }
  if (form.elements.group.checked) p.set("group", "task");
  for (const k of ["sort","reverse"]) if (state.get(k)) p.set(k, state.get(k));
  return p; }
function cells(tr, r){
  tr.textContent = ""; tr.dataset.id = r.id;
  const box = el("input", {type: "checkbox", "aria-label": "select " + r.id}); box.checked = selected.has(r.id);
  box.addEventListener("change", () => { box.checked ? selected.add(r.id) : selected.delete(r.id); V$("#compare").disabled = selected.size < 2; });
  const tests = r.tests_total == null ? "–" : r.tests_passed + "/" + r.tests_total;
  const status = el("span", {cls: "status s-" + String(r.status).replace(/[^a-z]/g, ""), text: r.status, title: r.reason || null});
  const tags = el("td"); for (const [k, v] of Object.entries(r.tags || {})) tags.append(el("span", {cls: "tag", text: k + "=" + v}));
  const td = (text, cls, title) => el("td", {cls, text, title});
  tr.append(el("td", {}, box), el("td", {}, el("a", {href: "/runs/" + encodeURIComponent(r.id), text: r.id.slice(0, 12), title: r.id})),
    td(r.agent), td(r.model), td(r.task_id, "task", r.task_id), el("td", {}, status), td(fmtInt(r.parts), "num"),
    td(tests, "num"), td(r.score == null ? "–" : (+r.score.toFixed(3)).toString(), "num"), td(fmtInt(r.tokens), "num"),
    td(fmtCost(r), "num"), td(fmtDur(r.duration_s), "num"), td(fmtWhen(r.started_at)), tags);
  return tr; }
function render(page){
  last = page; tbody.textContent = ""; let task = null;
  for (const r of page.rows) {
    if (state.get("group") === "task" && r.task_id !== task) { task = r.task_id; const g = page.groups[task] || {runs: 0, passing: 0};
      tbody.append(el("tr", {cls: "group"}, el("td", {colspan: COLS, text: (task || "(no task)") + " — " + g.runs + " runs, " + g.passing + " passing"}))); }
    tbody.append(cells(el("tr"), r)); }
  if (!page.rows.length) tbody.append(el("tr", {}, el("td", {colspan: COLS, cls: "mute", text: "no runs match"})));
  const end = page.offset + page.rows.length;
  V$("#count").textContent = fmtInt(page.matched) + " runs";
  V$("#pageof").textContent = page.rows.length ? (page.offset + 1) + "–" + end + " of " + fmtInt(page.matched) : "";
  V$("#prev").disabled = page.offset === 0; V$("#next").disabled = end >= page.matched;
  V$("#hits").textContent = page.search ? page.search.hits + " matching events for “" + page.search.q + "”" : "";
  const sort = state.get("sort") || "started";
  for (const th of document.querySelectorAll("th[data-sort]")) { th.classList.toggle("sorted", th.dataset.sort === sort);
    th.dataset.dir = th.dataset.sort === sort ? (state.get("reverse") ? "asc" : "desc") : ""; }
  V$("#compare").disabled = selected.size < 2; }
async function load(){
  const p = new URLSearchParams(state); if (!p.get("limit")) p.set("limit", "50");
  try { V$("#msg").textContent = ""; render(await api("/api/runs?" + p)); }
  catch (e) { V$("#msg").textContent = e.message; }
  history.replaceState(null, "", state.toString() ? "?" + state : location.pathname);
  document.body.dataset.ready = "1"; bump("loads"); }
form.addEventListener("submit", ev => { ev.preventDefault(); state = params(); load(); });
V$("#clear").addEventListener("click", () => { state = new URLSearchParams(); fill(); load(); });
V$("#compare").addEventListener("click", () => { location.href = "/compare?runs=" + [...selected].map(encodeURIComponent).join(","); });
for (const th of document.querySelectorAll("th[data-sort]")) th.addEventListener("click", () => {
  const key = th.dataset.sort, same = (state.get("sort") || "started") === key;
  state.set("sort", key); if (same && !state.get("reverse")) state.set("reverse", "1"); else state.delete("reverse");
  state.delete("offset"); load(); });
const step = d => { const lim = Number(state.get("limit") || 50), off = Math.max(0, Number(state.get("offset") || 0) + d*lim);
  off ? state.set("offset", off) : state.delete("offset"); load(); };
V$("#prev").addEventListener("click", () => step(-1)); V$("#next").addEventListener("click", () => step(1));
api("/api/facets").then(f => {
  for (const [id, list] of [["agents", f.agents], ["models", f.models], ["tasks", f.tasks]]) for (const v of list) V$("#" + id).append(el("option", {value: v}));
  for (const s of f.scorers) form.elements.scorer.append(el("option", {value: s, text: s}));
  form.elements.scorer.value = state.get("scorer") || "";
  if (!f.search) { form.elements.q.disabled = true; form.elements.q.placeholder = "search needs a newer agtrace"; }
}).catch(e => { V$("#msg").textContent = e.message; });
function live(){
  const es = new EventSource("/api/live");
  es.addEventListener("open", () => { V$("#live").textContent = "● live"; });
  es.addEventListener("error", () => { V$("#live").textContent = "○ reconnecting"; });
  es.addEventListener("run", ev => { const m = JSON.parse(ev.data), r = m.row;
    const tr = tbody.querySelector('tr[data-id="' + CSS.escape(r.id) + '"]');
    if (tr) { cells(tr, r); tr.classList.remove("flash"); void tr.offsetWidth; tr.classList.add("flash"); bump("updates"); }
    else if (m.new && !Number(state.get("offset") || 0)) { clearTimeout(timer); timer = setTimeout(load, 300); } }); }
fill(); load(); live();
})();
"""

FILES_JS = r"""
(function(){
const run = viewerData().run, tree = V$("#tree"), file = V$("#file"), input = V$("#fpart");
let files = [], part = null, shown = null;
function node(){ return {dirs: new Map(), files: []}; }
function build(list){ const root = node();
  for (const f of list) { const bits = f.path.split("/"); let n = root;
    for (const d of bits.slice(0, -1)) { if (!n.dirs.has(d)) n.dirs.set(d, node()); n = n.dirs.get(d); }
    n.files.push(f); }
  return root; }
function link(f, label){ const a = el("a", {text: label, title: f.path, "data-path": f.path, tabindex: 0});
  a.addEventListener("click", () => show(f.path)); return a; }
function draw(n, into, depth){
  for (const name of [...n.dirs.keys()].sort()) { const d = el("details", {open: depth < 1}, el("summary", {text: name + "/"}));
    draw(n.dirs.get(name), d, depth + 1); into.append(d); }
  for (const f of n.files.sort((a, b) => a.path < b.path ? -1 : 1)) into.append(link(f, f.path.split("/").pop())); }
function redraw(){ tree.textContent = ""; const q = V$("#ffilter").value.trim().toLowerCase();
  if (q) for (const f of files.filter(f => f.path.toLowerCase().includes(q))) tree.append(link(f, f.path));
  else draw(build(files), tree, 0);
  V$("#fcount").textContent = files.length + " files at part " + part; }
async function list(which){
  try { const r = await api("/api/runs/" + encodeURIComponent(run.id) + "/files?part=" + encodeURIComponent(which));
    if (r.reason) { tree.textContent = ""; tree.append(el("p", {cls: "mute", text: r.reason})); V$("#fcount").textContent = ""; }
    else { files = r.files; part = r.part; input.value = part; redraw(); if (shown) show(shown, true); } }
  catch (e) { tree.textContent = ""; tree.append(el("p", {cls: "err", text: e.message})); }
  bump("trees"); }
async function show(path, quiet){
  shown = path;
  for (const a of tree.querySelectorAll("a")) a.classList.toggle("on", a.dataset.path === path);
  try { const r = await api("/api/runs/" + encodeURIComponent(run.id) + "/file?part=" + part + "&path=" + encodeURIComponent(path));
    file.textContent = "";
    const what = r.binary ? "binary file, " + fmtInt(r.size) + " bytes: `agtrace cat --binary` writes it" : fmtInt(r.size) + " bytes" + (r.cut ? " (first 1 MiB shown; `agtrace cat` prints all)" : "");
    file.append(el("div", {cls: "fh"}, el("strong", {text: r.path}), " ", el("span", {cls: "mute", text: "after part " + r.part + " · " + what})));
    if (!r.binary) file.append(el("pre", {text: r.text}));
  } catch (e) { if (!quiet) { file.textContent = ""; file.append(el("p", {cls: "err", text: e.message})); } else file.textContent = ""; }
  bump("files"); }
input.max = run.parts;
input.addEventListener("change", () => list(input.value === "" ? "last" : input.value));
V$("#flast").addEventListener("click", () => list("last"));
V$("#ffilter").addEventListener("input", redraw);
list(new URLSearchParams(location.search).get("part") || "last");
})();
"""

COMPARE_JS = r"""
(function(){
const runs = viewerData().runs, ra = V$("#ra"), rb = V$("#rb");
for (const r of runs) for (const s of [ra, rb]) s.append(el("option", {value: r.id, text: r.id.slice(0, 10) + " " + r.agent + " " + r.model + " (" + r.parts + " parts)"}));
if (runs.length > 1) rb.value = runs[1].id;
const tasks = [...new Set(runs.map(r => r.task_id))];
V$("#tasknote").textContent = tasks.length > 1 ? "These runs are of " + tasks.length + " different tasks (" + tasks.join(", ") + "): their trees may share nothing."
  : "All runs are of task " + (tasks[0] || "(none)") + ". Part empty = the run's final tree, 0 = its base tree.";
async function diff(){
  const out = V$("#dout"), p = new URLSearchParams({a: ra.value, b: rb.value, pa: V$("#pa").value.trim(), pb: V$("#pb").value.trim()});
  out.textContent = ""; V$("#dstat").textContent = "…";
  try { const d = await api("/api/diff?" + p);
    if (d.reason) { V$("#dstat").textContent = d.reason; }
    else { V$("#dstat").textContent = d.files.length + " files differ, +" + d.lines_added + " −" + d.lines_removed +
      " (A at part " + d.part_a + " → B at part " + d.part_b + ")";
      if (!d.files.length) out.append(el("p", {cls: "note", text: "the two trees are identical"}));
      for (const f of d.files) out.append(diffFile(f)); }
  } catch (e) { V$("#dstat").textContent = ""; out.append(el("p", {cls: "err", text: e.message})); }
  bump("diffs"); }
V$("#dodiff").addEventListener("click", diff);
if (runs.length > 1) diff();
})();
"""
