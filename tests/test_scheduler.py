"""The sender's scheduling, without sockets: which work of a stream may go out in parallel."""
from __future__ import annotations

from typing import List

from hypothesis import given, settings
from hypothesis import strategies as st

from cwlhandler.sender import Batch, Chain


def make_chain(stamps: List[int], per_batch: int) -> Chain:
    events = [(t, "m", 1) for t in sorted(stamps)]
    return Chain([Batch(("g", "s"), events[i:i + per_batch], None) for i in range(0, len(events), per_batch)])


stamp_lists = st.lists(st.integers(0, 60), min_size=1, max_size=40)


@settings(max_examples=300, deadline=None)
@given(stamp_lists, stamp_lists, st.integers(1, 7), st.integers(1, 7))
def test_chains_share_a_timestamp_exactly_when_some_event_of_each_has_it(a, b, per_a, per_b):
    first, second = make_chain(a, per_a), make_chain(b, per_b)
    expected = bool(set(a) & set(b))
    assert first.shares_timestamp(second) is expected
    assert second.shares_timestamp(first) is expected
