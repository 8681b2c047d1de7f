"""What a process's open files are, read from /proc: how many sockets to Redis, UDP sockets,
pipes... (Linux). For the tests and benchmarks that check a process gives back what it took."""
import contextlib
import os
from pathlib import Path


def socket_kinds(pid, redis_port):
    """{socket inode: what it is} for the sockets in a process's network namespace: "redis"
    (TCP to `redis_port`), "tcp listening", "tcp other", "udp", "unix"."""
    kinds = {}
    for proto in ("tcp", "tcp6", "udp", "udp6", "unix"):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/net/{proto}").read_text().splitlines()[1:]:
                fields = line.split()
                if proto == "unix":
                    kinds[fields[6]] = "unix"
                elif proto.startswith("udp"):
                    kinds[fields[9]] = "udp"
                elif int(fields[2].rsplit(":", 1)[1], 16) == redis_port:
                    kinds[fields[9]] = "redis"
                else:
                    kinds[fields[9]] = "tcp listening" if fields[3] == "0A" else "tcp other"
    return kinds


def fd_kinds(pid, redis_port):
    """{"redis": n, "udp": n, "pipe": n, "file": n, ...}: what a process's open files are."""
    sockets, kinds = socket_kinds(pid, redis_port), {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if target.startswith("socket:["):
                kind = sockets.get(target[8:-1], "socket")
            else:
                kind = target.split(":", 1)[0] if ":" in target and not target.startswith("/") else "file"
            kinds[kind] = kinds.get(kind, 0) + 1
    return kinds


def redis_connections(pid, redis_port):
    """How many TCP connections to `redis_port` the process `pid` has open."""
    return fd_kinds(pid, redis_port).get("redis", 0)
