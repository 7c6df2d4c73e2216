"""Git's delta format (``eventlog/git/delta.py``): a delta made of any two byte strings turns
the first into the second (also as git applies it: a pack of such deltas reads back through git,
``test_shadow_size.py``); whatever bytes a delta holds, applying it gives bytes or ValueError."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from agtrace.eventlog.git.delta import apply_delta, make_delta

_TEXT = st.binary(max_size=400).map(lambda b: bytes(c % 8 for c in b).replace(b"\x05", b"\n").replace(b"\x06", b"\0"))


@st.composite
def versions(draw):
    """A base and an edited version of it (in-place changes, insertions, deletions), or two
    unrelated strings."""
    base = draw(_TEXT)
    target = bytearray(base)
    for at, cut, insert in draw(st.lists(st.tuples(st.integers(0), st.integers(0, 40), _TEXT), max_size=5)):
        at = at % (len(target) + 1)
        target[at:at + cut] = insert[:cut] if draw(st.booleans()) else insert
    return base, bytes(target) if draw(st.integers(0, 9)) else draw(_TEXT)


@settings(max_examples=200, deadline=None)
@given(pair=versions(), kind=st.sampled_from([b"tree", b"blob"]))
def test_a_delta_turns_its_base_into_its_target(pair, kind):
    base, target = pair
    delta = make_delta(base, target, kind)
    assert apply_delta(base, delta) == target
    if base == target and len(base) > 8:
        assert len(delta) < 16  # one copy


def test_a_tree_with_ids_changed_in_place_costs_the_ids():
    base = b"".join(b"100644 f%04d.py\0" % i + bytes([i % 256]) * 20 for i in range(700))
    target = bytearray(base)
    for i in (3, 300, 650):
        at = 27 * i + 12
        target[at:at + 20] = b"\xee" * 20
    delta = make_delta(base, bytes(target), b"tree")
    assert apply_delta(base, delta) == target and len(delta) < 3 * 40 + 40


@settings(max_examples=200, deadline=None)
@given(base=_TEXT, delta=st.binary(max_size=80))
def test_any_delta_bytes_give_bytes_or_a_value_error(base, delta):
    try:
        out = apply_delta(base, delta)
    except ValueError:
        return
    assert isinstance(out, bytes)


@settings(max_examples=200, deadline=None)
@given(pair=versions(), flips=st.lists(st.tuples(st.integers(0), st.integers(1, 255)), min_size=1, max_size=3))
def test_a_mutated_delta_gives_bytes_or_a_value_error(pair, flips):
    base, target = pair
    delta = bytearray(make_delta(base, target))
    for at, mask in flips:
        delta[at % len(delta)] ^= mask
    try:
        out = apply_delta(base, bytes(delta))
    except ValueError:
        return
    assert isinstance(out, bytes)
