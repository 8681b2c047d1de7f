from streams.audio.bitrate import BitrateMeter


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_steady_packets_give_their_bitrate():
    clock = Clock()
    meter = BitrateMeter(clock, window=2.0)
    for _ in range(200):  # 4 s of 240-byte packets every 20 ms: 96 kb/s
        clock.now += 0.02
        meter.add(240)
    assert abs(meter.bits_per_second() - 96_000) <= 1_000


def test_a_stream_that_stopped_reads_zero_after_the_window():
    clock = Clock()
    meter = BitrateMeter(clock, window=2.0)
    meter.add(1000)
    clock.now += 2.5
    assert meter.bits_per_second() == 0


def test_a_just_started_stream_is_measured_over_half_the_window_not_inflated():
    clock = Clock()
    meter = BitrateMeter(clock, window=2.0)
    meter.add(240)
    assert meter.bits_per_second() == 240 * 8 / 1.0  # over 1 s (half the window), not over the 0 s since it began
