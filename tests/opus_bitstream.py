"""Just enough of the Opus bitstream (RFC 6716) to see whether a packet carries LBRR (in-band FEC) data.

libopus 1.3 has no "has FEC" query, so this reads the SILK header bits directly: for
SILK-only and hybrid packets the range-coded payload starts with each channel's VAD
flags and its LBRR flag, each coded with probability 1/2 (RFC 6716 section 4.2.3).
"""


def toc(packet):
    """(config, stereo, frame count code) from the TOC byte."""
    byte = packet[0]
    return byte >> 3, bool(byte & 0x04), byte & 0x03


def mode(config):
    return "silk" if config < 12 else "hybrid" if config < 16 else "celt"


def silk_frames_per_packet_frame(config):
    """SILK frames (of 20 ms at most) in one Opus frame: 10/20 ms -> 1, 40 ms -> 2, 60 ms -> 3."""
    if mode(config) == "hybrid":
        return 1
    return {0: 1, 1: 1, 2: 2, 3: 3}[config % 4]


class RangeDecoder:
    """The RFC 6716 section 4.1 range decoder, only as far as ec_dec_bit_logp()."""

    def __init__(self, data):
        self.data = data
        self.pos = 0
        self.rng = 128
        first = self._byte()
        self.previous = first
        self.val = 127 - (first >> 1)
        self._normalize()

    def _byte(self):
        value = self.data[self.pos] if self.pos < len(self.data) else 0
        self.pos += 1
        return value

    def _normalize(self):
        while self.rng <= 1 << 23:
            self.rng = (self.rng << 8) & 0xFFFFFFFF
            byte = self._byte()
            symbol = ((self.previous << 8) | byte) >> 1 & 0xFF
            self.previous = byte
            self.val = ((self.val << 8) + (255 & ~symbol)) & 0x7FFFFFFF

    def bit_logp(self, logp):
        s = self.rng >> logp
        bit = self.val < s
        if not bit:
            self.val -= s
        self.rng = s if bit else self.rng - s
        self._normalize()
        return int(bit)


def has_lbrr(packet):
    """True if a single-frame SILK or hybrid packet says it carries LBRR data; False for CELT-only."""
    config, stereo, count_code = toc(packet)
    if mode(config) == "celt" or count_code != 0 or len(packet) < 3:
        return False
    decoder = RangeDecoder(packet[1:])
    for _channel in range(2 if stereo else 1):
        for _ in range(silk_frames_per_packet_frame(config)):
            decoder.bit_logp(1)  # VAD flag
        if decoder.bit_logp(1):  # LBRR flag
            return True
    return False
