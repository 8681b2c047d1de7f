"""A swarm of real aiortc listeners in one process, for bench/listeners.py.

Each listener does the full WebRTC path (signaling, ICE, DTLS, SRTP) but does not
decode: it counts RTP packets, sequence gaps (lost) and packets that arrive more than
LATE_MS after their due time (late). Protocol with the parent, one line each:
  swarm -> parent  {"connected": n, "failed": m}
  parent -> swarm  go
  swarm -> parent  {"listeners": [...per-listener stats over the window...]}
  parent -> swarm  bye          (then the swarm closes its listeners)
"""
import argparse
import asyncio
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription  # noqa: E402

from streams.webrtc import rtcinternals  # noqa: E402
from streams.webrtc.ice import restrict_host_addresses  # noqa: E402
from tests.listener import ask_for_stereo, connect_like_a_browser  # noqa: E402

LATE_MS = 100
PACKETS_PER_SECOND = 50


class Swarms:
    """The parent's side: client processes of `swarm_size` listeners each, `count` in all,
    spread in turn over `urls`, driven together through the protocol above. A subclass whose
    clients are other listeners names their program (`client`) or their whole command."""

    client = os.path.abspath(__file__)  # the program of the client processes

    def __init__(self, urls, count, seconds, swarm_size=50):
        self.seconds = seconds
        self.processes = []
        for index, start in enumerate(range(0, count, swarm_size)):
            command = self.client_command(urls[index % len(urls)], min(swarm_size, count - start), seconds)
            self.processes.append(subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                                   text=True, stderr=subprocess.DEVNULL))
        self.connected = sum(json.loads(p.stdout.readline())["connected"] for p in self.processes)

    def client_command(self, url, count, seconds):
        """One client process: `count` listeners of `url`."""
        return [sys.executable, self.client, "--url", url, "--count", str(count), "--seconds", str(seconds)]

    @property
    def pids(self):
        return [p.pid for p in self.processes]

    def _tell(self, word):
        for process in self.processes:
            process.stdin.write(word + "\n")
            process.stdin.flush()

    def go(self):
        """Start the measuring window."""
        self._tell("go")

    def results(self):
        """After the window: packets, lost, late, expected over all listeners."""
        listeners = [s for p in self.processes for s in json.loads(p.stdout.readline())["listeners"]]
        return {"listeners": len(listeners), "packets": sum(s["packets"] for s in listeners),
                "lost": sum(s["lost"] for s in listeners), "late": sum(s["late"] for s in listeners),
                "expected": len(listeners) * PACKETS_PER_SECOND * self.seconds}

    def close(self):
        self._tell("bye")
        for process in self.processes:
            process.wait(60)


class CountingListener:
    def __init__(self, url):
        self.url = url
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.ws = None
        self.reset()

    def reset(self):
        self.packets = 0
        self.first_seq = self.last_seq = None
        self.late = 0
        self.best_transit = None

    async def connect(self):
        self.ws = await connect_like_a_browser(self.url)
        receiver = self.pc.addTransceiver("audio", direction="recvonly").receiver
        rtcinternals.on_received_rtp(receiver, self.count)  # count only: no jitter buffer, no decoding
        await self.pc.setLocalDescription(await self.pc.createOffer())
        await self.ws.send(json.dumps({"type": "offer", "sdp": ask_for_stereo(self.pc.localDescription.sdp)}))
        while True:
            message = json.loads(await self.ws.recv())
            if message["type"] == "answer":
                break
            if message["type"] == "error":
                raise ConnectionError(message["message"])
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=message["sdp"], type="answer"))

    async def count(self, packet, arrival_time_ms):
        self.packets += 1
        seq = packet.sequence_number if self.last_seq is None else self.last_seq + ((packet.sequence_number - self.last_seq) % 65536)
        self.first_seq = seq if self.first_seq is None else self.first_seq
        self.last_seq = max(seq, self.last_seq or seq)
        transit = arrival_time_ms - packet.timestamp / 48  # ms, up to a constant per listener
        self.best_transit = transit if self.best_transit is None else min(self.best_transit, transit)
        if transit - self.best_transit > LATE_MS:
            self.late += 1
        return False  # not on to aiortc's jitter buffer

    def stats(self):
        expected = 0 if self.first_seq is None else self.last_seq - self.first_seq + 1
        return {"packets": self.packets, "lost": max(0, expected - self.packets), "late": self.late}

    async def close(self):
        await self.pc.close()
        if self.ws is not None:
            await self.ws.close()


async def main(url, count, seconds, concurrency, listener_class=CountingListener):
    """A client process: `count` listeners of `url` (their candidates on loopback only)."""
    restrict_host_addresses(["127.0.0.1"])
    await run_swarm([listener_class(url) for _ in range(count)], seconds, concurrency)


async def run_swarm(listeners, seconds, concurrency=8):
    """The client's side of the protocol above, for listeners that connect(), reset() their
    counts, give their stats() over the window and close(): CountingListener and its kind."""
    gate = asyncio.Semaphore(concurrency)

    async def connect(listener):
        async with gate:
            try:
                await asyncio.wait_for(listener.connect(), 60)
                return True
            except Exception as error:  # reported as a count, the benchmark goes on
                print(f"connect failed: {error!r}", file=sys.stderr)
                return False

    results = await asyncio.gather(*(connect(listener) for listener in listeners))
    connected = [listener for listener, ok in zip(listeners, results) if ok]
    print(json.dumps({"connected": len(connected), "failed": len(listeners) - len(connected)}), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    for listener in connected:
        listener.reset()
    await asyncio.sleep(seconds)
    print(json.dumps({"listeners": [listener.stats() for listener in connected]}), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)  # "bye": the parent has read the server
    await asyncio.gather(*(listener.close() for listener in listeners), return_exceptions=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    asyncio.run(main(args.url, args.count, args.seconds, args.concurrency))
