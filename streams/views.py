
import ipaddress
import threading
from urllib.parse import quote

from django.conf import settings

from django.http import Http404, HttpResponseForbidden, JsonResponse
from django.shortcuts import render

from .models import StreamProfile, not_found_message


def index(request):
    """The streams this visitor may hear: public ones, and login-only ones once signed in. A
    secret-link stream is never listed; its link is its way in."""
    profiles = [profile for profile in StreamProfile.objects.filter(enabled=True)
                if profile.refusal(request.user, key="") is None]
    return render(request, "streams/index.html", {"profiles": profiles})


def listen(request, slug):
    """A stream that is unknown, switched off, or not for this visitor answers alike: 404, naming
    nothing but the slug asked for, so nobody learns which protected streams exist."""
    key = request.GET.get("key", "")
    profile = StreamProfile.objects.filter(slug=slug, enabled=True).first()
    if profile is None or profile.refusal(request.user, key):
        raise Http404(not_found_message(slug))
    ws_path = f"/ws/listen/{profile.slug}/" + (f"?key={quote(key)}" if key else "")
    listener_config = {"wsPath": ws_path, "iceServers": settings.RTC_ICE_SERVERS}
    response = render(request, "streams/listen.html", {"profile": profile, "listener_config": listener_config})
    if key:
        response["Cache-Control"] = "no-store"  # the page carries the secret key
    return response


def _is_local_or_staff(request):
    user = getattr(request, "user", None)
    try:
        local = ipaddress.ip_address(request.META.get("REMOTE_ADDR", "")).is_loopback
    except ValueError:
        local = False
    return local or bool(user and user.is_staff)


async def status(request):
    """Live counts of this process, for operators and tests: JSON, from this machine or for staff."""
    from .runtime import get_runtime

    user = await request.auser()
    request.user = user
    if not _is_local_or_staff(request):
        return HttpResponseForbidden("Status is shown to staff and to this machine only.")
    runtime = get_runtime()
    hubs = [
        {
            "slug": hub.config.slug,
            "mode": hub.mode,
            "codec": hub.config.codec,
            "channels": hub.config.channels,
            "bitrate": hub.config.opus_bitrate if hub.config.codec == "opus" else 64_000,
            "measured_bitrate": hub.bitrate,
            "listeners": hub.listener_count,
            "packets_sent": hub.packets_sent,
            "late_frames": hub.late_frames,
            "dropped_packets": hub.dropped_packets,
            "packets_missed": hub.packets_missed,  # relay: gaps in what the owner published
            # capture-to-send p50/p99 over the last minute, frames dropped (backlog) and silence inserted
            "frames": hub.timing.summary(),
        }
        for hub in runtime.hubs.hubs()
    ]
    captures = [
        {"device": c.device_name, "state": c.state, "readers": c.reader_count, "thread": c.thread.name,
         "priority": c.priority}
        for c in runtime.captures.captures()
    ]
    threads = sorted(t.name for t in threading.enumerate() if t.name.startswith("capture:"))
    return JsonResponse(
        {
            "peers": len(runtime.peers),
            "connected_peers": sum(1 for peer in runtime.peers if peer.pc.connectionState == "connected"),
            "hubs": hubs,
            "captures": captures,
            "capture_threads": threads,
            "loop_lag_ms_last_minute": runtime.loop_lag.last_minute,
            "gc_pauses_ms_last_minute": runtime.loop_lag.gc_last_minute,
        }
    )
