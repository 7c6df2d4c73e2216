"""Secrets never reach the store: they are replaced by ``[REDACTED:<kind>]`` before anything is kept.

One :class:`Redactor` serves every way into the store: a capture (``agtrace run``, the
``Recorder``), ``agtrace new``/``append``/``close``, and every importer (through the import
framework). It knows three sorts of secret:

- **Known values**: the values of environment variables with secret-looking names
  (:func:`is_secret_name`: ``KEY``, ``TOKEN``, ``SECRET``, ``PASSW``…), at least
  :data:`MIN_VALUE_LEN` characters long so that ``KEY=1`` does not redact every ``1``. Kind
  ``env:<NAME>``. They are redacted wherever they reappear: output, argv, task, titles, files
  printed with ``cat``.
- **Shapes** (``secret.py``: :data:`SHAPES`): PEM private key blocks (BEGIN line, body and END, also inside a
  JSON string with ``\\n`` escapes), JWTs, passwords in URLs (``postgres://u:pw@h``), provider API
  keys and tokens, AWS key ids and labelled AWS secret keys, bearer and basic credentials,
  ``.netrc`` passwords, and values labelled as secrets (``password=…``, ``"client_secret": "…"``,
  ``_authToken=…``; :data:`LABELLED_KIND`, found at the separators after a label rather than by
  a regex over the whole text). For a labelled secret only the value is replaced.
- **Learned values**: every secret a shape found (of :data:`MIN_VALUE_LEN` characters or more) is
  remembered by this redactor and redacted like a known value from then on, so a password seen
  once as ``password=…`` is also redacted when it later appears alone; and a text cut with ``…``
  (a part title) whose end is the start of a known or learned value has that end redacted too.

Contract: known and learned values are replaced first (longest first), then each shape in
:data:`SHAPES` order; a placeholder never matches a later shape, so each secret is replaced and
counted once, and redacting a redacted text again changes nothing. Ordinary text (hex digests,
git SHAs, UUIDs, base64 of ordinary data, token counts, prose) is left alone. Text with nothing
secret-looking costs one lower-casing, one automaton pass for the known values (and the
chunks of their base64 forms, :mod:`~agtrace.eventlog.wrapped`) and one substring check per
trigger and learned value. ``count`` is the number of secrets replaced so far, over every
call. Not thread-safe.
"""

from __future__ import annotations

import heapq
import json
import re
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import msgspec

from . import screen
from .events import Event, LineLogged, RawRecorded
from .known import known_values
from .secret import (
    BARE_VALUE,
    COMPILED,
    LABEL_STEMS,
    LABELLED_KIND,
    MAX_LEARNED,
    MIN_TAIL,
    MIN_VALUE_LEN,
    PEM_BEGIN,
    PEM_END,
    PEM_LINE,
    QUOTED_VALUE,
    TRIGGERS,
    is_secret_name,
    label_separators,
)


class Screened(NamedTuple):
    """What :meth:`Redactor.screen_json_lines` found in a block of JSON lines: the block, the
    offset of each line, the values it looked for and the lines that may hold a secret."""

    block: bytes
    starts: list[int]
    values: frozenset[str]
    candidates: set[int]


class Redactor:
    """Replaces secrets with ``[REDACTED:<kind>]`` and counts them (see the module docstring)."""

    def __init__(self, secrets: Mapping[str, str] | None = None) -> None:
        """Redact :data:`SHAPES` and the given known values (``name -> value``).

        Values shorter than :data:`MIN_VALUE_LEN` are ignored; when two names share a value the
        first name is reported.
        """
        self.count = 0
        # the values, their JSON-escaped and base64 forms, and the chunks of those (base64
        # wrapped over lines or cut short), built once per process for the same secrets
        self._kv = known_values(tuple((secrets or {}).items()))
        self._known = self._kv.placeholders
        self._learned: dict[str, str] = {}
        self._values: list[tuple[str, str]] = []
        self._refresh()
        self._pem_open: dict[str, bool] = {}
        self._b64_open: dict[str, list[tuple[str, int, str]]] = {}
        """Per stream, the base64 forms its last line may end in the middle of (``redact_line``)."""
        self._open_forms: list[tuple[str, int, str]] = []
        self._screen_cache: tuple[tuple[str, ...], screen.Screen] | None = None
        """The screen of the learned values (the known ones have theirs in ``_kv``)."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Redactor:
        """A redactor for the values of ``environ``'s secret-named variables."""
        return cls({name: value for name, value in environ.items() if is_secret_name(name)})

    def _refresh(self) -> None:
        values = {**self._learned, **self._known}
        self._values = sorted(values.items(), key=lambda kv: len(kv[0]), reverse=True)

    def _learn(self, kind: str) -> Callable[[re.Match[str]], str]:
        placeholder = f"[REDACTED:{kind}]"

        def replace(match: re.Match[str]) -> str:
            has_v = "v" in match.re.groupindex
            secret = match.group("v") if has_v else match.group()
            if (len(secret) >= MIN_VALUE_LEN and kind != "private_key" and secret not in self._known
                    and secret not in self._learned and len(self._learned) < MAX_LEARNED):
                self._learned[secret] = placeholder
                self._refresh()
            if not has_v:
                return placeholder
            start, end = match.span("v")
            offset = match.start()
            return match.string[offset:start] + placeholder + match.string[end : match.end()]

        return replace

    def redact(self, text: str) -> tuple[str, int]:
        """Return ``text`` with its secrets replaced and how many were replaced.

        A PEM ``BEGIN … PRIVATE KEY`` marker without its END in the same text is redacted with
        the key material that follows it (base64 lines, armour headers).
        """
        if not text:
            return text, 0
        total = 0
        values, pieces = self._kv.held(text)  # one pass for the known values and chunks
        if pieces:  # base64 forms first, whole or in pieces (one form may hold another's start)
            # (and the forms the text may end in the middle of, for redact_line)
            text, total, self._open_forms = self._kv.wrapped.redact_open(text)
        if self._learned:  # a few, looked for one by one; every value longest first
            values = sorted([*values, *((v, p) for v, p in self._learned.items() if v in text)],
                            key=lambda vp: len(vp[0]), reverse=True)
        for value, placeholder in values:
            if value in text:
                total += text.count(value)
                text = text.replace(value, placeholder)
        lower = text.lower()
        hits = None
        for trigger, shapes in TRIGGERS:
            if trigger in lower:
                hits = shapes if hits is None else hits + shapes
        changed = False
        if hits is not None:
            for index in sorted(set(hits)):
                kind, regex = COMPILED[index]
                text, n = regex.subn(self._learn(kind), text)
                total += n
                changed = changed or n > 0
        if any(stem in lower for stem in LABEL_STEMS):
            text, n = self._labelled_values(text, text.lower() if changed else lower)
            total += n
        if text.endswith("…"):
            text, n = self._cut_tail(text)
            total += n
        self.count += total
        return text, total

    def _labelled_values(self, text: str, lower: str) -> tuple[str, int]:
        """Redact the values of labelled secrets (:data:`LABELLED_KIND`); ``lower`` is ``text``
        lower-cased."""
        seps = label_separators(lower)
        if not seps:
            return text, 0
        learn = self._learn(LABELLED_KIND)
        out, done, n = [], 0, 0
        for pos in seps:
            if pos < done:
                continue
            match = QUOTED_VALUE.match(text, pos) or BARE_VALUE.match(text, pos)
            if match is None:
                continue
            replaced = learn(match)
            out.append(text[done : match.start()] + replaced)
            done = match.end()
            n += 1
        return ("".join(out) + text[done:], n) if n else (text, 0)

    def _flag_values(self, items: list) -> None:
        """In an argv (``["--password", "VALUE"]``), the value after a secret-named flag."""
        for k in range(len(items) - 1):
            flag, value = items[k], items[k + 1]
            if (isinstance(flag, str) and isinstance(value, str) and flag.startswith("-") and "=" not in flag
                    and len(value) >= MIN_VALUE_LEN and not value.startswith(("-", "[REDACTED"))
                    and label_separators(flag.lower() + " ")):
                kind = f"[REDACTED:{LABELLED_KIND}]"
                if value not in self._known and len(self._learned) < MAX_LEARNED:
                    self._learned.setdefault(value, kind)
                    self._refresh()
                items[k + 1] = kind
                self.count += 1

    def _cut_tail(self, text: str) -> tuple[str, int]:
        """A text cut with ``…`` whose end is the start of a known or learned value."""
        body = text[:-1]
        for value, placeholder in self._values:
            for k in range(min(len(value) - 1, len(body)), MIN_TAIL - 1, -1):
                if body.endswith(value[:k]):
                    return body[:-k] + placeholder + "…", 1
        return text, 0

    def redact_line(self, line: str, stream: str = "") -> tuple[str, int]:
        """Like :meth:`redact`, for consecutive lines of one stream (PEM blocks span lines).

        After a line with an unterminated PEM private key marker, following lines of ``stream``
        made only of base64 (or ``Header: value`` lines) become ``[REDACTED:private_key]`` up to
        and including the END marker, without adding to the count (the block was counted once
        at BEGIN). Any other line ends that state and is redacted normally.
        """
        if self._pem_open.get(stream):
            end = PEM_END.search(line)
            if end:
                self._pem_open[stream] = False
                rest, n = self.redact(line[end.end() :])
                return "[REDACTED:private_key]" + rest, n
            if PEM_LINE.fullmatch(line):
                return "[REDACTED:private_key]", 0
            self._pem_open[stream] = False
        lead = ""
        if stream in self._b64_open:  # the last line ended in the middle of a base64 form
            went_on = [(_common(line, form, at), form, at, placeholder)
                       for form, at, placeholder in self._b64_open.pop(stream)]
            m, _, _, placeholder = max(went_on)
            if m:  # its next piece, however short: the same redaction
                lead, line = placeholder, line[m:]
                if not line:  # the whole line: every form it went on with may go on
                    going = [(form, at + m, placeholder) for k, form, at, placeholder in went_on
                             if k == m and at + m < len(form)]
                    if going:
                        self._b64_open[stream] = going
                    return lead, 0
        self._open_forms = []
        result, n = self.redact(line)
        if self._open_forms:
            self._b64_open[stream] = self._open_forms
        begin = PEM_BEGIN.search(line) if n else None
        if begin and not PEM_END.search(line, begin.end()):
            self._pem_open[stream] = True
        return lead + result, n

    def redact_bytes(self, data: bytes) -> tuple[bytes, int]:
        """:meth:`redact` of bytes that need not be UTF-8; bytes outside secrets are kept exactly."""
        text = data.decode("utf-8", "surrogateescape")
        result, n = self.redact(text)
        return (result.encode("utf-8", "surrogateescape"), n) if n else (data, 0)

    def redact_obj(self, obj: Any) -> Any:
        """A copy of ``obj`` (nested dicts, lists, tuples, Structs, strings, bytes) with every
        string redacted, dict keys included; other values are returned as they are. Adds the
        number of redactions to ``count``."""
        if isinstance(obj, str):
            return self.redact(obj)[0]
        if isinstance(obj, dict):
            out = {}
            for k, v in obj.items():
                if type(k) is str and type(v) is str and v and any(stem in k.lower() for stem in LABEL_STEMS):
                    # a key that labels its value, as in JSON text: {"password": "…"} is redacted in a
                    # line `append` reads, so it is here (a tag, a config, tool arguments)
                    text, n = self.redact(json.dumps({k: v}, ensure_ascii=False))
                    if n:
                        out.update(json.loads(text))
                        continue
                out[self.redact_obj(k)] = self.redact_obj(v)
            return out
        if isinstance(obj, list | tuple):
            out = [self.redact_obj(v) for v in obj]
            self._flag_values(out)
            return type(obj)(out)
        if isinstance(obj, bytes):
            return self.redact_bytes(obj)[0]
        if isinstance(obj, msgspec.Struct):
            changes = {}
            for name in obj.__struct_fields__:
                value = getattr(obj, name)
                if isinstance(value, str | bytes | list | dict | tuple | msgspec.Struct) and value:
                    before = self.count
                    new = self.redact_obj(value)
                    if self.count != before:
                        changes[name] = new
            return msgspec.structs.replace(obj, **changes) if changes else obj
        return obj

    def redact_json(self, line: bytes) -> tuple[bytes, int]:
        """One event as a JSON text (``agtrace append``'s input), redacted before it is decoded:
        one pass over the line rather than one per field (known values are also looked for in
        their JSON escaping). A line with ``\\u`` escapes or a ``…`` cut, which may hide a secret
        only its decoded strings show, is also redacted string by string (and re-encoded). A
        line that is not JSON is returned redacted as text, for the decoder to refuse."""
        text = line.decode("utf-8", "surrogateescape")
        redacted, n = self.redact(text)
        if "\\u" in redacted or "…" in redacted:
            try:
                obj = json.loads(redacted)
            except (ValueError, RecursionError):  # the decoder refuses it, with the line number
                obj = None
            if obj is not None:
                before = self.count
                obj = self.redact_obj(obj)
                if self.count != before:
                    n += self.count - before
                    redacted = json.dumps(obj, ensure_ascii=False)
        return (redacted.encode("utf-8", "surrogateescape"), n) if n else (line, 0)

    def redact_json_lines(self, lines: list[bytes], screened: Screened | None = None) -> tuple[list[bytes], dict[int, int]]:
        """:meth:`redact_json` of each of ``lines`` (JSON texts without their newline), in
        order, as one block: the block is screened first (:mod:`~agtrace.eventlog.screen`) and
        only the lines that may hold a secret are redacted one by one, so a clean block costs a
        few passes in C. Returns the lines (the same objects where nothing changed) and the
        number of redactions of each line that had any. The result, the ``count`` and what is
        learned are those of calling :meth:`redact_json` line by line.

        ``screened`` is what :meth:`screen_json_lines` found in these lines, maybe on another
        thread and before values were learned from earlier lines: the values it did not look
        for are looked for here."""
        if not lines:
            return lines, {}
        if screened is None:
            screened = self.screen_json_lines(lines)
        block, starts = screened.block, screened.starts
        todo = sorted(screened.candidates)
        newer = [v for v in self._values if v[0] not in screened.values]
        if newer:  # learned since the block was screened
            fresh = screen.Screen(_encoded([v for v, _ in newer]), automaton=False)
            todo = sorted({*todo, *fresh.candidates(block, starts, values_only=True)})
        out, counts, done = list(lines), {}, set()
        while todo:
            i = heapq.heappop(todo)
            if i in done:
                continue
            done.add(i)
            learned = len(self._learned)
            out[i], n = self.redact_json(lines[i])
            if n:
                counts[i] = n
            if len(self._learned) != learned and i + 1 < len(lines):  # redact them further on too
                fresh = screen.Screen(_encoded(list(self._learned)[learned:]), automaton=False)
                for j in fresh.candidates(block, starts, since=starts[i + 1], values_only=True):
                    heapq.heappush(todo, j)
        return out, counts

    def screen_json_lines(self, lines: list[bytes], block: bytes | None = None) -> Screened:
        """Which of ``lines`` (``block``: them joined by newlines, when the caller has it) may
        hold a secret given the values known now; safe to call on another thread than the one
        redacting (it reads the values once and changes nothing)."""
        values = self._values
        if block is None:
            block = b"\n".join(lines)
        starts = screen.line_starts(lines)
        key = tuple(v for v, _ in values)
        learned = tuple(v for v in key if v not in self._known)
        lower = block.lower() if learned else None  # one lower-casing for both screens
        found = self._kv.screen().candidates(block, starts, lower=lower)
        if learned:
            found |= self._learned_screen(learned).candidates(block, starts, values_only=True, lower=lower)
        return Screened(block, starts, frozenset(key), found)

    def _learned_screen(self, learned: tuple[str, ...]) -> screen.Screen:
        """The screen of the learned values (kept until they change; a race only builds it twice)."""
        cached = self._screen_cache
        if cached is None or cached[0] != learned:
            cached = self._screen_cache = (learned, screen.Screen(_encoded(learned), automaton=False))
        return cached[1]

    def redact_event(self, event: Event) -> tuple[Event, int]:
        """``event`` with secrets replaced in every text, nested value and bytes field, and how
        many were replaced. A ``raw_recorded`` or ``line_logged`` event that had secrets records
        how many in its ``redactions`` field (added to what an earlier redaction of its line
        recorded), so a raw record is kept verbatim except for its secrets, and says so."""
        before = self.count
        redacted = self.redact_obj(event)
        n = self.count - before
        if n and isinstance(redacted, RawRecorded | LineLogged):
            redacted = msgspec.structs.replace(redacted, redactions=redacted.redactions + n)
        return redacted, n


def _common(line: str, form: str, at: int) -> int:
    """How many characters ``line`` starts with of ``form`` from ``at`` on."""
    m = 0
    while m < len(line) and at + m < len(form) and line[m] == form[at + m]:
        m += 1
    return m


def _encoded(values) -> list[bytes]:
    return [v.encode("utf-8", "surrogateescape") for v in values]
