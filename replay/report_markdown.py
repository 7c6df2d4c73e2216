"""The report's markdown: a small renderer, in the page's script, for messages and reasoning.

Agents write markdown (``**bold**`` titles, `` `code` ``, fenced blocks, lists); the report
shows it rendered, never as HTML of the agent's choosing. The renderer is safe by construction:
it HTML-escapes the whole text first and then only inserts a fixed set of tags (``p``, ``br``,
``strong``, ``em``, ``code``, ``pre``, ``h4``–``h6``, ``ul``/``ol``/``li``, ``blockquote``, ``a``)
around the escaped text. No attribute is ever built from the text except a link's ``href``,
and only for ``http:``/``https:`` targets (already escaped, so they cannot leave the
attribute). Raw HTML in a message stays visible as text; the page's CSP (``default-src
'none'``) stays as it is.

Supported: paragraphs (a blank line), line breaks kept as written, ATX headings (``#``…),
fenced code blocks (``` and ~~~), ``-``/``*``/``+`` and ``1.`` lists, ``>`` quotes, inline
code, ``**strong**``/``__strong__``, ``*em*``/``_em_`` and ``[text](http…)`` links. Anything
else is shown as the text it is.
"""

from __future__ import annotations

MARKDOWN_CSS = r"""
.md{margin:2px 0;overflow-wrap:anywhere}.md p{margin:2px 0 6px}.md p:last-child{margin-bottom:2px}
.md h4,.md h5,.md h6{margin:6px 0 2px;font-size:14px}.md ul,.md ol{margin:2px 0 6px;padding-left:22px}
.md code{background:var(--card);border:1px solid var(--line);border-radius:3px;padding:0 3px}
.md pre{background:var(--card);padding:6px;border-radius:5px;overflow:auto;max-height:400px}
.md pre code{border:0;padding:0;background:none}.md blockquote{margin:4px 0;padding-left:8px;border-left:3px solid var(--line);color:var(--mute)}
.ev.reasoning_added .md{color:var(--mute)}
"""

MARKDOWN_JS = r"""
function mdInline(s){  /* s is escaped text: code spans are set aside, emphasis and links done around them */
  const code = [];
  s = s.replace(/\u0000/g, "").replace(/(`+)([^`]+?)\1(?!`)/g, (_, q, c) => `\u0000${code.push(`<code>${c}</code>`)-1}\u0000`);
  s = s.replace(/\[([^\]\n]+)\]\((https?:\/\/[^\s()\u0000]+)\)/g, '<a href="$2" rel="noopener noreferrer">$1</a>')
    .replace(/\*\*(?=\S)([^\n]*?\S)\*\*/g, "<strong>$1</strong>")
    .replace(/(^|[^\w])__(?=\S)([^\n]*?\S)__(?!\w)/g, "$1<strong>$2</strong>")
    .replace(/(^|[^\w*])\*(?=\S)([^*\n]*?\S)\*(?![\w*])/g, "$1<em>$2</em>")
    .replace(/(^|[^\w])_(?=\S)([^_\n]*?\S)_(?!\w)/g, "$1<em>$2</em>");
  return s.replace(/\u0000(\d+)\u0000/g, (_, i) => code[+i]);
}
function md(text){
  const lines = esc(text).split("\n"), out = [];
  let para = [], list = null, quote = [];
  const flushPara = () => { if (para.length) out.push(`<p>${para.map(mdInline).join("<br>")}</p>`); para = []; };
  const flushList = () => { if (list) out.push(`<${list.tag}>${list.items.map(i => `<li>${mdInline(i)}</li>`).join("")}</${list.tag}>`); list = null; };
  const flushQuote = () => { if (quote.length) out.push(`<blockquote>${quote.map(mdInline).join("<br>")}</blockquote>`); quote = []; };
  const flush = () => { flushPara(); flushList(); flushQuote(); };
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i], fence = /^\s*(`{3,}|~{3,})/.exec(line);
    if (fence) { flush(); const body = [];
      for (i++; i < lines.length && !lines[i].trim().startsWith(fence[1]); i++) body.push(lines[i]);
      out.push(`<pre><code>${body.join("\n")}</code></pre>`); continue; }
    let m;
    if (!line.trim()) { flush(); continue; }
    if ((m = /^(#{1,6})\s+(.*?)\s*#*\s*$/.exec(line))) { flush(); const h = Math.min(6, 3 + m[1].length);
      out.push(`<h${h}>${mdInline(m[2])}</h${h}>`); continue; }
    if ((m = /^\s*([-*+]|\d{1,9}[.)])\s+(.*)$/.exec(line))) { flushPara(); flushQuote();
      const tag = /\d/.test(m[1]) ? "ol" : "ul"; if (list && list.tag !== tag) flushList();
      (list = list || {tag, items: []}).items.push(m[2]); continue; }
    if ((m = /^\s*&gt;\s?(.*)$/.exec(line))) { flushPara(); flushList(); quote.push(m[1]); continue; }
    if (list && /^\s{2,}\S/.test(line)) { list.items[list.items.length-1] += " " + line.trim(); continue; }
    flushList(); flushQuote(); para.push(line);
  }
  flush();
  return `<div class="md">${out.join("")}</div>`;
}
"""
