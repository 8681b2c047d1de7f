"""How ICE behaves here: which local addresses it may use (the RTC_ICE_ADDRESSES setting), and
how soon a silent listener's consent expires.

aioice has no option for this: it gathers host candidates on every interface
address and leaves out 127.0.0.1. Like Janus's ice_enforce_list, the operator
may name the addresses instead. This gives aioice an address lookup that
returns those addresses (through streams/webrtc/rtcinternals.py); with an empty list
aioice keeps its own behaviour.
"""
import ipaddress

from . import rtcinternals


def restrict_host_addresses(addresses):
    addresses = list(addresses)
    if not addresses:
        rtcinternals.gather_host_addresses(None)
        return

    def configured_host_addresses(use_ipv4, use_ipv6):
        wanted = []
        for address in addresses:
            version = ipaddress.ip_address(address).version
            if (version == 4 and use_ipv4) or (version == 6 and use_ipv6):
                wanted.append(address)
        return wanted

    rtcinternals.gather_host_addresses(configured_host_addresses)


# aioice gives up on a silent listener after 6 unanswered consent checks about 5 s apart, each
# waiting for its own timeout: 35-40 s. RFC 7675 says consent expires after 30 s; 5 checks
# brings a vanished listener's close to about 30 s.
CONSENT_FAILURES = 5


def expire_consent_like_rfc_7675():
    rtcinternals.set_consent_failures(CONSENT_FAILURES)
