"""A TCP forwarder on 127.0.0.1 in the test's event loop, between a client and a server (a Redis),
that can stop carrying bytes both ways while keeping every connection open: for the client, the
server falls silent, as behind a network that drops everything (`cut()`), until `mend()`."""
import asyncio


class TcpProxy:
    def __init__(self, target_port, target_host="127.0.0.1"):
        self.target = (target_host, target_port)
        self.port = None
        self.cut_off = False
        self._server = None
        self._writers = set()

    def url(self, db=0):
        return f"redis://127.0.0.1:{self.port}/{db}"

    async def start(self):
        self._server = await asyncio.start_server(self._connected, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def cut(self):
        self.cut_off = True

    def mend(self):
        self.cut_off = False

    async def _connected(self, client_reader, client_writer):
        try:
            server_reader, server_writer = await asyncio.open_connection(*self.target)
        except OSError:
            client_writer.close()
            return
        self._writers |= {client_writer, server_writer}
        await asyncio.gather(self._pump(client_reader, server_writer), self._pump(server_reader, client_writer),
                             return_exceptions=True)
        for writer in (client_writer, server_writer):
            writer.close()
            self._writers.discard(writer)

    async def _pump(self, reader, writer):
        while data := await reader.read(65536):
            if not self.cut_off:  # cut: what is sent is lost, as on a dead link
                writer.write(data)
                await writer.drain()
        writer.close()

    async def close(self):
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        await self._server.wait_closed()
