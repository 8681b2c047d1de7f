"""RepeatLimit: what clients can provoke reaches the log a few times a minute, not a thousand."""
import logging

from rtccaster_site.logfilters import RepeatLimit


def record(message, *args, name="streams.consumers", level=logging.INFO):
    return logging.LogRecord(name, level, __file__, 1, message, args, None)


def test_at_most_n_of_a_kind_a_minute_then_the_next_minute_says_how_many_were_held_back():
    now = [0.0]
    limit = RepeatLimit(per_minute=3, clock=lambda: now[0])
    passed = [limit.filter(record("%s: no usable offer", f"10.0.0.{i}")) for i in range(10)]
    assert passed == [True] * 3 + [False] * 7
    assert limit.filter(record("another kind of line"))  # other kinds are counted apart
    now[0] = 61.0
    first = record("%s: no usable offer", "10.0.0.99")
    assert limit.filter(first)
    assert first.getMessage() == "[7 more like this held back in the last minute] 10.0.0.99: no usable offer"
