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
from .runtime import status_group

logger = logging.getLogger(__name__)
_sending = set()  # sends started from async code, kept until done (a bare task may be collected)


def tell_listeners(profile, event):
    """Once the change is committed: listeners' consumers reload the profile from the database,
    and before the commit another connection still reads the old one. A channel layer that
    does not answer is logged; the save stands."""
    profile_id, slug = profile.pk, profile.slug  # now: a deleted instance loses its pk after the signal
    transaction.on_commit(lambda: _send(profile_id, slug, event), robust=True)


def _send(profile_id, slug, event):
    group_send = get_channel_layer().group_send
    try:
        loop = asyncio.get_running_loop()  # saved from async code: send without blocking the loop
    except RuntimeError:
        try:
            async_to_sync(group_send)(status_group(profile_id), event)
        except Exception as error:  # e.g. Redis down: the operator's save must not fail for it
            logger.warning("could not tell the listeners of %s about %s (%s)", slug, event["type"], error)
    else:
        task = loop.create_task(group_send(status_group(profile_id), event))
        _sending.add(task)
        task.add_done_callback(_sending.discard)


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
