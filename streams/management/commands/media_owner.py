"""Run the media owner of multi-process mode: capture and encode once, for every daphne worker."""
import asyncio
import logging
import os
import signal
import socket

from channels.layers import get_channel_layer
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from streams.audio import priority
from streams.ops import redispools
from streams.relay.owner import MediaOwner
from streams.runtime import status_group

logger = logging.getLogger("streams.relay.owner")


async def announce_to_listeners(profile_id, state, message):
    event = {"type": "stream.status", "state": state, "message": message}
    await get_channel_layer().group_send(status_group(profile_id), event)


class Command(BaseCommand):
    help = "Capture and encode every stream that workers want, and publish the packets through Redis (needs REDIS_URL)."

    def handle(self, *args, **options):
        if not settings.REDIS_URL:
            raise CommandError("REDIS_URL is not set: the media owner feeds daphne workers through Redis.")
        if settings.RTC_AUDIO_PRIORITY:
            logger.info("audio priority: %s", priority.raise_process_priority())
        asyncio.run(self.run())

    async def run(self):
        pending = set()

        def announce(profile_id, state, message):
            task = asyncio.get_running_loop().create_task(announce_to_listeners(profile_id, state, message))
            pending.add(task)
            task.add_done_callback(pending.discard)

        name = f"{socket.gethostname()}:{os.getpid()}"
        owner = MediaOwner(settings.REDIS_URL, announce, settings.RTC_CAPTURE_LINGER_SECONDS, name=name,
                           announce_clients=lambda: redispools.channel_layer_clients(get_channel_layer()))
        runner = asyncio.create_task(owner.run())
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, runner.cancel)
        logger.info("media owner %s started (lock token %s); waiting for the lock on %s", name, owner.token,
                    settings.REDIS_URL)
        try:
            await runner
        except asyncio.CancelledError:
            pass
        finally:
            await owner.close()
            logger.info("media owner %s stopped", name)
