import secrets

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.urls import reverse

from .audio.config import OPUS_FRAME_MS_CHOICES, StreamConfig

OPUS_MIN_BITRATE = 6_000
OPUS_MAX_BITRATE = 510_000
# G.711 and G.722 always send 64 kb/s of payload; b=AS must leave room for it.
FIXED_RATE_CODEC_BITRATE = 64_000


def new_access_key():
    return secrets.token_urlsafe(16)


class StreamProfile(models.Model):
    class Source(models.TextChoices):
        SINE = "sine", "Test sine"
        DEVICE = "device", "Audio device"

    class Codec(models.TextChoices):
        OPUS = "opus", "Opus"
        PCMU = "pcmu", "G.711 µ-law (PCMU)"
        PCMA = "pcma", "G.711 A-law (PCMA)"
        G722 = "g722", "G.722"

    class Access(models.TextChoices):
        PUBLIC = "public", "Public: anyone with the address"
        LOGGED_IN = "login", "Logged-in users"
        SECRET_LINK = "link", "Secret link (…/listen/<slug>/?key=…)"

    class OpusApplication(models.TextChoices):
        AUDIO = "audio", "Music (full-band audio)"
        VOIP = "voip", "Voice"

    CHANNEL_CHOICES = [(1, "Mono"), (2, "Stereo")]
    SAMPLE_RATE_CHOICES = [(48_000, "48,000 Hz")]
    PLAYBACK_RATE_CHOICES = [(rate, f"{rate:,} Hz") for rate in (8_000, 12_000, 16_000, 24_000, 48_000)]
    OPUS_FRAME_CHOICES = [(ms, f"{ms} ms") for ms in OPUS_FRAME_MS_CHOICES]

    name = models.CharField(max_length=100)
    # Forms and admin show help_text as HTML: written escaped, or "<slug>" would vanish as a tag.
    slug = models.SlugField(unique=True, help_text="Used in the listener URL: /listen/&lt;slug&gt;/")
    enabled = models.BooleanField(default=True)
    description = models.TextField(blank=True)

    source = models.CharField(max_length=10, choices=Source.choices, default=Source.SINE)
    sine_frequency = models.PositiveIntegerField(
        default=440,
        validators=[MinValueValidator(20), MaxValueValidator(20_000)],
        help_text="Hz, 20–20,000. The left channel's tone, and the right's unless set below.",
    )
    sine_frequency_right = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(20), MaxValueValidator(20_000)],
        help_text="Hz. Optional: a different tone on the right channel of a stereo profile.",
    )
    device_name = models.CharField(max_length=255, blank=True, help_text="The capture device's stable name.")
    channels = models.PositiveSmallIntegerField(choices=CHANNEL_CHOICES, default=2)
    sample_rate = models.PositiveIntegerField(choices=SAMPLE_RATE_CHOICES, default=48_000)

    codec = models.CharField(max_length=10, choices=Codec.choices, default=Codec.OPUS)
    audio_bitrate = models.PositiveIntegerField(
        default=96_000, help_text="bit/s, announced as b=AS in the answer; Opus encodes at it unless overridden below."
    )

    opus_max_average_bitrate = models.PositiveIntegerField(
        null=True, blank=True, help_text="bit/s. Blank: use the audio bitrate."
    )
    opus_max_playback_rate = models.PositiveIntegerField(choices=PLAYBACK_RATE_CHOICES, default=48_000)
    opus_cbr = models.BooleanField("Opus CBR", default=False, help_text="Constant bitrate instead of variable.")
    opus_inband_fec = models.BooleanField("Opus in-band FEC", default=True)
    opus_packet_loss_percent = models.PositiveSmallIntegerField(
        default=10,
        validators=[MaxValueValidator(100)],
        help_text="Expected packet loss, %. In-band FEC only acts when this is above 0.",
    )
    opus_dtx = models.BooleanField("Opus DTX", default=True, help_text="Send no packets during digital silence.")
    opus_application = models.CharField(max_length=10, choices=OpusApplication.choices, default=OpusApplication.AUDIO)
    opus_frame_ms = models.PositiveSmallIntegerField(
        "Opus frame", choices=OPUS_FRAME_CHOICES, default=20,
        help_text="The audio in each packet. 10 ms: a sample waits half as long for its packet to fill, "
                  "and each listener gets twice the packets (100 a second).",
    )

    silence_alarm_dbfs = models.SmallIntegerField(
        "Silence below (dBFS)", default=-60, validators=[MinValueValidator(-100), MaxValueValidator(0)],
        help_text="A source quieter than this for the time below is reported as silent.",
    )
    silence_alarm_seconds = models.PositiveSmallIntegerField(
        "Silent for (s)", default=10, validators=[MaxValueValidator(3600)], help_text="0 turns the silence alarm off.",
    )
    clipping_alarm_percent = models.FloatField(
        "Clipping above (%)", default=0.1, validators=[MinValueValidator(0), MaxValueValidator(100)],
        help_text="Share of the samples of a second at full scale that counts as clipping. 0 turns it off.",
    )

    access = models.CharField(max_length=10, choices=Access.choices, default=Access.PUBLIC)
    access_key = models.CharField(
        max_length=64, default=new_access_key, help_text="The key of the secret link. Rotate it to revoke old links."
    )
    max_listeners = models.PositiveIntegerField(
        null=True, blank=True, help_text="Listeners this stream takes at once. Blank: no limit."
    )

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name

    def clean(self):
        errors = {}
        if self.source == self.Source.DEVICE and not self.device_name.strip():
            errors["device_name"] = "A device source needs a device: pick one, or choose the test sine."
        if self.codec == self.Codec.OPUS:
            self._check_opus_bitrates(errors)
        else:
            self._check_fixed_rate_codec(errors)
        if errors:
            raise ValidationError(errors)

    def _check_opus_bitrates(self, errors):
        limits = f"Opus works between {OPUS_MIN_BITRATE:,} and {OPUS_MAX_BITRATE:,} bit/s (6–510 kb/s)."
        if not OPUS_MIN_BITRATE <= self.audio_bitrate <= OPUS_MAX_BITRATE:
            errors["audio_bitrate"] = limits
        maximum = self.opus_max_average_bitrate
        if maximum is not None and not OPUS_MIN_BITRATE <= maximum <= OPUS_MAX_BITRATE:
            errors["opus_max_average_bitrate"] = limits

    def _check_fixed_rate_codec(self, errors):
        codec = self.get_codec_display()
        if self.channels != 1:
            errors["channels"] = f"{codec} is mono only: choose Mono, or use Opus for stereo."
        if not FIXED_RATE_CODEC_BITRATE <= self.audio_bitrate <= OPUS_MAX_BITRATE:
            errors["audio_bitrate"] = (
                f"{codec} always sends {FIXED_RATE_CODEC_BITRATE:,} bit/s; the audio bitrate must be at least that."
            )
        defaults = {field.name: field.get_default() for field in self._meta.fields if field.name.startswith("opus_")}
        changed = [name for name, default in defaults.items() if getattr(self, name) != default]
        for name in changed:
            errors[name] = f"This is an Opus setting; {codec} does not use it. Set it back to its default or choose Opus."

    def get_absolute_url(self):
        return reverse("streams:listen", args=[self.slug])

    def share_path(self):
        """The path to give listeners: with the key for a secret-link profile."""
        path = self.get_absolute_url()
        return f"{path}?key={self.access_key}" if self.access == self.Access.SECRET_LINK else path

    def refusal(self, user, key):
        """Why this user (with this ?key=) may not listen, as a sentence, or None if they may."""
        if self.access == self.Access.LOGGED_IN and not (user and user.is_authenticated):
            return "This stream is for signed-in users: log in first."
        if self.access == self.Access.SECRET_LINK and not secrets.compare_digest(str(key or ""), self.access_key):
            return "This stream needs its secret link; the key is missing or no longer valid."
        return None

    def rotate_access_key(self):
        self.access_key = new_access_key()

    @property
    def opus_bitrate(self):
        """What the Opus encoder targets: the max average bitrate if set, else the audio bitrate."""
        return self.opus_max_average_bitrate or self.audio_bitrate

    def answer_fmtp(self):
        """The a=fmtp parameters this profile puts in an answer (none for G.711/G.722)."""
        return self.stream_config().answer_fmtp()

    def answer_bandwidth_kbps(self):
        return max(1, round(self.audio_bitrate / 1000))

    def sine_frequencies(self):
        left = float(self.sine_frequency)
        right = float(self.sine_frequency_right or self.sine_frequency)
        return (left, right) if self.channels == 2 else (left,)

    def stream_config(self):
        return StreamConfig(
            slug=self.slug,
            profile_id=self.pk,
            source=self.source,
            channels=self.channels,
            codec=self.codec,
            sine_frequencies=self.sine_frequencies(),
            device_name=self.device_name,
            sample_rate=self.sample_rate,
            opus_bitrate=self.opus_bitrate,
            opus_max_playback_rate=self.opus_max_playback_rate,
            opus_cbr=self.opus_cbr,
            opus_fec=self.opus_inband_fec,
            opus_packet_loss_percent=self.opus_packet_loss_percent,
            opus_dtx=self.opus_dtx,
            opus_application=self.opus_application,
            frame_ms=self.opus_frame_ms,
            silence_dbfs=self.silence_alarm_dbfs,
            silence_seconds=self.silence_alarm_seconds,
            clipping_percent=self.clipping_alarm_percent,
        )


def not_found_message(slug):
    """What an unknown, switched-off or forbidden stream answers alike (page and socket)."""
    return (f"There is no stream called “{slug}” that you may listen to. "
            "A stream for signed-in users needs you to sign in first.")
