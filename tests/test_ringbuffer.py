import collections

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.audio.ringbuffer import NumpyRingBuffer


def ramp(start, n, channels=2):
    """Samples whose values are their own sequence numbers, so any mix-up shows."""
    values = np.arange(start, start + n, dtype=np.int64) % 30000
    return np.repeat(values[:, None], channels, axis=1).astype(np.int16)


def test_reads_exact_frame_sizes_in_order():
    ring = NumpyRingBuffer(4800, 2)
    ring.write(ramp(0, 1000))
    assert np.array_equal(ring.read(960), ramp(0, 960))
    assert ring.read(960) is None  # only 40 left: no partial frame
    ring.write(ramp(1000, 920))
    assert np.array_equal(ring.read(960), ramp(960, 960))
    assert ring.available == 0


def test_wraps_around_the_end_of_the_storage():
    ring = NumpyRingBuffer(1000, 2)
    for start in range(0, 10_000, 700):
        ring.write(ramp(start, 700))
        assert np.array_equal(ring.read(700), ramp(start, 700))
    assert ring.dropped == 0


def test_overwrites_the_oldest_and_counts_what_was_dropped():
    ring = NumpyRingBuffer(1000, 2)
    ring.write(ramp(0, 800))
    ring.write(ramp(800, 500))  # 300 too many: samples 0..299 are gone
    assert ring.dropped == 300
    assert ring.available == 1000
    assert np.array_equal(ring.read(1000), ramp(300, 1000))


def test_a_block_larger_than_the_ring_keeps_its_newest_samples():
    ring = NumpyRingBuffer(100, 1)
    ring.write(ramp(0, 250, channels=1))
    assert ring.dropped == 150
    assert np.array_equal(ring.read(100), ramp(150, 100, channels=1))


def test_rejects_blocks_of_the_wrong_channel_count_and_oversized_reads():
    ring = NumpyRingBuffer(100, 2)
    with pytest.raises(ValueError):
        ring.write(np.zeros((10, 1), dtype=np.int16))
    with pytest.raises(ValueError):
        ring.read(101)


operations = st.lists(
    st.one_of(st.tuples(st.just("write"), st.integers(0, 300)), st.tuples(st.just("read"), st.integers(1, 128))),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(capacity=st.integers(1, 128).map(lambda n: n * 2), ops=operations)
def test_behaves_like_a_bounded_deque(capacity, ops):
    ring = NumpyRingBuffer(capacity, 1)
    reference = collections.deque(maxlen=capacity)
    dropped = 0
    counter = 0
    for op, n in ops:
        if op == "write":
            block = ramp(counter, n, channels=1)
            counter += n
            dropped += max(0, len(reference) + n - capacity)
            reference.extend(block[:, 0].tolist())
            ring.write(block)
        elif n <= capacity:
            got = ring.read(n)
            if len(reference) < n:
                assert got is None
            else:
                assert got[:, 0].tolist() == [reference.popleft() for _ in range(n)]
        assert ring.available == len(reference)
        assert ring.dropped == dropped


def test_skip_drops_the_oldest_samples_and_counts_them():
    ring = NumpyRingBuffer(1000, 1)
    ring.write(ramp(0, 700, channels=1))
    assert ring.skip(500) == 500
    assert ring.dropped == 500
    assert np.array_equal(ring.read(200), ramp(500, 200, channels=1))
    assert ring.skip(200) == 0


def test_positions_count_every_sample_the_device_delivered_read_skipped_or_overwritten():
    ring = NumpyRingBuffer(1000, 1)
    ring.write(ramp(0, 300, channels=1), at=5.0)
    position, block, waiting, written_at = ring.read_with_position(100)
    assert (position, waiting, written_at) == (0, 200, 5.0)
    ring.skip(100)
    assert ring.read_with_position(100)[0] == 200
    ring.write(ramp(300, 1500, channels=1), at=6.0)  # overwrites all but the newest 1000
    position, block, waiting, written_at = ring.read_with_position(100)
    assert position == 800 and block[0, 0] == ramp(800, 1, channels=1)[0, 0]
    assert (waiting, written_at) == (900, 6.0)
