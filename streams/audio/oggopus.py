"""Ogg Opus muxing (RFC 7845 over RFC 3533): header packets, pages with their CRC, granule positions.

Pure: bytes in, bytes out, no I/O. `OggOpusMuxer` is one listener's logical stream. Each
listener gets its own (its own serial number, page sequence from 0, granule positions from
0), so any listener may start at any packet of a live stream, on a page boundary:

    page 0      OpusHead (beginning of stream), granule 0
    page 1      OpusTags, granule 0
    page 2...   audio packets, each page's granule position the 48 kHz samples of every
                packet completed so far (pre-skip included)
    last page   end of stream (when the stream ends rather than the connection)

The packets are the hub's own Opus payloads, never re-encoded. Where the stream has a short
gap in time (DTX leaves out silent frames; a frame lost on the way), the muxer fills it with
packets that ask the decoder to conceal (RFC 7845 section 4.1: a TOC byte like the previous
packet's, with zero-length frames), so the granule positions keep time. A gap longer than
MAX_FILL_SAMPLES (an outage, a timeline jump, packets a slow client lost) is not filled:
the listener's timeline goes on from the next packet, as a live stream should.
"""
import struct
import zlib
from dataclasses import dataclass

OPUS_CLOCK = 48_000  # Ogg Opus granule positions count 48 kHz samples whatever the codec's bandwidth
# A listener joins a live stream in the middle, with a fresh decoder: 80 ms of output lets its
# predictors converge (RFC 7845's pre-roll), so that much is skipped at the start.
PRE_SKIP = 3840
MAX_FILL_SAMPLES = OPUS_CLOCK  # gaps up to 1 s are concealed; DTX sends a frame at least every 400 ms
MAX_SEGMENTS = 255
VENDOR = "RTC Caster"

FLAG_CONTINUED, FLAG_BOS, FLAG_EOS = 0x01, 0x02, 0x04
_PAGE_HEADER = struct.Struct("<4sBBqIIIB")  # capture, version, flags, granule, serial, sequence, CRC, segments
_CRC_OFFSET = 22

# The Ogg CRC (polynomial 0x04C11DB7, initial value 0, not reflected, no final XOR) from zlib's
# reflected CRC-32: reflect every input byte and the result, and take away what zlib's initial
# and final XOR add for a message of that length. All the work is in C.
_REFLECT = bytes(int(f"{byte:08b}"[::-1], 2) for byte in range(256))


def crc32(data):
    """The Ogg page checksum of `data` (RFC 3533 section 6)."""
    raw = zlib.crc32(data.translate(_REFLECT)) ^ zlib.crc32(bytes(len(data)))
    return int(f"{raw:032b}"[::-1], 2)


def opus_head(channels, pre_skip=PRE_SKIP, input_sample_rate=OPUS_CLOCK):
    """The identification header (RFC 7845 section 5.1): version 1, mapping family 0 (mono/stereo)."""
    if channels not in (1, 2):
        raise ValueError(f"mapping family 0 carries 1 or 2 channels, not {channels}")
    return b"OpusHead" + struct.pack("<BBHIhB", 1, channels, pre_skip, input_sample_rate, 0, 0)


def opus_tags(comments=(), vendor=VENDOR):
    """The comment header (RFC 7845 section 5.2): vendor string and `NAME=value` comments, UTF-8."""
    parts = [b"OpusTags", _string(vendor), struct.pack("<I", len(comments))]
    parts += [_string(comment) for comment in comments]
    return b"".join(parts)


def _string(text):
    data = text.encode()
    return struct.pack("<I", len(data)) + data


def lacing(length):
    """The segment table entries of one packet: 255 for each full segment, then the rest (0-254)."""
    full, rest = divmod(length, 255)
    return b"\xff" * full + bytes((rest,))


def page(serial, sequence, granule, packets, flags=0):
    """One Ogg page holding whole `packets` (bytes each), its CRC filled in."""
    segments = b"".join(lacing(len(packet)) for packet in packets)
    if len(segments) > MAX_SEGMENTS:
        raise ValueError(f"{len(segments)} segments do not fit on one page ({MAX_SEGMENTS} at most)")
    header = _PAGE_HEADER.pack(b"OggS", 0, flags, granule, serial, sequence, 0, len(segments))
    data = bytearray(header + segments + b"".join(packets))
    struct.pack_into("<I", data, _CRC_OFFSET, crc32(data))
    return bytes(data)


FRAME_SAMPLES_BY_CONFIG = (
    [480, 960, 1920, 2880] * 3  # 0-11 SILK: 10, 20, 40, 60 ms (narrow, medium, wide band)
    + [480, 960] * 2  # 12-15 hybrid: 10, 20 ms
    + [120, 240, 480, 960] * 4  # 16-31 CELT: 2.5, 5, 10, 20 ms
)


def packet_samples(packet):
    """Duration of an Opus packet in 48 kHz samples, from its TOC byte (RFC 6716 section 3.1)."""
    if not packet:
        raise ValueError("an Opus packet has at least its TOC byte")
    toc = packet[0]
    per_frame = FRAME_SAMPLES_BY_CONFIG[toc >> 3]
    code = toc & 0x03
    if code == 0:
        return per_frame
    if code in (1, 2):
        return 2 * per_frame
    if len(packet) < 2:
        raise ValueError("a code 3 Opus packet needs its frame count byte")
    return (packet[1] & 0x3F) * per_frame


def concealment_packet(previous):
    """A one-frame packet with a zero-length frame, in `previous`'s mode, bandwidth, channels and
    frame size: the decoder conceals it as a lost frame (RFC 6716 3.2.1, RFC 7845 4.1)."""
    return bytes((previous[0] & 0xFC,))


@dataclass(frozen=True)
class Page:
    flags: int
    granule: int
    serial: int
    sequence: int
    crc: int
    packets: tuple  # the packets completed on this page (this module never splits one over pages)
    size: int
    crc_ok: bool  # the checksum matches the page


def read_pages(data):
    """The whole pages at the start of `data` and the bytes left over (an unfinished page):
    for tests, benchmarks and anyone checking a stream. ValueError where a page should begin
    and does not."""
    pages, offset = [], 0
    while len(data) - offset >= _PAGE_HEADER.size:
        capture, version, flags, granule, serial, sequence, crc, count = _PAGE_HEADER.unpack_from(data, offset)
        if capture != b"OggS" or version != 0:
            raise ValueError(f"no Ogg page at byte {offset}")
        table = data[offset + _PAGE_HEADER.size:offset + _PAGE_HEADER.size + count]
        end = offset + _PAGE_HEADER.size + count + sum(table)
        if len(table) < count or end > len(data):
            break
        body, packets, start, length = data[offset + _PAGE_HEADER.size + count:end], [], 0, 0
        for value in table:
            length += value
            if value < 255:
                packets.append(bytes(body[start:start + length]))
                start, length = start + length, 0
        zeroed = bytes(data[offset:offset + _CRC_OFFSET]) + bytes(4) + bytes(data[offset + _CRC_OFFSET + 4:end])
        pages.append(Page(flags, granule, serial, sequence, crc, tuple(packets), end - offset, crc == crc32(zeroed)))
        offset = end
    return pages, data[offset:]


class OggOpusMuxer:
    """One listener's Ogg Opus stream. `headers()` first, then `audio(packets)` for each batch of
    (pts, payload) the listener takes (pts in 48 kHz samples), then `end()` if the stream ends."""

    def __init__(self, serial, channels, comments=()):
        self.serial = serial & 0xFFFFFFFF
        self.channels = channels
        self.comments = tuple(comments)
        self.sequence = 0
        self.granule = 0
        self._next_pts = None  # where the next packet is due, in the source's pts
        self._previous = None  # the last packet, the model for concealment packets
        self.concealed = 0  # packets made up to fill gaps
        self.skipped_samples = 0  # gaps too long to fill

    def headers(self):
        return (self._page([opus_head(self.channels)], FLAG_BOS)
                + self._page([opus_tags(self.comments)]))

    def audio(self, packets):
        """Pages for `packets`, a list of (pts, payload): usually one page, more if they do not fit."""
        payloads = []
        for pts, payload in packets:
            payloads += self._fill_before(pts)
            payloads.append(payload)
            self._previous = payload
            self._next_pts = pts + packet_samples(payload)
        return self._pages(payloads)

    def end(self):
        """The last page, marked end of stream: one concealed frame (a page needs a packet), or
        none if no audio was ever sent (then the stream ends after its headers)."""
        packets = [concealment_packet(self._previous)] if self._previous else []
        return self._pages(packets, last_flags=FLAG_EOS) if packets else self._page([], FLAG_EOS)

    def _fill_before(self, pts):
        if self._next_pts is None or pts <= self._next_pts:
            return []
        gap = pts - self._next_pts
        if gap > MAX_FILL_SAMPLES:
            self.skipped_samples += gap
            return []
        filler = concealment_packet(self._previous)
        count = gap // packet_samples(filler)
        self.concealed += count
        return [filler] * count

    def _pages(self, payloads, last_flags=0):
        out, batch, segments = [], [], 0
        for payload in payloads:
            needed = len(payload) // 255 + 1
            if batch and segments + needed > MAX_SEGMENTS:
                out.append(self._audio_page(batch, 0))
                batch, segments = [], 0
            batch.append(payload)
            segments += needed
        if batch:
            out.append(self._audio_page(batch, last_flags))
        return b"".join(out)

    def _audio_page(self, payloads, flags):
        self.granule += sum(packet_samples(payload) for payload in payloads)
        return self._page(payloads, flags)

    def _page(self, packets, flags=0):
        data = page(self.serial, self.sequence, self.granule, packets, flags)
        self.sequence += 1
        return data
