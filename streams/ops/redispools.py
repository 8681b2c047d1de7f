"""Give back the Redis connections a crowd made a process open, once the crowd has gone.

A redis-py pool keeps every connection it ever opened. Fifty listeners joining a worker at once
make its channel layer join fifty groups at once, so fifty sockets to Redis stay open for as long
as the process runs; a media owner keeps one for each stream it once published at the same time
as others. When a process goes idle (no stream, no peer), close_idle() closes the connections its
pools hold unused but one each: the one an idle process's own steady work (a lock renewal, a
poll) takes again at once. Connections in use (a blocking receive, a command on its way) are
left alone; a command that finds none free opens one again.

The two pools' internals are read here and nowhere else: redis-py's list of a pool's unused
connections, and channels_redis's one client per Redis host for the running event loop.
"""


def idle_connections(client):
    """The open connections of a redis.asyncio client's pool that no command is using."""
    return [connection for connection in client.connection_pool._available_connections
            if connection.is_connected]


async def close_idle(*clients, keep=1):
    """Close the unused open connections of these redis.asyncio clients' pools, but `keep` in
    each; how many were closed.

    Each is checked to be still unused and closed in one step of the event loop (nowait: the
    socket is not waited for), so no other task can take it from the pool half closed."""
    closed = 0
    for client in clients:
        pool = client.connection_pool
        unused = idle_connections(client)
        # The pool hands out the last one it got back first: keep those, close the ones under them.
        for connection in unused[:max(0, len(unused) - keep)]:
            if connection in pool._available_connections and connection.is_connected:
                await connection.disconnect(nowait=True)
                closed += 1
    return closed


def channel_layer_clients(layer):
    """The redis.asyncio clients a channels_redis layer uses on the running event loop (one per
    Redis host; made, without a socket, if the loop had none yet); none for a layer without
    Redis (the in-memory one of single-process mode)."""
    if not hasattr(layer, "ring_size"):
        return []
    return [layer.connection(index) for index in range(layer.ring_size)]


class IdleSpells:
    """When a process that polls in a loop (the media owner) gives back what it no longer uses:
    `after` seconds into each spell of idleness (what went out as the last listeners left has
    gone by then), then every `every` seconds while it lasts (two commands that happened to
    overlap opened one more). A worker, which does not poll, does the same from its runtime's
    callbacks (streams/runtime.py)."""

    def __init__(self, after=2.0, every=60.0):
        self.after, self.every = after, every
        self._due_at = None  # None: not idle
        self._times = 0

    def due(self, idle, now):
        """Whether to give them back now, at monotonic time `now`, the process being `idle` or not:
        0 if not, else which time it is in this spell (1, 2, ...)."""
        if not idle:
            self._due_at = None
            return 0
        if self._due_at is None:
            self._due_at, self._times = now + self.after, 0
            return 0
        if now < self._due_at:
            return 0
        self._due_at = now + self.every
        self._times += 1
        return self._times
