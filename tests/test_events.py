"""Event types: round trips (property tests), schema freshness, tags, golden log compatibility."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from agtrace.eventlog import EVENT_TYPES, KINDS, Record, Store, record_to_json
from agtrace.eventlog.codec import (
    decode_batch,
    encode_batch,
    event_from_json,
    events_from_json_lines,
)
from agtrace.eventlog.errors import InvalidEvent
from agtrace.eventlog.schema import generate

from .conftest import REPO, one_of_each

GOLDEN = Path(__file__).parent / "golden" / "log-v1"


def _strategy(tp) -> st.SearchStrategy:
    """A hypothesis strategy for a msgspec-typed value (covers the types events use)."""
    info = msgspec.inspect.type_info(tp)
    return _from_info(info)


def _from_info(info) -> st.SearchStrategy:
    mi = msgspec.inspect
    if isinstance(info, mi.StrType):
        return st.text(max_size=40)
    if isinstance(info, mi.IntType):
        return st.integers(min_value=-(2**62), max_value=2**62)
    if isinstance(info, mi.FloatType):
        return st.floats(allow_nan=False, allow_infinity=False)
    if isinstance(info, mi.BoolType):
        return st.booleans()
    if isinstance(info, mi.BytesType):
        return st.binary(max_size=40)
    if isinstance(info, mi.NoneType):
        return st.none()
    if isinstance(info, mi.ListType):
        return st.lists(_from_info(info.item_type), max_size=3)
    if isinstance(info, mi.DictType):
        return st.dictionaries(st.text(max_size=8), _from_info(info.value_type), max_size=3)
    if isinstance(info, mi.UnionType):
        return st.one_of([_from_info(t) for t in info.types])
    if isinstance(info, mi.LiteralType):
        return st.sampled_from(info.values)
    if isinstance(info, mi.AnyType):
        scalars = st.one_of(st.none(), st.booleans(), st.integers(-1000, 1000), st.text(max_size=10))
        return st.recursive(scalars, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3), max_leaves=6)
    if isinstance(info, mi.StructType):
        fields = {f.name: _from_info(f.type) for f in info.fields}
        return st.fixed_dictionaries(fields).map(lambda kw: info.cls(**kw))
    raise NotImplementedError(info)


any_event = st.one_of([_strategy(t) for t in EVENT_TYPES])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(any_event, st.integers(0, 2**62), st.none() | st.integers(1, 10**6)), min_size=1, max_size=8))
def test_every_event_type_round_trips_through_msgpack_batches(items):
    batch = [(ts, part, ev) for ev, ts, part in items]
    records = decode_batch(encode_batch(batch), 41)
    assert [(r.seq, r.ts, r.part, r.event) for r in records] == [
        (41 + i, ts, part, ev) for i, (ts, part, ev) in enumerate(batch)
    ]


@settings(max_examples=300, deadline=None)
@given(any_event, st.integers(0, 2**62), st.none() | st.integers(1, 10**6))
def test_every_event_type_round_trips_through_json_lines(event, ts, part):
    line = record_to_json(Record(7, ts, part, event))
    back, ts2, part2 = event_from_json(line)
    assert (back, ts2, part2) == (event, ts, part)


_ODD_LINES = st.sampled_from([
    b"", b"   ", b"\t", b"not json", b"{}", b'{"kind": "no_such_kind"}', b'{"kind": "line_logged"}',
    b'{"kind":"line_logged","stream":"stdout","text":"a"} {"kind":"line_logged","stream":"stdout","text":"b"}',
    b'{"kind":"line_logged","stream":"stdout","text":"a"},', b"[" * 80 + b"]" * 80, b'{"kind": "line_logged", "text": "\\ud800"}',
    b'{"ts": -1, "kind": "line_logged", "stream": "stdout", "text": "x"}', b"\xff\xfe",
])


def _reference(lines: list[bytes], first: int):
    """What event_from_json says line by line, up to the first bad line."""
    out = []
    for i, line in enumerate(lines):
        if not line or line.isspace():
            out.append(None)
            continue
        try:
            out.append(event_from_json(line, first + i))
        except InvalidEvent as exc:
            return out, str(exc)
    return out, None


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.tuples(any_event, st.integers(0, 2**62), st.none() | st.integers(1, 10**6)).map(
    lambda t: record_to_json(Record(1, t[1], t[2], t[0]))), _ODD_LINES), max_size=12), st.integers(1, 10**6))
def test_a_block_decodes_as_its_lines_do_one_by_one(lines, first):
    """agtrace append decodes a block in one loop (events_from_json_lines): the same events, the
    same blanks, and the same error at the same line as event_from_json line by line."""
    decoded, error = events_from_json_lines(lines, first)
    expected, message = _reference(lines, first)
    assert decoded == expected
    assert (None if error is None else str(error)) == message


def test_events_and_records_are_not_tracked_by_the_cycle_collector():
    """Events and records hold no reference cycles (they are decoded data), so they are
    ``gc=False`` Structs: a bulk append or a read of 100k events does not pay for collections
    that walk them (about 15% of `agtrace append`'s time)."""
    import gc

    for cls in EVENT_TYPES:
        assert cls.__struct_config__.gc is False, cls
    assert Record.__struct_config__.gc is False
    assert not gc.is_tracked(Record(1, 2, None, one_of_each()[0]))


def test_tags_are_explicit_snake_case_and_unique():
    tags = [t.__struct_config__.tag for t in EVENT_TYPES]
    assert len(set(tags)) == len(tags)
    for tag, cls in zip(tags, EVENT_TYPES, strict=True):
        assert tag == tag.lower() and " " not in tag and tag != cls.__name__
        assert cls.__struct_config__.frozen
        assert cls.__doc__ and cls.__doc__.strip()
    assert set(KINDS) == set(tags)


def test_every_field_is_documented():
    for cls in EVENT_TYPES:
        for name in cls.__struct_fields__:
            assert f"{name}:" in cls.__doc__, f"{cls.__name__}.{name} is not documented"


def test_checked_in_schema_is_fresh():
    checked_in = (REPO / "schemas" / "events.schema.json").read_bytes()
    assert checked_in == generate(), "schemas/ is stale: run python -m agtrace.eventlog.schema"


def test_unknown_kind_in_a_batch_is_kept_and_the_rest_decodes():
    enc = msgspec.msgpack.Encoder()
    good = one_of_each()[1]
    data = enc.encode([(1, None, good), (2, 3, {"kind": "from_the_future", "x": 1})])
    recs = decode_batch(data, 1)
    assert recs[0].event == good
    assert recs[1].kind == "from_the_future" and recs[1].event.body["x"] == 1
    assert recs[1].part == 3


def test_golden_log_v1_still_reads(tmp_path):
    """A log written by version 0.1 must keep reading identically in every later version."""
    shutil.copytree(GOLDEN / "store", tmp_path / "store")
    store = Store(tmp_path / "store")
    (run_id,) = store.run_ids()
    got = [record_to_json(r).decode() for r in store.read(run_id)]
    expected = (GOLDEN / "expected.jsonl").read_text().splitlines()
    assert got == expected
    assert store.verify().ok
    info = store.info(run_id)
    assert (info.status, info.parts, info.events) == ("completed", 1, len(expected))


def _unused(_: Any) -> None:  # keeps the Any import honest for type_info of Any fields
    return None


def test_a_line_that_is_not_utf8_keeps_its_bytes_in_json_and_an_older_reader_reads_its_text():
    """``line_logged.data`` (new) is base64 in JSON and round-trips; a reader from before it
    (its ``LineLogged`` had no ``data``) decodes the event and reads the replaced text."""
    from agtrace.eventlog import LineLogged

    class OlderLineLogged(msgspec.Struct, frozen=True, kw_only=True, tag_field="kind", tag="line_logged",
                          omit_defaults=True):
        stream: str
        text: str
        redactions: int = 0
        continued: bool = False

    new = LineLogged(stream="stdout", text="a\ufffdz", data=b"a\xffz")
    rec = Record(seq=4, ts=7, part=None, event=new)
    line = record_to_json(rec)
    assert msgspec.json.decode(line)["data"] == "Yf96"  # base64, as format.md says of bytes fields
    assert event_from_json(line)[0] == new
    (decoded,) = decode_batch(encode_batch([(7, None, new)]), 4)
    assert decoded.event == new and decoded.event.raw == b"a\xffz"
    for old in (msgspec.msgpack.decode(msgspec.msgpack.encode(new), type=OlderLineLogged),
                msgspec.json.decode(line, type=OlderLineLogged)):
        assert (old.stream, old.text) == ("stdout", "a\ufffdz")
    assert LineLogged(stream="stdout", text="ok").raw == b"ok"
