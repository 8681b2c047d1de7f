import json

from django.conf import settings
from django.http import Http404
from django.shortcuts import render

from .models import StreamProfile


def index(request):
    profiles = StreamProfile.objects.filter(enabled=True)
    return render(request, "streams/index.html", {"profiles": profiles})


def listen(request, slug):
    profile = StreamProfile.objects.filter(slug=slug).first()
    if profile is None:
        raise Http404(f"There is no stream called “{slug}”.")
    if not profile.enabled:
        raise Http404(f"The stream “{profile.name}” is switched off.")
    context = {"profile": profile, "ice_servers_json": json.dumps(settings.RTC_ICE_SERVERS)}
    return render(request, "streams/listen.html", context)
