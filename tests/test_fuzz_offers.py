"""Fuzzing the offers that pass every check and reach a peer: whatever they carry (odd Opus
values, extra media sections, floods of candidates, unknown codecs), every connection gives
back its seat, its socket place and its peer when it goes. Through Channels'
WebsocketCommunicator: the consumer and aiortc as in the server, hundreds of offers quickly."""
import asyncio

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.models import StreamProfile
from streams.runtime import get_runtime
from tests.helpers import AIORTC_OFFER as OFFER
from tests.rigs.communicator import connected, offer

pytestmark = pytest.mark.django_db(transaction=True)

OUTCOMES = []

fmtp_values = st.one_of(st.integers(-5, 10**12).map(str), st.text(max_size=12), st.just("9" * 5000),
                        st.sampled_from(["²", "٣٢٠٠٠", "0x10", " 1", "1e9", ""]))
fmtp = st.dictionaries(st.sampled_from(["maxaveragebitrate", "maxplaybackrate", "stereo", "useinbandfec",
                                        "cbr", "sprop-stereo", "x"]), fmtp_values, max_size=5)
candidates = st.lists(st.tuples(st.sampled_from(["127.0.0.1", "127.0.0.2", "10.0.0.1", "::1", "host.local", "x"]),
                                st.integers(0, 70000)), max_size=60)
extra_sections = st.lists(st.sampled_from([
    "m=audio 9 UDP/TLS/RTP/SAVPF 0\na=rtpmap:0 PCMU/8000\n",
    "m=video 9 UDP/TLS/RTP/SAVPF 96\na=rtpmap:96 VP8/90000\n",
    "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\n",
    "m=audio 0 UDP/TLS/RTP/SAVPF 111\n",
]), max_size=8)


def outcome(reply):
    """answered; refused by aiortc (after the seat and the peer were taken); or refused before."""
    if reply["type"] == "answer":
        return "answered"
    return "refused by aiortc" if "could not be used" in reply["message"] else "refused before the peer"


def build_offer(params, candidate_list, sections):
    offer = OFFER
    if params:
        line = "a=fmtp:96 " + ";".join(f"{key}={value}" for key, value in params.items())
        offer = offer.replace("a=rtpmap:96 opus/48000/2\n", "a=rtpmap:96 opus/48000/2\n" + line.replace("\n", "") + "\n")
    offer += "".join(f"a=candidate:{i} 1 udp 100 {address} {port} typ host\n"
                     for i, (address, port) in enumerate(candidate_list))
    return offer + "".join(sections)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(params=fmtp, candidate_list=candidates, sections=extra_sections)
def test_every_offer_that_reaches_a_peer_gives_everything_back(params, candidate_list, sections):
    StreamProfile.objects.get_or_create(slug="fuzzed", defaults={"name": "Fuzzed", "max_listeners": 1})

    async def scenario():
        runtime = get_runtime()
        communicator = await connected("fuzzed")
        reply = await offer(communicator, build_offer(params, candidate_list, sections))
        assert reply["type"] == "answer" or (reply["type"] == "error" and reply["code"] != "internal-error"), reply
        await communicator.disconnect()
        return outcome(reply), runtime.admission.seats_held, runtime.sockets.seats_held, len(runtime.peers)

    kind, seats, sockets, peers = asyncio.run(scenario())
    OUTCOMES.append(kind)
    assert (seats, sockets, peers) == (0, 0, 0), kind


def test_the_fuzzed_offers_mostly_reached_a_peer():
    """The test above means something only if most of its offers took a seat and made a peer (it runs first)."""
    assert OUTCOMES, "runs after test_every_offer_that_reaches_a_peer_gives_everything_back, in the same session"
    counts = {kind: OUTCOMES.count(kind) for kind in set(OUTCOMES)}
    assert len(OUTCOMES) - counts.get("refused before the peer", 0) >= len(OUTCOMES) // 2, counts
    assert counts.get("answered", 0) >= len(OUTCOMES) // 10, counts
