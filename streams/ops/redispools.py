"""Give back the Redis connections a crowd made a process open, once the crowd has gone.

A redis-py pool keeps every connection it ever opened. Fifty listeners joining a worker at once
make its channel layer and its listener counts run fifty commands at once, so fifty sockets to
Redis stay open for as long as the process runs; a media owner keeps one per stream it once
published. When a process goes idle (no stream, no peer), close_idle() closes the connections
its pools hold unused. The next command opens one again. Connections in use (a blocking receive,
a command on its way) are left alone.

The two pools' internals are read here and nowhere else: redis-py's list of a pool's unused
connections, and channels_redis's one client per Redis host for the running event loop.
"""


def idle_connections(client):
    """The open connections of a redis.asyncio client's pool that no command is using."""
    return [connection for connection in client.connection_pool._available_connections
            if connection.is_connected]


async def close_idle(*clients):
    """Close the unused open connections of these redis.asyncio clients' pools; how many were closed.

    Each is checked to be still unused and closed in one step of the event loop (nowait: the
    socket is not waited for), so no other task can take it from the pool half closed."""
    closed = 0
    for client in clients:
        for connection in idle_connections(client):
            if connection in client.connection_pool._available_connections and connection.is_connected:
                await connection.disconnect(nowait=True)
                closed += 1
    return closed


def channel_layer_clients(layer):
    """The redis.asyncio clients a channels_redis layer uses on the running event loop (one per
    Redis host); none for a layer without Redis (the in-memory one of single-process mode)."""
    if not hasattr(layer, "ring_size"):
        return []
    return [layer.connection(index) for index in range(layer.ring_size)]


class IdleSpells:
    """When a process polling in a loop gives its connections back: `after` seconds into each
    spell of idleness (what the last listeners' leaving sent has gone out by then), then every
    `every` seconds while it lasts (two commands that happened to overlap opened one more)."""

    def __init__(self, after=2.0, every=60.0):
        self.after, self.every = after, every
        self._due_at = None  # None: not idle

    def due(self, idle, now):
        """Whether to give them back now, at monotonic time `now`, the process being `idle` or not."""
        if not idle:
            self._due_at = None
            return False
        if self._due_at is None:
            self._due_at = now + self.after
            return False
        if now < self._due_at:
            return False
        self._due_at = now + self.every
        return True
