from django.apps import AppConfig


class StreamsConfig(AppConfig):
    name = "streams"
    verbose_name = "Streams"

    def ready(self):
        from django.conf import settings

        from . import signals  # noqa: F401  (signals connects the receivers)
        from .webrtc import rtcinternals, rtpclock, rtphistory
        from .webrtc.ice import expire_consent_like_rfc_7675, restrict_host_addresses

        rtcinternals.check()  # fails loudly, naming what moved, on an aiortc/aioice it was not written for
        restrict_host_addresses(settings.RTC_ICE_ADDRESSES)
        expire_consent_like_rfc_7675()
        rtpclock.install()
        rtphistory.keep_no_rtp_history()
