"""A listener that vanishes without a goodbye is closed by the server within 35 s (issue 7).

The listeners run in their own process, which is then frozen (SIGSTOP): like phones that
walked out of Wi-Fi range, their WebSockets stay open, no DTLS alert or RTCP BYE comes, and
nothing answers ICE consent checks any more. Only consent expiry can tell the server.
"""
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import make_profile
from tests.waiting import wait_for

pytestmark = pytest.mark.django_db(transaction=True)

SWARM = Path(__file__).resolve().parents[1] / "bench" / "swarm.py"
LISTENERS = 3


def test_frozen_listeners_are_closed_within_35_seconds_and_the_log_says_why(server):
    make_profile("vanishing")
    swarm = subprocess.Popen([sys.executable, str(SWARM), "--url", server.ws_url("vanishing"), "--count", str(LISTENERS)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert json.loads(swarm.stdout.readline()) == {"connected": LISTENERS, "failed": 0}
        wait_for(lambda: server.status()["connected_peers"] == LISTENERS, 20, f"{LISTENERS} connected peers")
        swarm.send_signal(signal.SIGSTOP)
        frozen_at = time.monotonic()
        wait_for(lambda: server.status()["peers"] == 0, 45, "the server to close the frozen listeners")
        closed_after = time.monotonic() - frozen_at
    finally:
        swarm.send_signal(signal.SIGKILL)
        swarm.wait()
    assert closed_after < 35, f"closed {closed_after:.1f} s after the listeners went silent"
    assert closed_after > 10, "closed too soon for consent expiry: something else closed them"
    log = server.log()
    closed_for_a_reason = log.count("connection failed or consent expired; closing") + log.count(
        "connection ended (the listener hung up, or stopped answering consent checks); closing")
    assert closed_for_a_reason >= LISTENERS
