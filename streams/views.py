
import asyncio
import dataclasses
import ipaddress
import threading
from urllib.parse import quote

from django.conf import settings

from django.http import Http404, HttpResponse, HttpResponseForbidden, JsonResponse
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
    """Live figures of this process, for operators, tests and `manage.py stats`: JSON, from this
    machine or for staff. A snapshot its event loop takes here and now (this view runs on it)."""
    from .runtime import get_runtime

    user = await request.auser()
    request.user = user
    if not _is_local_or_staff(request):
        return HttpResponseForbidden("Status is shown to staff and to this machine only.")
    snapshot = get_runtime().publish_snapshot()
    threads = sorted(t.name for t in threading.enumerate() if t.name.startswith("capture:"))
    loop = snapshot.loop
    return JsonResponse(
        {
            "process": snapshot.process,
            "peers": snapshot.peers,
            "connected_peers": snapshot.connected_peers,
            "hubs": [_hub_status(variant) for variant in snapshot.variants],
            "captures": [dataclasses.asdict(capture) for capture in snapshot.captures],
            "capture_threads": threads,
            "loop_lag_ms_last_minute": {"p50": loop.lag_p50_ms, "p99": loop.lag_p99_ms, "max": loop.lag_max_ms,
                                        "samples": loop.lag_samples},
            "gc_pauses_ms_last_minute": {"count": loop.gc_runs, "full": loop.gc_full_runs,
                                         "total": loop.gc_pause_total_ms, "max": loop.gc_pause_max_ms},
        }
    )


def _hub_status(variant):
    delays = variant.capture_to_send_ms
    return {
        "slug": variant.profile,
        "variant": variant.variant,
        "mode": variant.mode,
        "codec": variant.codec,
        "channels": variant.channels,
        "bitrate": variant.target_bitrate,
        "measured_bitrate": variant.bitrate,
        "listeners": variant.listeners,
        "packets_sent": variant.packets_sent,
        "bytes_sent": variant.bytes_sent,
        "late_frames": variant.late_frames,
        "dropped_packets": variant.dropped_packets,
        "packets_missed": variant.packets_missed,  # relay: gaps in what the owner published
        "state": variant.state,
        "alarm": variant.alarm,
        "restarts": variant.restarts,
        # capture-to-send p50/p99 over the last minute, frames dropped (backlog) and silence inserted
        "frames": {
            "capture_to_send_ms": None if delays is None else dict(zip(("p50", "p99", "max"), delays)),
            "frames": variant.frames,
            "dropped_frames": variant.dropped_frames,
            "silence_frames": variant.silence_frames,
            "timeline_jumps": variant.timeline_jumps,
        },
    }


async def metrics(request):
    """Prometheus metrics (streams/ops/metrics.py) for this machine and RTC_METRICS_ALLOWED; anyone
    else gets the 404 of a page that does not exist, so that scanning learns nothing here."""
    from .ops import metrics as prometheus
    from .runtime import get_runtime

    if not prometheus.allowed(request.META.get("REMOTE_ADDR", ""), settings.RTC_METRICS_ALLOWED):
        raise Http404()
    runtime = get_runtime()  # on the event loop: a process scraped first thing starts publishing
    if runtime.snapshot is None:
        runtime.publish_snapshot()
    # Read and formatted on another thread: only published snapshots (and Redis) are read there.
    body, content_type = await asyncio.to_thread(prometheus.exposition, runtime, request.headers.get("Accept"))
    return HttpResponse(body, content_type=content_type)
