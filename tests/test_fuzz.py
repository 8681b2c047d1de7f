"""Fuzzing the signaling socket of a real daphne while a real listener keeps hearing its tone.

hypothesis makes 10,000 messages: random JSON, wrong types, huge and truncated SDP, binary
frames, and real offers mangled line by line. Each goes over a WebSocket to the server. The
server must answer every one it reads without an unhandled exception, and the listener on the
same server must keep its 440 Hz with no gap.
"""
import asyncio
import collections
import json
from pathlib import Path

import pytest
import websockets
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.models import StreamProfile
from tests.listener import connect_like_a_browser
from tests.rigs.listen_process import ListenerProcess

pytestmark = pytest.mark.django_db(transaction=True)

OFFER_LINES = (Path(__file__).parent / "data" / "aiortc_offer.sdp").read_text().splitlines()
# Errors after which the server closes the socket: a rate or listener limit was reached.
CLOSING_ERRORS = {"too-many-messages", "too-many-listeners"}
EXAMPLES = 100
MESSAGES_PER_EXAMPLE = 100

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=10,
)


@st.composite
def mangled_offers(draw):
    lines = list(OFFER_LINES)
    for _ in range(draw(st.integers(1, 6))):
        index = draw(st.integers(0, len(lines) - 1))
        action = draw(st.sampled_from(["drop", "duplicate", "garble", "truncate"]))
        if action == "drop":
            lines.pop(index)
        elif action == "duplicate":
            lines.insert(index, lines[index])
        elif action == "garble":
            lines[index] = draw(st.text(max_size=40))
        else:
            lines[index] = lines[index][: draw(st.integers(0, len(lines[index])))]
        if not lines:
            lines = ["v=0"]
    return "\r\n".join(lines)


messages = st.one_of(
    json_values.map(json.dumps),
    st.dictionaries(st.sampled_from(["type", "sdp", "x"]), json_values, max_size=3).map(json.dumps),
    st.builds(lambda t, s: json.dumps({"type": t, "sdp": s}), st.sampled_from(["offer", "answer", "candidate", ""]), json_values),
    mangled_offers().map(lambda sdp: json.dumps({"type": "offer", "sdp": sdp})),
    st.integers(60_000, 90_000).map(lambda n: json.dumps({"type": "offer", "sdp": "v=0\r\n" + "a" * n})),
    st.text(max_size=200),
    st.binary(max_size=200),
)


async def send_all(url, batch):
    """Send every message and note what came of it: "reply", or the close code if the server closed
    the socket instead (1009: over 64 KiB). A closed socket is replaced for the next message."""
    outcomes = []
    ws = None
    for message in batch:
        if ws is None:
            ws = await connect_like_a_browser(url)
        try:
            await ws.send(message)
            reply = json.loads(await asyncio.wait_for(ws.recv(), 15))
            outcomes.append("reply" if reply.get("type") in ("answer", "error") else "odd reply")
        except websockets.ConnectionClosed as closed:
            outcomes.append(closed.rcvd.code if closed.rcvd else "dropped")
            ws = None
        else:
            if reply.get("code") in CLOSING_ERRORS:
                ws = None  # the server closes this socket after saying so
    if ws is not None:
        await ws.close()
    return outcomes


# It times a listener's sound (no gap of 250 ms while the server is fuzzed): run alone, as the
# other tests that time sound (a run beside another test file saw 277 ms).
@pytest.mark.times_sound
def test_10000_fuzzed_messages_leave_the_server_and_a_listener_unharmed(server):
    StreamProfile.objects.create(name="Fuzz", slug="fuzz", sine_frequency=440)
    listener = ListenerProcess(server.ws_url("fuzz"))  # its own process: the fuzzer cannot stall it
    outcomes = []

    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(st.lists(messages, min_size=MESSAGES_PER_EXAMPLE, max_size=MESSAGES_PER_EXAMPLE))
    def fuzz(batch):
        outcomes.extend(asyncio.run(send_all(server.ws_url("fuzz"), batch)))

    try:
        listener.wait_until_hearing()
        fuzz()
        heard = listener.finish()
    finally:
        listener.kill()
    assert len(outcomes) == EXAMPLES * MESSAGES_PER_EXAMPLE
    counts = collections.Counter(map(str, outcomes))
    assert set(outcomes) <= {"reply", 1009}, counts  # no 1011 (internal error), no dropped connection
    assert outcomes.count("reply") > 0.8 * len(outcomes)
    assert "Exception inside application" not in server.log() and "Traceback" not in server.log()
    assert heard["chunks"] > 100 and heard["max_gap"] < 0.25, heard
    assert abs(heard["frequency"] - 440) <= 5
