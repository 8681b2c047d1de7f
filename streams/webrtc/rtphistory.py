"""Keep aiortc from holding every listener's last 128 RTP packets.

aiortc's sender keeps a history of the packets it sent, for retransmission when the
receiver sends a NACK. Audio is never retransmitted: aiortc offers no NACK feedback for
its audio codecs, so none is negotiated and browsers send none. The history then only
holds garbage: 128 packet objects per listener, each living 2.5 s. That is long enough
for Python's garbage collector to promote them to its oldest generation, and with 200
listeners (10,000 packets a second) they set off a full collection every 12 s or so,
each stopping the event loop for up to 280 ms, so that every listener's packets arrived
late together (measured: bench/workers.py, /status.json `gc_pauses_ms_last_minute`).
With a history of one packet, each packet object is freed by reference counting as the
next one is sent, long before any collection.
"""
from . import rtcinternals

AUDIO_RTP_HISTORY = 1


def keep_no_rtp_history():
    rtcinternals.set_rtp_history_size(AUDIO_RTP_HISTORY)
