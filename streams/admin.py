from django.contrib import admin, messages
from django.utils.html import format_html

from .forms import StreamProfileForm
from .models import StreamProfile


@admin.register(StreamProfile)
class StreamProfileAdmin(admin.ModelAdmin):
    form = StreamProfileForm
    list_display = ["name", "slug", "enabled", "source", "codec", "audio_bitrate", "channels", "listen_link"]
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
                ],
                "description": "Used only when the codec is Opus.",
            },
        ),
        ("Access", {"fields": ["max_listeners"]}),
    ]

    @admin.display(description="Listen")
    def listen_link(self, profile):
        return format_html('<a href="{}" target="_blank">Listen</a>', profile.get_absolute_url())

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        absent = form.absent_device()
        if absent:
            messages.warning(
                request,
                f"The device “{absent}” is not present now. The profile is saved; its listeners "
                "will hear silence until the device appears.",
            )
