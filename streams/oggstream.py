"""A stream as Ogg Opus over plain HTTP, `/stream/<slug>.ogg`, for anything that plays a URL.

The audio comes from the stream's hub, like a WebRTC listener's: for an Opus profile the very
packets the WebRTC listeners get (encoded once); for a G.711/G.722 profile one Opus variant
(`http_stream_config`), encoded once for every HTTP listener. Each response is a listener
with its own Ogg stream (streams/audio/oggopus.py), one page per packet as it comes.

The rules are the listen page's and the socket's: an unknown, switched-off or refused stream
(signed-in users only; the secret link's key as `?key=`) answers the listen page's 404; a
listener takes a place in the stream's and its address's listener limits, counted with the
WebRTC listeners (over every worker with REDIS_URL), else 503 with Retry-After, as WHEP does.
What a listener takes (its place, its hub track, its flow watch, its control channel) is
given back on every way out: the client closes, it is too slow (its buffers stay full
SLOW_CLIENT_SECONDS: dropped), the operator stops the stream (end-of-stream page), the server
shuts down (the hub ends its track), or Django never sends the response (a finalizer).
"""
import asyncio
import contextvars
import dataclasses
import logging
import secrets
import time
import weakref

from aiortc.mediastreams import MediaStreamError
from channels.layers import get_channel_layer
from django.conf import settings
from django.http import Http404, HttpResponse, StreamingHttpResponse
from django.views.decorators.http import require_http_methods

from . import groups, httpflow
from .audio.oggopus import OggOpusMuxer
from .ops.limits import Seat
from .models import StreamProfile, not_found_message
from .runtime import get_runtime, status_group

logger = logging.getLogger(__name__)

CONTENT_TYPE = "audio/ogg"
# A client whose connection takes nothing for this long, once its buffers are full (the kernel's
# and the server's: seconds of audio already), is dropped rather than buffered for.
SLOW_CLIENT_SECONDS = 2.0
RETRY_AFTER_SECONDS = 10  # no place left: when a player may try again
# The Opus variant HTTP listeners of a G.711/G.722 profile get: TCP loses nothing, so no FEC.
HTTP_OPUS_BITRATE = 64_000


def http_stream_config(config):
    """The StreamConfig whose packets an HTTP listener of a stream gets: the stream itself if it
    is Opus, else one Opus variant of it, the same for every HTTP listener."""
    if config.codec == "opus":
        return config
    return dataclasses.replace(config, codec="opus", opus_bitrate=HTTP_OPUS_BITRATE, opus_max_playback_rate=48_000,
                               opus_cbr=False, opus_fec=False, opus_packet_loss_percent=0, opus_dtx=True,
                               opus_application="audio")


PER_LISTENER_REFUSAL = ("This server encodes for each WebRTC listener (RTC_ENCODE_PER_LISTENER, a benchmark's "
                        "baseline) and serves no Ogg stream.")


def response_headers(response):
    response["Cache-Control"] = "no-cache, no-store"  # live, and the URL may carry the secret key
    response["X-Accel-Buffering"] = "no"  # nginx in front: pass each page on at once
    return response


@require_http_methods(["GET", "HEAD"])
async def ogg_stream(request, slug):
    user = await request.auser()
    key = request.GET.get("key", "")
    profile = await StreamProfile.objects.filter(slug=slug, enabled=True).afirst()
    if profile is None or profile.refusal(user, key):
        raise Http404(not_found_message(slug))  # as the listen page: nothing says which streams exist
    if request.method == "HEAD":
        return response_headers(HttpResponse(content_type=CONTENT_TYPE))
    if settings.RTC_ENCODE_PER_LISTENER and not settings.REDIS_URL:  # its hubs hand out raw frames
        return HttpResponse(PER_LISTENER_REFUSAL, status=503, content_type="text/plain; charset=utf-8")
    runtime = get_runtime()
    seat = Seat(profile.pk, request.META.get("REMOTE_ADDR", "?"))  # by the profile: its slug may be renamed
    refusal = await runtime.admission.admit(seat, profile.max_listeners, settings.RTC_MAX_LISTENERS_PER_ADDRESS)
    if refusal:
        logger.info("%s refused on %s (Ogg): %s", seat.address, profile.slug, refusal)
        response = HttpResponse(refusal, status=503, content_type="text/plain; charset=utf-8")
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response
    body = OggListener(profile, user, key, seat, runtime, request.scope)
    return response_headers(StreamingHttpResponse(body, content_type=CONTENT_TYPE))


class Holdings:
    """What one HTTP listener took, given back once by `release()`, from whichever thread
    (Django closes a response on a worker thread): the work is done on the event loop."""

    def __init__(self, loop, runtime, seat):
        self.loop = loop
        self.runtime = runtime
        self.seat = seat
        self.track = None  # the newest hub track (stopping it stops those it took over from)
        self.flow = None
        self.watcher = None
        self.released = False

    def release(self):
        try:
            here = asyncio.get_running_loop()
        except RuntimeError:
            here = None
        if here is self.loop:
            self._release_now()
        elif not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self._release_now)

    def _release_now(self):
        if self.released:
            return
        self.released = True
        if self.watcher is not None:
            self.watcher.cancel()
        if self.flow is not None:
            self.flow.close()
        if self.track is not None:
            self.track.stop()
        self.runtime.admission.left(self.seat)


class OggListener:
    """The body of one Ogg response: an async iterator of Ogg pages, with a `close()` that
    Django calls when the response is done (and a finalizer, should a response never be sent)."""

    def __init__(self, profile, user, key, seat, runtime, scope):
        self.id = secrets.token_hex(3)
        self.slug = profile.slug
        self.profile_id = profile.pk  # the stream's news comes by it (a slug may be renamed)
        self.name = f"<ogg listener {self.slug}/{self.id}>"  # logged as text: a log record must not keep it alive
        self._user = user
        self._key = key
        self._runtime = runtime
        self.wanted = http_stream_config(profile.stream_config())
        self._holdings = Holdings(asyncio.get_running_loop(), runtime, seat)
        weakref.finalize(self, self._holdings.release).atexit = False
        self._reader = self._holdings.track = runtime.hubs.subscribe_reader(self.wanted)
        self._holdings.flow = self._flow = httpflow.watch(scope)
        # In a context of its own: the request's (asgiref's thread-sensitive executor for its database
        # calls) ends with the view, and this task outlives the view.
        self._holdings.watcher = asyncio.get_running_loop().create_task(
            follow_the_profile(weakref.ref(self), self.profile_id), context=contextvars.Context())
        self.muxer = OggOpusMuxer(secrets.randbits(32), self._reader.hub.config.channels, [f"TITLE={profile.name}"])
        self._state = "headers"
        self._ended_by = None
        self._since = time.monotonic()
        logger.info("%s connecting from %s (Ogg over HTTP%s)", self.name, seat.address,
                    "" if self._flow else "; no flow control here")

    def __repr__(self):
        return self.name

    def __aiter__(self):
        return self

    async def __anext__(self):
        try:
            chunk = await self._next_chunk()
        except asyncio.CancelledError:  # Django stops the response: the client went
            self._finish("the client closed")
            raise
        except BaseException as error:
            self._finish(f"unexpected {type(error).__name__} ({str(error)[:200]})")
            raise
        if chunk is None:
            raise StopAsyncIteration
        return chunk

    def close(self):
        self._holdings.release()

    async def _next_chunk(self):
        if self._state == "headers":
            self._state = "audio"
            return self.muxer.headers()
        if self._state == "done":
            return None
        if self._flow is not None and self._flow.paused and not await self._flow.resumed(SLOW_CLIENT_SECONDS):
            if self._flow.lost:
                self._finish("the client went")
                return None
            logger.info("%s: too slow, took nothing for %g s with its buffers full; dropped", self.name,
                        SLOW_CLIENT_SECONDS)
            self._flow.abort()
            self._finish("dropped as too slow")
            return None
        try:
            packet = await self._reader.recv()
        except MediaStreamError:  # the stream ended: the operator stopped it, or the server stops
            self._finish(self._ended_by or "the stream ended")
            return self.muxer.end()
        return self.muxer.audio([(packet.pts, bytes(packet.payload))])

    def _finish(self, why):
        if self._state == "done":
            return
        self._state = "done"
        self._holdings.release()
        logger.info("%s closed after %.0f s: %s (%d packets concealed)", self.name, time.monotonic() - self._since,
                    why, self.muxer.concealed)

    def _end(self, why):
        """End the stream with an end-of-stream page, as the operator wants."""
        self._ended_by = why
        self._holdings.track.stop()

    async def apply(self, event):
        """An operator's change from the channel layer (the WebRTC listeners' group): stopped or
        deleted ends the stream; access that now refuses this listener ends it; new settings
        move it to the new stream's hub without a break (ListenerTrack.handover)."""
        if event.get("type") == "stream.stopped":
            self._end("the operator stopped the stream")
        elif event.get("type") == "stream.changed":
            await self._apply_profile_change()

    async def _apply_profile_change(self):
        profile = await StreamProfile.objects.filter(pk=self.profile_id, enabled=True).afirst()
        if profile is None or self._state == "done":
            return  # switched off or deleted: stream.stopped says so
        if profile.refusal(self._user, self._key):
            self._end("the stream's access now refuses this listener")
            return
        wanted = http_stream_config(profile.stream_config())
        if wanted != self.wanted:
            logger.info("%s: settings changed; switching to the new stream", self.name)
            self.wanted = wanted
            successor = self._runtime.hubs.subscribe_reader(wanted)
            previous, self._holdings.track = self._holdings.track, successor
            if previous.readyState != "live":  # ended meanwhile: do not keep the new stream running
                successor.stop()
                return
            previous.handover(successor)


async def follow_the_profile(listener_ref, profile_id):
    """Pass the operator's changes of the profile to a listener while it lives. It holds the listener
    only weakly, so that a response Django never sends is still collected, and gives back. Its
    channel is kept in the profile's group by streams/groups.py."""
    layer = get_channel_layer()
    keeper = groups.keeper()
    channel = None
    try:
        channel = await layer.new_channel()
        await keeper.join(channel, [status_group(profile_id)])
        while True:
            try:
                event = await layer.receive(channel)
            except groups.LAYER_ERRORS:  # Redis restarting: listen again (the keeper joins the group again)
                await asyncio.sleep(1)
                continue
            listener = listener_ref()
            if listener is None:
                return
            await listener.apply(event)
            del listener
    except asyncio.CancelledError:
        raise
    except Exception:
        logger.exception("an Ogg listener of profile %s cannot follow the profile's changes", profile_id)
    finally:
        if channel is not None:
            _leave_soon(keeper, channel)


def _leave_soon(keeper, channel):
    """Leave the group in a task of its own (a message on its way out): a cancelled watcher must
    not cut it short."""
    keeper.runtime.send_soon(keeper.leave(channel))
