"""A tiny STUN server on 127.0.0.1 for tests: answers Binding requests with a mapped address
of our choosing, so a peer that uses it shows a server-reflexive ("srflx") candidate."""
import asyncio
import threading

from aioice import stun


class StunResponder(asyncio.DatagramProtocol):
    def __init__(self, mapped_host):
        self.mapped_host = mapped_host
        self.requests = 0

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        try:
            request = stun.parse_message(data)
        except ValueError:
            return
        if request.message_method != stun.Method.BINDING or request.message_class != stun.Class.REQUEST:
            return
        self.requests += 1
        response = stun.Message(
            message_method=stun.Method.BINDING,
            message_class=stun.Class.RESPONSE,
            transaction_id=request.transaction_id,
        )
        response.attributes["XOR-MAPPED-ADDRESS"] = (self.mapped_host, addr[1])
        self.transport.sendto(bytes(response), addr)


class StunServer(threading.Thread):
    """Runs the responder on its own event loop; `port` and `responder.requests` for the test."""

    def __init__(self, mapped_host="127.0.0.5"):
        super().__init__(daemon=True)
        self.loop = asyncio.new_event_loop()
        self.responder = StunResponder(mapped_host)
        self.ready = threading.Event()
        self.port = None

    def run(self):
        asyncio.set_event_loop(self.loop)
        transport, _ = self.loop.run_until_complete(
            self.loop.create_datagram_endpoint(lambda: self.responder, local_addr=("127.0.0.1", 0))
        )
        self.port = transport.get_extra_info("sockname")[1]
        self.ready.set()
        self.loop.run_forever()
        transport.close()

    def __enter__(self):
        self.start()
        self.ready.wait(5)
        return self

    def __exit__(self, *exc):
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.join(5)
