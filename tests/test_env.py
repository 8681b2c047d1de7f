import json

import pytest
from django.core.exceptions import ImproperlyConfigured

from rtccaster_site import env


@pytest.mark.parametrize("value, expected", [("1", True), ("yes", True), ("ON", True), ("0", False), ("off", False), ("", False)])
def test_env_bool_accepts_the_usual_spellings(value, expected):
    assert env.env_bool("RTC_DEBUG", environ={"RTC_DEBUG": value}) is expected


def test_env_bool_rejects_maybe():
    with pytest.raises(ImproperlyConfigured, match="RTC_DEBUG='maybe' is not a boolean"):
        env.env_bool("RTC_DEBUG", environ={"RTC_DEBUG": "maybe"})


def test_env_bool_uses_the_default_when_unset():
    assert env.env_bool("RTC_DEBUG", True, environ={}) is True


def test_env_int_rejects_words_and_out_of_range_ports():
    with pytest.raises(ImproperlyConfigured, match="not a whole number"):
        env.env_int("RTC_PORT", 8088, 1, 65535, environ={"RTC_PORT": "eighty"})
    with pytest.raises(ImproperlyConfigured, match="between 1 and 65535"):
        env.env_int("RTC_PORT", 8088, 1, 65535, environ={"RTC_PORT": "70000"})
    assert env.env_int("RTC_PORT", 8088, 1, 65535, environ={}) == 8088
    assert env.env_int("RTC_PORT", 8088, 1, 65535, environ={"RTC_PORT": "9000"}) == 9000


def test_env_host_rejects_a_hostname():
    with pytest.raises(ImproperlyConfigured, match="RTC_HOST='localhost' is not an IP address"):
        env.env_host("RTC_HOST", "0.0.0.0", environ={"RTC_HOST": "localhost"})
    assert env.env_host("RTC_HOST", "0.0.0.0", environ={}) == "0.0.0.0"


def test_env_list_splits_on_commas():
    assert env.env_list("RTC_ALLOWED_HOSTS", ["*"], environ={"RTC_ALLOWED_HOSTS": "a.example, b.example,"}) == [
        "a.example",
        "b.example",
    ]
    assert env.env_list("RTC_ALLOWED_HOSTS", ["*"], environ={}) == ["*"]


def test_env_ip_list_rejects_a_name():
    assert env.env_ip_list("RTC_ICE_ADDRESSES", environ={"RTC_ICE_ADDRESSES": "127.0.0.1,::1"}) == ["127.0.0.1", "::1"]
    with pytest.raises(ImproperlyConfigured, match="'lo' is not an IP address"):
        env.env_ip_list("RTC_ICE_ADDRESSES", environ={"RTC_ICE_ADDRESSES": "lo"})


def test_ice_servers_default_to_none_so_no_public_stun_is_contacted():
    assert env.env_ice_servers("RTC_ICE_SERVERS", environ={}) == []


def test_ice_servers_accept_stun_and_turn():
    servers = [{"urls": "stun:stun.example.org:3478"}, {"urls": ["turn:turn.example.org"], "username": "u", "credential": "p"}]
    assert env.env_ice_servers("RTC_ICE_SERVERS", environ={"RTC_ICE_SERVERS": json.dumps(servers)}) == servers


@pytest.mark.parametrize(
    "value, message",
    [
        ("[{", "not valid JSON"),
        ('{"urls": "stun:x"}', "must be a JSON list"),
        ('[{"url": "stun:x"}]', 'needs "urls"'),
        ('[{"urls": "http://x"}]', "is not a stun:"),
        ('[{"urls": "stun:x", "password": "p"}]', "unknown keys"),
    ],
)
def test_ice_servers_reject_bad_values(value, message):
    with pytest.raises(ImproperlyConfigured, match=message):
        env.env_ice_servers("RTC_ICE_SERVERS", environ={"RTC_ICE_SERVERS": value})


def test_secret_key_is_generated_once_and_kept(tmp_path):
    key_file = tmp_path / "key"
    first = env.secret_key_from("RTC_SECRET_KEY", key_file, environ={})
    assert len(first) >= 50
    assert env.secret_key_from("RTC_SECRET_KEY", key_file, environ={}) == first
    assert env.secret_key_from("RTC_SECRET_KEY", key_file, environ={"RTC_SECRET_KEY": "set"}) == "set"
