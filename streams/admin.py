import segno
from django.contrib import admin, messages
from django.utils.html import format_html
from django.utils.safestring import mark_safe

from .ops import livestats
from .forms import StreamProfileForm
from .models import StreamProfile


@admin.register(StreamProfile)
class StreamProfileAdmin(admin.ModelAdmin):
    form = StreamProfileForm
    list_display = ["name", "slug", "enabled", "access", "source", "codec", "audio_bitrate", "channels", "listen_link"]
    list_filter = ["enabled", "codec", "source"]
    list_editable = ["enabled"]
    search_fields = ["name", "slug", "description"]
    prepopulated_fields = {"slug": ["name"]}
    fieldsets = [
        (None, {"fields": ["name", "slug", "enabled", "description"]}),
        ("Source", {"fields": ["source", "sine_frequency", "sine_frequency_right", "device_name", "channels", "sample_rate"]}),
        ("Codec", {"fields": ["codec", "audio_bitrate"]}),
        (
            "Opus",
            {
                "fields": [
                    "opus_max_average_bitrate",
                    "opus_max_playback_rate",
                    "opus_cbr",
                    "opus_inband_fec",
                    "opus_packet_loss_percent",
                    "opus_dtx",
                    "opus_application",
                    "opus_frame_ms",
                ],
                "description": "Used only when the codec is Opus.",
            },
        ),
        ("Alarms", {"fields": ["silence_alarm_dbfs", "silence_alarm_seconds", "clipping_alarm_percent"],
                    "description": "Reported in the list below, on the listeners' page, in the log and the metrics."}),
        ("Access", {"fields": ["access", "max_listeners"]}),
    ]
    actions = ["rotate_access_keys"]
    change_form_template = "admin/streams/streamprofile/change_form.html"

    def get_list_display(self, request):
        """The columns, with "Live now" read once for this page: the snapshot the event loop
        published (or, with REDIS_URL, the workers' counts and the media owner's snapshot in
        Redis), never the loop's own hubs. Rows go by the profile's primary key, as its listener
        limits do, so a renamed profile keeps its listeners. It is this request's own column:
        nothing of one request is kept on the shared ModelAdmin."""
        try:
            live = livestats.by_profile()
        except livestats.Unavailable as error:
            live = None
            messages.warning(request, f"Live numbers are not available: {error}")

        @admin.display(description="Live now")
        def live_now(profile):
            return "unknown" if live is None else livestats.describe(live.get(profile.pk))

        columns = list(self.list_display)
        columns.insert(columns.index("listen_link"), live_now)
        return columns

    @admin.display(description="Listen")
    def listen_link(self, profile):
        return format_html('<a href="{}" target="_blank">Listen</a>', profile.share_path())

    def change_view(self, request, object_id, form_url="", extra_context=None):
        """Show the link to share, as text and as a QR code for phones (drawn here, no service)."""
        profile = self.get_object(request, object_id)
        extra_context = extra_context or {}
        if profile is not None:
            url = request.build_absolute_uri(profile.share_path())
            extra_context["share_url"] = url
            extra_context["share_qr"] = mark_safe(segno.make(url, error="m").svg_inline(scale=4))
            extra_context["live_now"] = livestats.describe_profile(profile.pk)
        return super().change_view(request, object_id, form_url, extra_context)

    @admin.action(description="Rotate the secret link key (old links stop working)")
    def rotate_access_keys(self, request, queryset):
        for profile in queryset:
            profile.rotate_access_key()
            profile.save(update_fields=["access_key"])
        self.message_user(request, f"New keys for {queryset.count()} profile(s); share the new links.")

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        absent = form.absent_device()
        if absent:
            messages.warning(
                request,
                f"The device “{absent}” is not present now. The profile is saved; its listeners "
                "will hear silence until the device appears.",
            )
