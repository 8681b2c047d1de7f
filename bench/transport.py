"""Which Redis transport carries the encoded packets from the media owner to the workers?

Measures, on the Redis at --redis-url, with real packet sizes and rates (one 240-byte packet
every 20 ms per stream = Opus 96 kb/s, --streams streams, --workers receivers each
subscribed to every stream):
- pub/sub: PUBLISH by the sender, SUBSCRIBE in each receiver (fire and forget, no storage);
- streams: XADD (MAXLEN ~ 50) by the sender, blocking XREAD in each receiver.
For each: one-way latency sender -> receiver (p50, p99, max; both ends in this process, on
one clock), packets lost, and the Redis server's CPU (from /proc) per second.

    .venv/bin/python bench/transport.py
    .venv/bin/python bench/transport.py --streams 4 --workers 2 --seconds 10
"""
import argparse
import asyncio
import os
import platform
import shlex
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import redis.asyncio as aioredis

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAYLOAD = bytes(232)  # + 8-byte send time = 240 bytes
STAMP = struct.Struct("!d")


def redis_pid():
    pid = subprocess.run(["pgrep", "-o", "redis-server"], capture_output=True, text=True).stdout.split()
    return int(pid[0]) if pid else None


def cpu_seconds(pid):
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


async def send(url, streams, seconds, publish):
    client = aioredis.from_url(url)
    interval = 0.02
    start = time.monotonic()
    sent = 0
    while time.monotonic() - start < seconds:
        for stream in range(streams):
            await publish(client, f"bench:transport:{stream}", STAMP.pack(time.monotonic()) + PAYLOAD)
            sent += 1
        next_at = start + (sent // streams) * interval
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))
    await client.aclose()
    return sent


async def pubsub_receiver(url, streams, latencies, ready, done):
    client = aioredis.from_url(url)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe(*[f"bench:transport:{s}" for s in range(streams)])
    ready.set()
    while not done.is_set():
        message = await pubsub.get_message(timeout=0.1)
        if message:
            latencies.append(time.monotonic() - STAMP.unpack_from(message["data"])[0])
    await pubsub.aclose()
    await client.aclose()


async def streams_receiver(url, streams, latencies, ready, done):
    client = aioredis.from_url(url)
    last = {f"bench:transport:{s}": "$" for s in range(streams)}
    ready.set()
    while not done.is_set():
        replies = await client.xread(last, block=100)
        for name, entries in replies or []:
            for entry_id, fields in entries:
                latencies.append(time.monotonic() - STAMP.unpack_from(fields[b"p"])[0])
                last[name.decode()] = entry_id
    await client.aclose()


async def measure(kind, url, streams, workers, seconds):
    if kind == "pubsub":
        receiver = pubsub_receiver

        async def publish(client, channel, data):
            await client.publish(channel, data)
    else:
        receiver = streams_receiver

        async def publish(client, channel, data):
            await client.xadd(channel, {"p": data}, maxlen=50, approximate=True)

    per_worker = [[] for _ in range(workers)]
    done = asyncio.Event()
    readies = [asyncio.Event() for _ in range(workers)]
    tasks = [asyncio.create_task(receiver(url, streams, per_worker[i], readies[i], done)) for i in range(workers)]
    for ready in readies:
        await ready.wait()
    pid = redis_pid()
    redis_before = cpu_seconds(pid) if pid else None
    wall = time.monotonic()
    sent = await send(url, streams, seconds, publish)
    await asyncio.sleep(0.3)
    done.set()
    await asyncio.gather(*tasks)
    wall = time.monotonic() - wall
    redis_cpu = (cpu_seconds(pid) - redis_before) / wall if pid else None
    received = sum(len(l) for l in per_worker)
    latencies_ms = np.array([x for l in per_worker for x in l]) * 1000
    return {
        "transport": kind, "sent": sent, "received": received, "expected": sent * workers,
        "p50_ms": float(np.percentile(latencies_ms, 50)), "p99_ms": float(np.percentile(latencies_ms, 99)),
        "max_ms": float(latencies_ms.max()), "redis_cpu": redis_cpu,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/13")
    parser.add_argument("--streams", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=10)
    args = parser.parse_args()
    print("command:", shlex.join([".venv/bin/python", "bench/transport.py", *sys.argv[1:]]))
    print(f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"{args.streams} streams x 50 packets/s of 240 bytes, {args.workers} receivers each taking every stream")
    for kind in ("pubsub", "streams"):
        row = asyncio.run(measure(kind, args.redis_url, args.streams, args.workers, args.seconds))
        redis_cpu = f"{100 * row['redis_cpu']:.1f} % of a core" if row["redis_cpu"] is not None else "n/a"
        print(f"{kind:>8}: received {row['received']}/{row['expected']}  latency p50 {row['p50_ms']:.2f} ms  "
              f"p99 {row['p99_ms']:.2f} ms  max {row['max_ms']:.2f} ms  redis-server CPU {redis_cpu}")


if __name__ == "__main__":
    main()
