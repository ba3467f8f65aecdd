"""The buffer alone: bounds that include records being sent, and bounded bookkeeping."""
from __future__ import annotations

import time

from cwlhandler.buffer import Buffer


def make(on_full="drop_oldest", max_records=10):
    return Buffer(max_records=max_records, max_bytes=10**9, on_full=on_full, batch_count=5,
                  batch_bytes=10**9, flush_interval=3600)


def item(i):
    return (i, f"m{i}", len(f"m{i}"), ("g", "s"))


def test_a_long_outage_with_drop_oldest_keeps_bookkeeping_bounded():
    buffer = make()
    for i in range(5):
        buffer.append(item(i))
    cut, taken = buffer.take(lambda: 1, idle=0)
    buffer.open_batches(cut, 1)  # as the flusher does: one batch, then it releases its hold
    buffer.settle(cut)
    assert [t[0] for t in taken] == [0, 1, 2, 3, 4]
    for i in range(5, 100_005):  # the batch stays in flight: an outage
        buffer.append(item(i))
    assert len(buffer) == 5  # 10 records of room, 5 of them held by the batch in flight
    assert buffer.dropped_full == 100_000 - 5
    assert buffer.settled == 0
    assert len(buffer._cuts) <= 2  # the cut in flight and one merged run of drops, not one per drop
    buffer.settle(cut)  # the batch is acknowledged at last
    assert buffer.settled == buffer.removed == 100_000


def test_flush_waits_for_records_taken_but_not_settled():
    buffer = make(on_full="drop_newest")
    for i in range(3):
        buffer.append(item(i))
    assert buffer.wait_settled(time.monotonic() + 0.01) is False
    cut, taken = buffer.take(lambda: 1, idle=0)
    buffer.settle(cut)  # the hold: no batches were opened, so the cut is done
    assert buffer.wait_settled(time.monotonic() + 0.01) is True


def test_records_that_fill_a_request_exactly_go_out_as_one_request():
    """998-byte messages: 1,024 of them (each 998 + 26 bytes) fill 1 MiB exactly; that request is full,
    not 'not yet'."""
    buffer = Buffer(max_records=100_000, max_bytes=64 * 2**20, on_full="drop_oldest", batch_count=10_000,
                    batch_bytes=2**20, flush_interval=3600)
    requests = []
    for i in range(2 * 1024 + 10):
        buffer.append((i, "x" * 998, 998, ("g", "s")))
        if len(buffer) == 1024:  # the moment size makes them due: take what is due, as the flusher does
            _cut, taken = buffer.take(lambda: 8, idle=0)
            requests.append(len(taken))
    assert requests == [1024, 1024]
    assert buffer.take(lambda: 8, idle=0) is False  # the last 10 wait for more, or for flush_interval


# -- cut_length: a pure function, checked like the planner -------------------------------------------------
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from cwlhandler.buffer import cut_length  # noqa: E402
from cwlhandler.planner import EVENT_OVERHEAD  # noqa: E402


def pack(sizes, count, nbytes):
    """Requests the planner's greedy packing makes of these sizes (with overhead)."""
    requests, n, used = 0, 0, 0
    for size in sizes:
        if requests == 0 or n == count or used + size > nbytes:
            requests, n, used = requests + 1, 0, 0
        n, used = n + 1, used + size
    return requests


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 200)), min_size=1, max_size=60),
       st.integers(1, 4), st.integers(1, 8), st.integers(EVENT_OVERHEAD + 200, 1200), st.booleans())
def test_a_cut_is_never_empty_fits_the_free_slots_and_keeps_a_millisecond_whole(spec, slots, count, nbytes, whole):
    items = []
    for step, size in spec:  # timestamps never decrease: emission order
        items.append(((items[-1][0] if items else 0) + step, "m", size, ("g", "s")))
    take, size = cut_length(items, slots, count, nbytes, whole)
    sizes = [i[2] + EVENT_OVERHEAD for i in items]
    assert 1 <= take <= len(items)
    assert size == sum(sizes[:take])
    if whole and take > 1:
        assert pack(sizes[:take], count, nbytes) <= slots
    if not whole:  # due by time, a flush or close: as much as the slots' records and bytes hold
        assert take <= slots * count and (take == 1 or size <= slots * nbytes)
        assert take == len(items) or take == slots * count or size + sizes[take] > slots * nbytes
    elif take < len(items) and items[0][0] != items[take - 1][0]:
        assert items[take - 1][0] != items[take][0]  # never splits a millisecond it could keep whole
