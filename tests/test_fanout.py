"""The hub's send loop per listener (streams/webrtc/fanout.py): RTP headers, marker, sequence numbers,
timestamps across a move to another hub, drops. The path it sends on is recorded here; the
real one, between two aiortc peers, is in tests/test_rtcinternals.py."""
from aiortc.rtp import RtpPacket

from streams.webrtc.fanout import EncodedPacket, ListenerSender, continuing_offset, rtp_header


class RecordedPath:
    ssrc = 0x11223344
    payload_type = 111

    def __init__(self, accepts=True):
        self.packets = []
        self.accepts = accepts
        self.reports = []

    def send(self, packet):
        if self.accepts:
            self.packets.append(RtpPacket.parse(packet))
        return self.accepts

    def report_sent(self, timestamp, payload_bytes):
        self.reports.append((timestamp, payload_bytes))


class Hub:
    def __init__(self, frame_samples=960):
        self.frame_samples = frame_samples
        self.sinks = []

    def attach(self, sink):
        self.sinks.append(sink)
        return sink

    def unsubscribe(self, sink):
        if sink in self.sinks:
            self.sinks.remove(sink)

    def replace(self, old, new):
        self.sinks[self.sinks.index(old)] = new

    def push(self, packet):
        for sink in list(self.sinks):
            sink.push(packet)


def connected_sender(hub, path=None):
    sender = hub.attach(ListenerSender(hub))
    sender.connect(path or RecordedPath())
    return sender


def test_the_header_is_what_an_independent_rtp_parser_reads():
    packet = RtpPacket.parse(rtp_header(111, True, 65535, 2**32 - 1, 0xDEADBEEF) + b"opus")
    assert (packet.version, packet.payload_type, packet.marker) == (2, 111, 1)
    assert (packet.sequence_number, packet.timestamp, packet.ssrc) == (65535, 2**32 - 1, 0xDEADBEEF)
    assert packet.extensions.mid is None and packet.payload == b"opus"


def test_nothing_is_sent_before_the_connection_is_up_and_then_from_the_newest_packet():
    hub = Hub()
    sender = hub.attach(ListenerSender(hub))
    for pts in range(0, 960 * 10, 960):
        hub.push(EncodedPacket(b"x", pts))
    path = RecordedPath()
    sender.connect(path)
    hub.push(EncodedPacket(b"y", 960 * 10))
    assert [p.payload for p in path.packets] == [b"y"]
    assert path.packets[0].marker == 1  # the listener's first packet starts its talkspurt


def test_sequence_numbers_count_up_and_timestamps_follow_the_hub_from_a_random_offset():
    hub = Hub()
    path = RecordedPath()
    connected_sender(hub, path)
    for pts in (0, 960, 1920, 4800):  # a DTX gap: pts jumps, the hub marks the talkspurt
        hub.push(EncodedPacket(b"p", pts, marker=pts == 4800))
    sequences = [p.sequence_number for p in path.packets]
    assert [(s - sequences[0]) % 65536 for s in sequences] == [0, 1, 2, 3]
    timestamps = [p.timestamp for p in path.packets]
    assert [(t - timestamps[0]) % 2**32 for t in timestamps] == [0, 960, 1920, 4800]
    assert [p.marker for p in path.packets] == [1, 0, 0, 1]
    assert [r[0] for r in path.reports] == timestamps


def test_listeners_of_one_hub_get_their_own_ssrc_offsets_and_the_same_payload_object():
    hub = Hub()
    first, second = RecordedPath(), RecordedPath()
    second.ssrc = 0x55667788
    connected_sender(hub, first)
    connected_sender(hub, second)
    hub.push(EncodedPacket(b"same", 0))
    assert first.packets[0].payload == second.packets[0].payload == b"same"
    assert first.packets[0].ssrc != second.packets[0].ssrc


def test_a_handover_waits_for_the_new_hubs_first_packet_and_keeps_one_rtp_clock():
    old, new = Hub(), Hub(frame_samples=960)
    path = RecordedPath()
    sender = connected_sender(old, path)
    old.push(EncodedPacket(b"old", 960 * 50))
    successor = new.attach(ListenerSender(new))
    sender.handover(successor)
    old.push(EncodedPacket(b"old", 960 * 51))  # the new hub has nothing yet: the old one plays on
    new.push(EncodedPacket(b"new", 123_456))    # a clock of its own
    old.push(EncodedPacket(b"old", 960 * 52))   # no longer heard
    new.push(EncodedPacket(b"new", 123_456 + 960))
    assert [p.payload for p in path.packets] == [b"old", b"old", b"new", b"new"]
    timestamps = [p.timestamp for p in path.packets]
    assert [(b - a) % 2**32 for a, b in zip(timestamps, timestamps[1:])] == [960, 960, 960]
    sequences = [p.sequence_number for p in path.packets]
    assert [(b - a) % 65536 for a, b in zip(sequences, sequences[1:])] == [1, 1, 1]
    assert [p.marker for p in path.packets] == [1, 0, 0, 0]
    assert old.sinks == [] and new.sinks == [successor]


def test_a_handover_between_20_and_10_ms_frames_follows_the_last_packet_by_its_own_length():
    twenty, ten = Hub(frame_samples=960), Hub(frame_samples=480)
    path = RecordedPath()
    sender = connected_sender(twenty, path)
    twenty.push(EncodedPacket(b"20", 960 * 50))
    to_ten = ten.attach(ListenerSender(ten))
    sender.handover(to_ten)
    ten.push(EncodedPacket(b"10", 7_000))
    ten.push(EncodedPacket(b"10", 7_480))
    back = twenty.attach(ListenerSender(twenty))
    to_ten.handover(back)
    twenty.push(EncodedPacket(b"20", 123_456))
    twenty.push(EncodedPacket(b"20", 123_456 + 960))
    timestamps = [p.timestamp for p in path.packets]
    assert [p.payload for p in path.packets] == [b"20", b"10", b"10", b"20", b"20"]
    assert [(b - a) % 2**32 for a, b in zip(timestamps, timestamps[1:])] == [960, 480, 480, 960]
    assert [p.marker for p in path.packets] == [1, 0, 0, 0, 0]


def test_a_handover_before_the_connection_is_up_sends_from_the_successor_once_connected():
    old, new = Hub(), Hub()
    sender = old.attach(ListenerSender(old))
    successor = new.attach(ListenerSender(new))
    sender.handover(successor)
    new.push(EncodedPacket(b"new", 0))
    path = RecordedPath()
    successor.connect(path)
    new.push(EncodedPacket(b"new", 960))
    assert [p.payload for p in path.packets] == [b"new"] and old.sinks == []


def test_a_listener_that_leaves_mid_handover_leaves_both_hubs():
    old, new = Hub(), Hub()
    sender = connected_sender(old)
    sender.handover(new.attach(ListenerSender(new)))
    sender.stop()
    assert old.sinks == [] and new.sinks == []


def test_a_handover_within_one_hub_leaves_the_predecessor_out_of_the_same_push():
    hub = Hub()
    path = RecordedPath()
    sender = connected_sender(hub, path)
    successor = hub.attach(ListenerSender(hub))
    sender.handover(successor)
    hub.push(EncodedPacket(b"p", 0))
    hub.push(EncodedPacket(b"p", 960))
    assert len(path.packets) == 2 and hub.sinks == [successor]


def test_packets_the_socket_cannot_take_are_dropped_and_counted():
    hub = Hub()
    sender = connected_sender(hub, RecordedPath(accepts=False))
    hub.push(EncodedPacket(b"p", 0))
    assert (sender.sent, sender.dropped) == (0, 1)


def test_the_continuing_offset_wraps_at_32_bits():
    offset = continuing_offset(2**32 - 100, 960, 0)
    assert (offset + 0) % 2**32 == (2**32 - 100 + 960) % 2**32


def test_a_handover_within_one_hub_sends_each_packet_once_whichever_sink_comes_first():
    hub = Hub()
    path = RecordedPath()
    sender = connected_sender(hub, path)
    successor = ListenerSender(hub)
    hub.sinks.insert(0, successor)  # the successor is pushed to before its predecessor
    sender.handover(successor)
    hub.push(EncodedPacket(b"p", 0))
    hub.push(EncodedPacket(b"p", 960))
    assert len(path.packets) == 2 and hub.sinks == [successor]
    assert (path.packets[1].timestamp - path.packets[0].timestamp) % 2**32 == 960
