"""RTC Caster settings. Every value an operator may change comes from the environment (see README)."""
import datetime

from django.core.exceptions import ImproperlyConfigured

from .env import (
    env_bool,
    env_file,
    env_host,
    env_ice_servers,
    env_int,
    env_ip_list,
    env_list,
    env_networks,
    env_redis_url,
    env_str,
    secret_key_from,
)
from .paths import code_dir, data_dir, is_release

# The code (templates, static files) and the data (database, secret key, log): the same
# checkout folder when run from git, apart in the standalone release (rtccaster_site/paths.py).
BASE_DIR = code_dir()
DATA_DIR = data_dir()

SECRET_KEY = secret_key_from("RTC_SECRET_KEY", DATA_DIR / ".secret_key")
DEBUG = env_bool("RTC_DEBUG", False)
ALLOWED_HOSTS = env_list("RTC_ALLOWED_HOSTS", ["*"])

# Where `manage.py serve` listens; 8088 as in the earlier prototype.
RTC_HOST = env_host("RTC_HOST", "0.0.0.0")
RTC_PORT = env_int("RTC_PORT", 8088, minimum=1, maximum=65535)
# HTTPS/WSS served by daphne itself: both a certificate (chain) and its private key, PEM files.
RTC_TLS_CERT = env_file("RTC_TLS_CERT")
RTC_TLS_KEY = env_file("RTC_TLS_KEY")
if bool(RTC_TLS_CERT) != bool(RTC_TLS_KEY):
    raise ImproperlyConfigured("Set both RTC_TLS_CERT and RTC_TLS_KEY (PEM files), or neither.")
# Behind a reverse proxy: trust its X-Forwarded-For/-Proto/-Port headers (only if it sets them!).
RTC_TRUSTED_PROXY = env_bool("RTC_TRUSTED_PROXY", False)
RTC_HTTPS = bool(RTC_TLS_CERT) or env_bool("RTC_BEHIND_HTTPS_PROXY", False)
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = RTC_HTTPS
if RTC_TRUSTED_PROXY:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
if RTC_HTTPS:
    # Only where Django can tell a request is HTTPS; otherwise a redirect would loop.
    SECURE_SSL_REDIRECT = bool(RTC_TLS_CERT) or RTC_TRUSTED_PROXY
    SECURE_HSTS_SECONDS = env_int("RTC_HSTS_SECONDS", 3600, minimum=0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("RTC_HSTS_INCLUDE_SUBDOMAINS", False)
    SECURE_HSTS_PRELOAD = env_bool("RTC_HSTS_PRELOAD", False)
# HSTS for subdomains and the browsers' preload list bind the operator's whole domain, maybe for
# years: that is the operator's choice (the two settings above), not a default of this app.
SILENCED_SYSTEM_CHECKS = ["security.W005", "security.W021"]
# Who may read /metrics (Prometheus) besides this machine: addresses and networks, comma-separated.
# Behind RTC_TRUSTED_PROXY a client's address is the one the proxy forwards.
RTC_METRICS_ALLOWED = env_networks("RTC_METRICS_ALLOWED")
# ICE servers given to every peer. Empty by default: no public STUN server is ever contacted.
RTC_ICE_SERVERS = env_ice_servers("RTC_ICE_SERVERS")
# Local addresses to gather ICE host candidates on (empty: every interface). When it holds
# only loopback addresses, a listener's candidates on other addresses are ignored too.
RTC_ICE_ADDRESSES = env_ip_list("RTC_ICE_ADDRESSES")
# Encoded packets a slow listener may have queued before the oldest are dropped (20 ms each; a
# stream of 10 ms frames lets a listener queue twice as many, the same time).
RTC_LISTENER_QUEUE_PACKETS = env_int("RTC_LISTENER_QUEUE_PACKETS", 10, minimum=1, maximum=500)

# Limits and timeouts for listeners (0 = no per-address limit).
RTC_MAX_LISTENERS_PER_ADDRESS = env_int("RTC_MAX_LISTENERS_PER_ADDRESS", 20, minimum=0)
# Signaling sockets one client address may hold open, with an offer or not (0 = no limit).
RTC_MAX_SOCKETS_PER_ADDRESS = env_int("RTC_MAX_SOCKETS_PER_ADDRESS", 40, minimum=0)
RTC_MAX_MESSAGES_PER_SECOND = env_int("RTC_MAX_MESSAGES_PER_SECOND", 5, minimum=1)
RTC_OFFER_TIMEOUT_SECONDS = env_int("RTC_OFFER_TIMEOUT_SECONDS", 10, minimum=1)
RTC_ICE_TIMEOUT_SECONDS = env_int("RTC_ICE_TIMEOUT_SECONDS", 15, minimum=1)
# Benchmark comparison only: let aiortc encode separately for every listener (the slow way).
RTC_ENCODE_PER_LISTENER = env_bool("RTC_ENCODE_PER_LISTENER", False)
# Ask for a higher scheduling priority for the audio path where the system allows it (streams/audio/priority.py).
RTC_AUDIO_PRIORITY = env_bool("RTC_AUDIO_PRIORITY", True)
# Seconds a device capture keeps running after its last listener left (a quick reconnect reuses it).
RTC_CAPTURE_LINGER_SECONDS = env_int("RTC_CAPTURE_LINGER_SECONDS", 3, minimum=0, maximum=3600)

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "axes",
    "streams",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "rtccaster_site.middleware.SecurityHeaders",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",  # last, as django-axes asks
]

# Admin login throttling (django-axes): after 5 failures from one address, or against one user,
# further tries are refused (429) for 15 minutes, before any password is checked; each lockout
# is logged. Attempts live in the database, which every worker shares.
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
AXES_FAILURE_LIMIT = 5
AXES_COOLOFF_TIME = datetime.timedelta(minutes=15)
AXES_LOCKOUT_PARAMETERS = ["ip_address", "username"]
AXES_RESET_ON_SUCCESS = True
AXES_SENSITIVE_PARAMETERS = ["username"]  # the log names the address; a mistyped password may stand in the username

ROOT_URLCONF = "rtccaster_site.urls"
ASGI_APPLICATION = "rtccaster_site.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": env_str("RTC_DB_PATH", str(DATA_DIR / "db.sqlite3")),
        # A file, not memory, so that a daphne started by the end-to-end tests reads the same data.
        "TEST": {"NAME": env_str("RTC_TEST_DB_PATH", str(BASE_DIR / "test-db.sqlite3"))},
        "OPTIONS": {"timeout": 20},
    }
}

# Multi-process mode: with REDIS_URL the Channels layer and the audio packets go through Redis;
# `manage.py media_owner` captures and encodes, daphne workers relay (docs/architecture.md).
REDIS_URL = env_redis_url("REDIS_URL")
if REDIS_URL:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": [REDIS_URL]}}}
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# Static files (the page's scripts and stylesheet, the admin's assets) are served by the app
# itself through WhiteNoise, so one daphne (or the release's one executable) is the whole server.
# A checkout serves them from where they are; the release from what its build collected.
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
if not is_release():
    STATICFILES_DIRS = [BASE_DIR / "static"]
    WHITENOISE_USE_FINDERS = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    # Lines that clients can provoke are held to a few of a kind a minute (rtccaster_site/logfilters.py).
    "filters": {"repeat_limit": {"()": "rtccaster_site.logfilters.RepeatLimit", "per_minute": 20}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["repeat_limit"]},
        "file": {
            # Rotated by size: the file and RTC_LOG_BACKUPS older ones, each at most RTC_LOG_MAX_MB.
            "class": "logging.handlers.RotatingFileHandler",
            "filename": env_str("RTC_LOG_FILE", str(DATA_DIR / "app.log")),
            "maxBytes": env_int("RTC_LOG_MAX_MB", 10, minimum=1, maximum=10_000) * 1024 * 1024,
            "backupCount": env_int("RTC_LOG_BACKUPS", 5, minimum=1, maximum=100),
            "formatter": "plain",
            "filters": ["repeat_limit"],
        },
    },
    "root": {"handlers": ["console", "file"], "level": "WARNING"},
    "loggers": {
        "streams": {"level": env_str("RTC_LOG_LEVEL", "INFO"), "propagate": True},
        "rtccaster_site": {"level": "INFO", "propagate": True},
    },
}
