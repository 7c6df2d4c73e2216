"""The redaction screen of `agtrace append`: a block redacts exactly as its lines one by one.

``Redactor.redact_json_lines`` screens a block and redacts only the lines the screen names; it
must give what ``redact_json`` gives line by line (lines, counts, what is learned), for every
secret of tests/test_redact.py and tests/secret_corpus.py's shapes, for the ordinary texts that
must stay untouched, and for generated texts (hypothesis) around the screen's edges: labels,
separators, quotes, flags, non-ASCII bytes. Both ways of searching (the automaton and one
``bytes.find`` per pattern) must name the same lines, and never miss one that changes.
"""

from __future__ import annotations

import io
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agtrace.eventlog import Redactor, Store, append_json_lines
from agtrace.eventlog.screen import ASCII_LOWERING, BytesAhoCorasick, Screen, line_starts

from .test_redact import CASES, ORDINARY

ENV = {"DB_PASSWORD": "hunter2hunter2", "MY_TOKEN": 'quote"and\\slash-value'}


def _line(text: str, i: int = 0) -> bytes:
    return json.dumps({"kind": "message_added", "role": "assistant", "text": text, "part": i},
                      ensure_ascii=False).encode()


def _one_by_one(lines: list[bytes], env: dict) -> tuple[list[bytes], dict[int, int], int, dict]:
    redactor = Redactor.from_env(env)
    out, counts = [], {}
    for i, line in enumerate(lines):
        new, n = redactor.redact_json(line)
        out.append(new)
        if n:
            counts[i] = n
    return out, counts, redactor.count, dict(redactor._learned)


def _as_block(lines: list[bytes], env: dict) -> tuple[list[bytes], dict[int, int], int, dict]:
    redactor = Redactor.from_env(env)
    out, counts = redactor.redact_json_lines(lines)
    return out, counts, redactor.count, dict(redactor._learned)


def _assert_screen_is_a_superset(lines: list[bytes], env: dict) -> None:
    """Every line that redacting one by one changes is named, by both ways of searching."""
    expected, counts, _, _ = _one_by_one(lines, env)
    block, starts = b"\n".join(lines), line_starts(lines)
    values = [v.encode() for v in Redactor.from_env(env)._known]
    ways = [Screen(values, automaton=False)] + ([Screen(values)] if BytesAhoCorasick else [])
    named = [w.candidates(block, starts) for w in ways]
    assert all(n == named[0] for n in named)
    # learned values are followed by redact_json_lines itself; here only the first
    # redaction of each line can rely on the screen
    first_changed = {i for i in counts if i == min(counts)} if counts else set()
    assert first_changed <= named[0]


SECRET_TEXTS = [template.format(secret) for _, template, secret in CASES]
NOISE = ["All tests pass now; the token count is fine", "result = {'token': value, 'key': k}",
         "def f(passwd: str): return check(passwd)", "see key: value", "pass --help to see"]


def test_a_block_redacts_like_its_lines_one_by_one():
    lines = []
    for i, text in enumerate(SECRET_TEXTS + ORDINARY + NOISE):
        lines += [_line(text, i), _line(NOISE[i % len(NOISE)], i)]
    assert _as_block(lines, ENV) == _one_by_one(lines, ENV)
    assert _as_block(lines, {}) == _one_by_one(lines, {})
    out, counts = Redactor.from_env(ENV).redact_json_lines(lines)
    assert set(counts) >= {2 * i for i in range(len(SECRET_TEXTS))}


def test_labels_without_a_value_are_not_named():
    """Prose and code that say "token", "key" or "pass" are not handed over: only a label
    followed by a separator and something that may be a value is."""
    lines = [_line(t) for t in NOISE]
    for way in [Screen(automaton=False)] + ([Screen()] if BytesAhoCorasick else []):
        assert way.candidates(b"\n".join(lines), line_starts(lines)) == set()


def test_a_value_learned_in_a_block_is_redacted_further_on_in_it():
    lines = [_line("nothing here"), _line("connect with password=Zq8rT2vX9kL3"), _line("plain"),
             _line("later it echoes Zq8rT2vX9kL3 alone")]
    out, counts, _, learned = _as_block(lines, {})
    assert (out, counts) == _one_by_one(lines, {})[:2]
    assert b"Zq8rT2vX9kL3" not in out[3] and counts.get(3) == 1 and learned


def test_lines_with_escapes_a_cut_or_lowering_characters_are_named():
    texts = ["\u00e9t\u00e9 token", "cut here\u2026", "\u0130stanbul", "\u212aey: 12345678abc", "plain"]
    lines = [json.dumps({"kind": "message_added", "text": t}).encode() for t in texts[:1]]  # \\u escapes
    lines += [_line(t) for t in texts[1:]]
    named = Screen().candidates(b"\n".join(lines), line_starts(lines))
    assert named == {0, 1, 2, 3}
    assert _as_block(lines, {}) == _one_by_one(lines, {})


def test_a_block_that_is_not_utf8_is_handed_over_whole():
    lines = [b'{"kind":"message_added","text":"\xff"}', _line("plain")]
    assert Screen().candidates(b"\n".join(lines), line_starts(lines)) == {0, 1}
    assert _as_block(lines, {}) == _one_by_one(lines, {})


def test_ascii_lowering_lists_every_character_whose_lower_case_holds_ascii():
    found = [chr(c).encode() for c in range(128, 0x110000)
             if not 0xD800 <= c <= 0xDFFF and any(ord(x) < 128 for x in chr(c).lower())]
    assert sorted(found) == sorted(ASCII_LOWERING)


FRAGMENTS = st.sampled_from([
    "token", "Token", "key", "api_key", "API-KEY", "secret", "pass", "password", "PASSWD", "passphrase",
    "--", "-", "_", ":", "=", " ", "\t", '"', "'", "\\", ",", ";", "\n", "\u00e9", "\u2003", "\u212a",
    "\u0130", "\x1c", "hunter2hunter2", "Zq8rT2vX9kL3mN", "12345678", "value", "${X}", "[REDACTED:x]",
    "sk-", "ghp_", "AKIA", "eyJ", "://", "@", "bearer", "authorization", "login", "\u2026", "x" * 9,
])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(FRAGMENTS, max_size=12).map("".join), min_size=1, max_size=6))
def test_generated_lines_redact_alike_and_the_screen_misses_none(texts):
    lines = [_line(t, i) for i, t in enumerate(texts)]
    _assert_screen_is_a_superset(lines, ENV)
    assert _as_block(lines, ENV) == _one_by_one(lines, ENV)
    raw = [t.encode("utf-8", "surrogatepass") for t in texts if "\n" not in t]  # not JSON at all
    if raw:
        _assert_screen_is_a_superset(raw, ENV)
        assert _as_block(raw, ENV) == _one_by_one(raw, ENV)


def test_append_json_lines_keeps_line_numbers_across_blocks(tmp_path):
    store = Store(tmp_path / "s")
    writer = store.create_run()
    good = [_line(f"line {i}", 1) for i in range(50)]
    data = b"\n".join(good[:30] + [b"", b'{"kind": "message_added", "role": 5}'] + good[30:]) + b"\n"
    from agtrace.eventlog import InvalidEvent

    with pytest.raises(InvalidEvent) as caught:
        append_json_lines(writer, io.BytesIO(data), Redactor(), block_bytes=256)
    store.close_writer(writer)
    assert caught.value.line == 32 and "30 event(s) before line 32 are stored" in str(caught.value)
    assert [r.event.text for r in store.read(writer.run_id, 2)] == [f"line {i}" for i in range(30)]


def test_a_value_learned_in_one_block_is_redacted_in_the_next_screened_before_it(tmp_path):
    """append screens block n+1 on a helper thread while block n is redacted: a value learned
    from block n must still be found in block n+1, which was screened without it."""
    store = Store(tmp_path / "s")
    writer = store.create_run()
    lines = [_line("connect with password=Zq8rT2vX9kL3", 1), _line("next block: Zq8rT2vX9kL3", 1)]
    lines += [_line(f"plain {i}", 1) for i in range(20)]
    lines += [_line("later it echoes Zq8rT2vX9kL3 alone", 1), _line("and zq8rt2vx9kl3 lower-cased stays", 1)]
    block = max(len(line) for line in lines) + 1  # one line per block
    append_json_lines(writer, io.BytesIO(b"\n".join(lines) + b"\n"), Redactor(), block_bytes=block)
    store.close_writer(writer)
    texts = [r.event.text for r in store.read(writer.run_id, 2)]
    assert len(texts) == len(lines)
    assert not any("Zq8rT2vX9kL3" in t for t in texts), texts
    assert texts[-1] == "and zq8rt2vx9kl3 lower-cased stays"  # the screen looks case-blind; redaction does not


def test_an_error_on_the_reading_thread_reaches_the_caller(tmp_path):
    class Broken(io.RawIOBase):
        def readable(self):
            return True

        def readinto(self, b):
            raise OSError(5, "Input/output error")

    store = Store(tmp_path / "s")
    writer = store.create_run()
    with pytest.raises(OSError, match="Input/output error"):
        append_json_lines(writer, io.BufferedReader(Broken()), Redactor())
    store.close_writer(writer)


def _label_may_match_by_regex(lower: bytes, k: int, pos: int) -> bool:
    """screen._label_may_match as it was before its byte shortcuts (regexes only): the reference."""
    from agtrace.eventlog import screen

    k -= len(screen._TRIGGERS)
    if k < 0 or k >= len(screen._LABELS):
        return True
    label = screen._LABELS[k]
    word = label[:-1]
    if word == b"key" and not lower[max(0, pos - 24) : pos].rstrip(b"_-").endswith(screen._KEY_OWNERS):
        return False
    end = pos + len(word)
    separator = screen._SEPARATOR_AFTER.match(lower, end)
    if separator is not None:
        return screen._value_at(lower, separator.end() - 1)
    if label[-1:] != b" ":
        return False
    dash = lower.rfind(b"-", max(0, pos - 256), pos)
    return dash >= 0 and screen._WORD.fullmatch(lower, dash + 1, pos) is not None and screen._value_at(lower, end)


LOWER_FRAGMENTS = st.sampled_from([
    b"token", b"key", b"api", b"api_key", b"secret", b"pass", b"passwd", b"password", b"passphrase",
    b"-", b"--", b"_", b":", b"=", b" ", b"\t", b'"', b"'", b"\\", b",", b"\n", b"x", b"9", b"\xc3\xa9",
    b"\x80", b"\x1c", b"hunter2hunter2", b"zq8rt2vx9kl3mn", b"value", b"${x}", b"[", b"@", b"/",
])


@settings(max_examples=500, deadline=None)
@given(st.lists(LOWER_FRAGMENTS, max_size=16).map(b"".join))
def test_the_label_check_shortcuts_decide_as_the_regexes_do(lower):
    """Every hit of every pattern in a lowered text is kept or ruled out exactly as before the
    byte shortcuts (the byte after a gap character, the byte before a flag's label)."""
    from agtrace.eventlog.screen import LOWERED, _label_may_match

    for k, pattern in enumerate(LOWERED):
        pos = lower.find(pattern)
        while pos >= 0:
            assert _label_may_match(lower, k, pos) == _label_may_match_by_regex(lower, k, pos), (lower, pattern, pos)
            pos = lower.find(pattern, pos + 1)


class _Chunked(io.RawIOBase):
    """A source whose ``read1`` returns the data in the given chunk sizes (as a pipe does)."""

    def __init__(self, data: bytes, sizes: list[int]):
        self.data, self.sizes, self.at = data, sizes, 0

    def read1(self, n: int = -1) -> bytes:
        size = min(n, self.sizes.pop(0) if self.sizes else n)
        out = self.data[self.at : self.at + size]
        self.at += len(out)
        return out


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([b"a", b"bc", b"\n", b"\n\n", b"{}", b" "]), max_size=30).map(b"".join),
       st.integers(1, 12), st.lists(st.integers(1, 12), max_size=20))
def test_blocks_hold_every_line_once_in_order_numbered_from_one(data, block_bytes, sizes):
    """However the input arrives, the blocks' lines are its lines (a last line without a
    newline included), each block is its lines joined by newlines, and the numbers follow on."""
    from agtrace.eventlog.jsonl import _blocks

    _assert_blocks_are_the_lines(list(_blocks(_Chunked(data, sizes), block_bytes)), data)


def _assert_blocks_are_the_lines(blocks: list, data: bytes) -> None:
    """The blocks' lines are ``data``'s lines in order (a last one without a newline included),
    each block its lines joined by newlines, numbered on from 1, and the bytes the blocks say
    they cover (the progress `append` shows) add up to ``data``'s."""
    expected = data.split(b"\n")
    if expected[-1] == b"":
        expected.pop()
    assert [line for _, _, lines, _ in blocks for line in lines] == expected
    number = 1
    for line_no, block, lines, covered in blocks:
        assert line_no == number and type(block) is bytes and block == b"\n".join(lines)
        assert covered in (len(block), len(block) + 1)
        number += len(lines)
    assert sum(covered for *_, covered in blocks) == len(data)


def test_the_cycle_collector_runs_between_blocks_and_is_left_as_it_was(tmp_path):
    """The collector is paused per block only: it runs during a long append (cyclic garbage
    waits one block at most), and after the append (stored or refused) it is as the caller left it."""
    import gc

    from agtrace.eventlog import InvalidEvent

    store = Store(tmp_path / "s")
    writer = store.create_run()
    runs = []

    def count(phase, info):
        if phase == "start":
            runs.append(info["generation"])

    gc.callbacks.append(count)
    try:
        append_json_lines(writer, io.BytesIO(b"\n".join(_line(f"line {i}", 1) for i in range(3000))), Redactor(),
                          block_bytes=4096)
        assert runs and gc.isenabled()
        with pytest.raises(InvalidEvent):
            append_json_lines(writer, io.BytesIO(_line("x") + b"\n{}\n"), Redactor())
        assert gc.isenabled()
        gc.disable()
        try:
            append_json_lines(writer, io.BytesIO(_line("y")), Redactor())
            assert not gc.isenabled()
        finally:
            gc.enable()
    finally:
        gc.callbacks.remove(count)
        store.close_writer(writer)
    assert [r.event.text for r in store.read(writer.run_id, 2)][-2:] == ["x", "y"]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from([b"a", b"bc" * 300, b"\n", b"\n\n", b"{}", b" "]), max_size=40).map(b"".join),
       st.integers(1, 4096), st.lists(st.integers(1, 5000), min_size=1, max_size=10))
def test_blocks_of_a_real_pipe_hold_every_line_once_in_order(data, block_bytes, sizes):
    """Read from a real pipe while a thread writes into it in pieces (more reads join a piece
    while the pipe has data): the same lines, in order, numbered on, whatever the timing."""
    import os
    import threading

    from agtrace.eventlog.jsonl import _blocks

    r, w = os.pipe()

    def write():
        at, i = 0, 0
        with os.fdopen(w, "wb", buffering=0) as out:
            while at < len(data):
                n = sizes[i % len(sizes)]
                out.write(data[at : at + n])
                at, i = at + n, i + 1

    writer = threading.Thread(target=write)
    writer.start()
    with os.fdopen(r, "rb") as source:
        blocks = list(_blocks(source, block_bytes))
    writer.join()
    _assert_blocks_are_the_lines(blocks, data)
