"""What goes through Redis between the media owner and the workers, and under which names.

Audio: one Redis pub/sub channel per stream variant (`rtc:audio:<db>:<key>`), one message per
encoded packet, raw bytes:

    version (1 byte) | stream key (8 bytes) | sequence (uint32) | pts (uint64) | payload

The key is a digest of the StreamConfig, so every packet says which stream it belongs to;
the sequence number lets a worker count gaps; pts is the owner's timestamp in the codec's
clock (it restarts when the owner does, which is why workers re-stamp, see `restamp`).

Demand: a worker that has listeners of a stream keeps its want alive in one sorted set,
`rtc:wanted`: the member `<key>:<worker>:<hub>` scored by when it lapses (Redis's own clock, in
ms: a few seconds ahead, renewed every second), and the stream's config as JSON beside it in
`rtc:config:<key>` (the same TTL). The owner drops the lapsed members and reads the rest (the
WANTED script), and runs exactly the streams that some worker wants. Why a sorted set: the owner
reads the whole demand in one command, never walking the keyspace it shares with channels_redis
(a SCAN four times a second costs as much as there are keys), and each member lapses on its own,
as a key's TTL would, which a plain set cannot do. The scores are Redis's clock, so workers on
other machines need not agree on the time.
"""
import dataclasses
import hashlib
import json
import struct

from ..audio.config import StreamConfig
from ..audio.encoders import ENCODERS as CODECS

VERSION = 1
HEADER = struct.Struct("!B8sIQ")
WANTED_KEY = "rtc:wanted"  # sorted set: "<stream key>:<worker>:<hub>" by when the want lapses (ms)
CONFIG_PREFIX = "rtc:config:"  # per wanted stream: its StreamConfig as JSON
AUDIO_PREFIX = "rtc:audio:"
STATS_PREFIX = "rtc:stats:"  # per stream variant, from the owner: slug, codec, bitrate, packets
LISTENERS_PREFIX = "rtc:listeners:"  # per worker: {profile pk: listener count}
ADDRESSES_PREFIX = "rtc:addresses:"  # per worker: {client address: listener count}
WORKERS_KEY = "rtc:workers"  # the workers that may hold counts (admission.py)
OWNER_LOCK = "rtc:owner"


@dataclasses.dataclass(frozen=True)
class CountNames:
    """Where one kind of admission (admission.py) keeps its counts: per-worker hashes by stream
    and by client address, and the set of workers holding some."""

    streams: str
    addresses: str
    workers: str


LISTENER_COUNTS = CountNames(LISTENERS_PREFIX, ADDRESSES_PREFIX, WORKERS_KEY)
# Open signaling sockets, offer or not (one "stream": "*"), so one address cannot hold thousands.
SOCKET_COUNTS = CountNames("rtc:sockets:", "rtc:socket-addresses:", "rtc:socket-workers")


class BadPacket(ValueError):
    pass


def stream_key(config):
    """A short, stable name for a StreamConfig (hex of 8 digest bytes), the same in every process."""
    return hashlib.blake2b(config_to_json(config).encode(), digest_size=8).hexdigest()


def config_to_json(config):
    return json.dumps(dataclasses.asdict(config), sort_keys=True, separators=(",", ":"))


def config_from_json(text):
    """The StreamConfig in a want key; ValueError if it is not one."""
    fields = json.loads(text)
    try:
        fields["sine_frequencies"] = tuple(fields["sine_frequencies"])
        config = StreamConfig(**fields)
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"not a stream config: {error}") from None
    if config.codec not in CODECS:
        raise ValueError(f"unknown codec {config.codec!r}")
    return config


def audio_channel(key, database):
    """The pub/sub channel of stream `key`. Redis has one pub/sub namespace for the whole server,
    whatever database a client uses: the name carries the database, so that two installations
    (or test runs) sharing a Redis server on different databases never hear each other's streams
    (a profile "default" with the same settings has the same key in both)."""
    return f"{AUDIO_PREFIX}{database}:{key}"


def database_of(redis):
    """The database number a redis-py client uses (0 unless its URL names another)."""
    return int(redis.connection_pool.connection_kwargs.get("db") or 0)


def want_member(key, worker_id, hub_id):
    """A relay hub's member of WANTED_KEY: one per hub, so that a hub going away never withdraws a
    newer hub's want."""
    return f"{key}:{worker_id}:{hub_id}"


def wanted_stream(member):
    """The stream key in a member of WANTED_KEY."""
    return member.split(":", 1)[0]


def config_key(key):
    return f"{CONFIG_PREFIX}{key}"


# Redis's clock in ms, for the scores of WANTED_KEY (a script may read TIME before it writes:
# Redis 5 and later replicate a script's effects, not the script).
_NOW_MS = "local t = redis.call('TIME') local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"

# A worker wants a stream for ARGV[3] more seconds. KEYS: WANTED_KEY, config_key(key).
# ARGV: want_member(...), the config as JSON, the TTL in seconds.
WANT = _NOW_MS + """
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]) * 1000, ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[3])
"""

# The owner: drop the lapsed wants, return the members of the rest. KEYS: WANTED_KEY.
WANTED = _NOW_MS + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return redis.call('ZRANGE', KEYS[1], 0, -1)
"""


def pack_packet(key, sequence, pts, payload):
    return HEADER.pack(VERSION, bytes.fromhex(key), sequence & 0xFFFFFFFF, pts & 0xFFFFFFFFFFFFFFFF) + payload


def unpack_packet(data):
    """(key, sequence, pts, payload) of a packet; BadPacket if it is not one."""
    if len(data) < HEADER.size:
        raise BadPacket(f"{len(data)} bytes is shorter than the {HEADER.size}-byte header")
    version, key, sequence, pts = HEADER.unpack_from(data)
    if version != VERSION:
        raise BadPacket(f"packet version {version}, expected {VERSION}")
    return key.hex(), sequence, pts, data[HEADER.size:]


def sequence_gap(previous, sequence):
    """Packets missing between two sequence numbers (uint32, wrapping); 0 when consecutive.
    None when `sequence` is not ahead of `previous` (a repeat, or the owner restarted)."""
    step = (sequence - previous) & 0xFFFFFFFF
    if step == 0 or step >= 1 << 31:
        return None
    return step - 1


def restamp(last_local, last_remote, remote, elapsed_samples, frame_samples):
    """The worker's own pts for a packet whose owner pts is `remote`, and whether the packet
    starts a new stretch of the timeline (RTP's marker).

    Listeners' timestamps must run on without jumps back, whatever the owner does: while the
    owner's pts advance normally (by up to 50 frames: a second of 20 ms ones, half of 10 ms
    ones), follow them; otherwise (the owner restarted, or was gone for long) advance by the
    time that really passed, rounded to whole frames and at least one frame. Any step but one frame in the owner's timeline is
    marked, even where ours runs on by one frame (the packet came in a burst after the jump).
    """
    if last_local is None:
        return 0, True
    step = remote - last_remote
    if 0 < step <= 50 * frame_samples:
        return last_local + step, step != frame_samples
    frames = max(1, round(elapsed_samples / frame_samples))
    return last_local + frames * frame_samples, True
