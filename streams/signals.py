"""Tell live listeners when an operator changes their stream, switches it off or deletes it.

Listeners are addressed by the profile's primary key (runtime.status_group), so a renamed slug
reaches them too: they reload the profile by its key and move to the renamed stream."""
import asyncio
import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from .models import StreamProfile
from .runtime import get_runtime, status_group

logger = logging.getLogger(__name__)


def tell_listeners(profile, event):
    """Once the change is committed: listeners' consumers reload the profile from the database,
    and before the commit another connection still reads the old one. A channel layer that
    does not answer is logged; the save stands."""
    profile_id, slug = profile.pk, profile.slug  # now: a deleted instance loses its pk after the signal
    transaction.on_commit(lambda: _send(profile_id, slug, event), robust=True)


def _send(profile_id, slug, event):
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        async_to_sync(_tell)(profile_id, slug, event)
    else:  # saved from async code: send without blocking the loop, as the runtime's own messages go
        get_runtime().send_soon(_tell(profile_id, slug, event))


async def _tell(profile_id, slug, event):
    try:
        await get_channel_layer().group_send(status_group(profile_id), event)
    except Exception as error:  # e.g. Redis down: the operator's save must not fail for it
        logger.warning("could not tell the listeners of %s about %s (%s)", slug, event["type"], error)


def stop_listeners(profile):
    tell_listeners(profile, {"type": "stream.stopped", "message": "The operator stopped this stream."})


@receiver(post_save, sender=StreamProfile)
def profile_saved(sender, instance, **kwargs):
    if not instance.enabled:
        stop_listeners(instance)
    else:  # each listener's consumer reloads the profile and applies what changed for it (a new slug too)
        tell_listeners(instance, {"type": "stream.changed"})


@receiver(post_delete, sender=StreamProfile)
def profile_deleted(sender, instance, **kwargs):
    stop_listeners(instance)
