"""Start RTC Caster under daphne and say where to open it."""
import asyncio
import logging

import ifaddr
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from streams.audio import priority

logger = logging.getLogger("rtccaster_site.serve")


def lan_addresses():
    """IPv4 addresses of this machine other than loopback: what a phone on the same network can reach."""
    found = []
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            if isinstance(ip.ip, str) and not ip.ip.startswith("127."):
                found.append(ip.ip)
    return found


def endpoint_escape(value):
    """Escape a value for a Twisted endpoint string, where ':' separates fields."""
    return str(value).replace("\\", "\\\\").replace(":", "\\:")


class Command(BaseCommand):
    help = "Serve RTC Caster (pages, admin, signaling, audio) with daphne."

    def add_arguments(self, parser):
        parser.add_argument("--host", default=None, help="address to listen on (default: RTC_HOST, 0.0.0.0)")
        parser.add_argument("--port", type=int, default=None, help="port (default: RTC_PORT, 8088)")
        parser.add_argument("--fd", type=int, default=None,
                            help="serve on this already-listening socket (a supervisor's shared socket; "
                                 "--host/--port then only name it in the log)")

    def handle(self, *args, host=None, port=None, fd=None, **options):
        host = host or settings.RTC_HOST
        port = port or settings.RTC_PORT
        if settings.RTC_AUDIO_PRIORITY:
            logger.info("audio priority: %s", priority.raise_process_priority())
        server = self.build_server(host, port, fd)
        self.close_streams_on_shutdown()
        self.announce(host, port)
        server.run()

    def build_server(self, host, port, fd=None):
        # daphne.server installs Twisted's asyncio reactor when imported: import it before the reactor.
        from daphne.endpoints import build_endpoint_description_strings

        from rtccaster_site.asgi import application

        if fd is not None:
            if settings.RTC_TLS_CERT:
                raise CommandError("TLS on a shared socket is not supported: terminate HTTPS in the reverse proxy.")
            if ":" in host:
                raise CommandError("A shared socket must be IPv4 here (Twisted adopts it as AF_INET).")
            endpoints = build_endpoint_description_strings(file_descriptor=fd)
        elif settings.RTC_TLS_CERT:
            endpoints = [
                f"ssl:port={port}:interface={endpoint_escape(host)}"
                f":privateKey={endpoint_escape(settings.RTC_TLS_KEY)}:certKey={endpoint_escape(settings.RTC_TLS_CERT)}"
            ]
        else:
            endpoints = build_endpoint_description_strings(host=host, port=port)
        proxy_headers = {}
        if settings.RTC_TRUSTED_PROXY:
            proxy_headers = {
                "proxy_forwarded_address_header": "X-Forwarded-For",
                "proxy_forwarded_port_header": "X-Forwarded-Port",
                "proxy_forwarded_proto_header": "X-Forwarded-Proto",
            }
        from rtccaster_site.httpguard import GuardedServer
        from streams.consumers import MAX_MESSAGE_BYTES

        return GuardedServer(
            application=application,
            endpoints=endpoints,
            websocket_handshake_timeout=10,
            # Signaling messages are small: a larger one is closed by daphne with 1009.
            websocket_max_message_size=MAX_MESSAGE_BYTES,
            **proxy_headers,
        )

    def close_streams_on_shutdown(self):
        """The runtime lives from its first use to here. Twisted stops daphne's loop without
        cancelling what is left on it, so the runtime is closed here, once, on that loop."""
        from twisted.internet import defer, reactor

        from streams.runtime import close_runtime

        def close_streams():
            return defer.Deferred.fromFuture(asyncio.ensure_future(close_runtime()))

        reactor.addSystemEventTrigger("before", "shutdown", close_streams)

    def announce(self, host, port):
        hosts = ["127.0.0.1", *lan_addresses()] if host in ("0.0.0.0", "::") else [host]
        scheme = "https" if settings.RTC_TLS_CERT else "http"
        logger.info("RTC Caster listening on %s:%d (%s)", host, port, scheme)
        for address in hosts:
            logger.info("  open %s://%s:%d/  (admin: %s://%s:%d/admin/)", scheme, address, port, scheme, address, port)
        if settings.RTC_ICE_ADDRESSES:
            logger.info("ICE host candidates limited to %s", ", ".join(settings.RTC_ICE_ADDRESSES))
        if "*" in settings.ALLOWED_HOSTS:
            logger.warning("RTC_ALLOWED_HOSTS is '*': a page on any site may open signaling sockets here. "
                           "On a network, set it to the host names listeners use (e.g. radio.example.org).")
