"""Read settings from the environment, failing loudly on values that make no sense.

Each helper takes the variable's name, its default and (for tests) the mapping
to read from. A bad value raises ImproperlyConfigured naming the variable and
what it accepts, so a typo stops the server at start instead of misbehaving.
"""
import ipaddress
import json
import os
import secrets
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _raw(name, environ):
    environ = os.environ if environ is None else environ
    value = environ.get(name)
    return None if value is None else value.strip()


def env_bool(name, default=False, environ=None):
    value = _raw(name, environ)
    if value is None:
        return default
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name}={value!r} is not a boolean: use one of 1/0, true/false, yes/no, on/off.")


def env_int(name, default, minimum=None, maximum=None, environ=None):
    value = _raw(name, environ)
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={value!r} is not a whole number.") from None
    if (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
        raise ImproperlyConfigured(f"{name}={number} is out of range: it must be between {minimum} and {maximum}.")
    return number


def env_str(name, default, environ=None):
    value = _raw(name, environ)
    return default if value is None or value == "" else value


def env_list(name, default, environ=None):
    """A comma-separated list; empty items are dropped."""
    value = _raw(name, environ)
    if value is None:
        return list(default)
    return [item.strip() for item in value.split(",") if item.strip()]


def env_ip_list(name, environ=None):
    """A comma-separated list of IP addresses; empty means "no restriction"."""
    addresses = env_list(name, [], environ)
    for address in addresses:
        try:
            ipaddress.ip_address(address)
        except ValueError:
            raise ImproperlyConfigured(f"{name}: {address!r} is not an IP address.") from None
    return addresses


def env_networks(name, environ=None):
    """A comma-separated list of IP addresses and networks (10.0.0.5, 10.0.0.0/8, fd00::/8), as
    ipaddress networks; empty by default. A network with host bits set (10.0.0.1/8) is refused:
    it is more likely a typo than the network it would mean."""
    networks = []
    for item in env_list(name, [], environ):
        try:
            networks.append(ipaddress.ip_network(item))
        except ValueError:
            try:
                meant = ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ImproperlyConfigured(
                    f"{name}: {item!r} is not an IP address or network (e.g. 10.0.0.5 or 10.0.0.0/8)."
                ) from None
            raise ImproperlyConfigured(f"{name}: {item!r} has host bits set; did you mean {meant}?") from None
    return networks


def env_host(name, default, environ=None):
    value = env_str(name, default, environ)
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={value!r} is not an IP address to listen on (e.g. 0.0.0.0 or 127.0.0.1).") from None
    return value


def env_ice_servers(name, environ=None):
    """A JSON list of RTCIceServer objects: [{"urls": "stun:host:3478"}, ...]."""
    value = _raw(name, environ)
    if value is None or value == "":
        return []
    try:
        servers = json.loads(value)
    except json.JSONDecodeError as error:
        raise ImproperlyConfigured(f"{name} is not valid JSON ({error.msg} at position {error.pos}).") from None
    if not isinstance(servers, list):
        raise ImproperlyConfigured(f"{name} must be a JSON list of ICE server objects.")
    allowed_keys = {"urls", "username", "credential"}
    for server in servers:
        if not isinstance(server, dict) or "urls" not in server:
            raise ImproperlyConfigured(f'{name}: every entry needs "urls", e.g. {{"urls": "stun:stun.example.org:3478"}}.')
        unknown = set(server) - allowed_keys
        if unknown:
            raise ImproperlyConfigured(f"{name}: unknown keys {sorted(unknown)}; allowed are {sorted(allowed_keys)}.")
        urls = server["urls"] if isinstance(server["urls"], list) else [server["urls"]]
        for url in urls:
            if not isinstance(url, str) or not url.split(":", 1)[0] in {"stun", "stuns", "turn", "turns"}:
                raise ImproperlyConfigured(f"{name}: {url!r} is not a stun:, stuns:, turn: or turns: URL.")
    return servers


def env_redis_url(name, environ=None):
    """A Redis URL (redis://, rediss:// or unix://), or "" when unset."""
    value = _raw(name, environ) or ""
    if value and not value.startswith(("redis://", "rediss://", "unix://")):
        raise ImproperlyConfigured(
            f"{name}={value!r} is not a Redis URL: use redis://host:port/db, rediss://... or unix:///path."
        )
    return value


def secret_key_from(name, key_file, environ=None):
    """RTC_SECRET_KEY if set, else a key generated once and kept in key_file."""
    value = _raw(name, environ)
    if value:
        return value
    path = Path(key_file)
    if path.exists():
        return path.read_text().strip()
    key = secrets.token_urlsafe(50)
    path.write_text(key + "\n")
    path.chmod(0o600)
    return key


def env_file(name, environ=None):
    """A path to a file that must exist, or None when unset."""
    value = _raw(name, environ)
    if not value:
        return None
    if not Path(value).is_file():
        raise ImproperlyConfigured(f"{name}={value!r}: no such file.")
    return value
