"""Pure functions over SDP text and codec parameters.

This is the one place where SDP strings are edited. aiortc's own API chooses the
codec and direction; these functions only add what it has no API for: the
profile's Opus fmtp parameters and the b=AS bandwidth line in an answer, and
dropping ICE candidates on addresses the server was told not to use. It also reads what
aiortc does not expose: the offer's a=setup (DTLS role), which peers.py acts on.
"""
import ipaddress

CRLF = "\r\n"

MAX_FMTP_DIGITS = 10  # a bitrate or a rate: 4,294,967,295 fits
# SDP encoding names, as in a=rtpmap, for each profile codec.
ENCODING_NAMES = {"opus": "opus", "pcmu": "PCMU", "pcma": "PCMA", "g722": "G722"}


def opus_fmtp_params(*, channels, max_average_bitrate, max_playback_rate, cbr, fec, dtx):
    """The Opus a=fmtp parameters (RFC 7587) that describe a profile, in a stable order."""
    stereo = "1" if channels == 2 else "0"
    return {
        "maxaveragebitrate": str(max_average_bitrate),
        "maxplaybackrate": str(max_playback_rate),
        "cbr": "1" if cbr else "0",
        "useinbandfec": "1" if fec else "0",
        "usedtx": "1" if dtx else "0",
        "stereo": stereo,
        "sprop-stereo": stereo,
    }


def opus_receiver_limits(offer_sdp):
    """What a listener's offer says it wants to receive in Opus (RFC 7587), as plain values.

    stereo: False unless the offer has stereo=1 (absent means "prefers mono");
    max_average_bitrate / max_playback_rate: an int, or None when the offer sets none.
    """
    params = codec_fmtp(offer_sdp, "opus") or {}

    def number(key):
        value = params.get(key, "")
        # Plain ASCII digits of sane length only: '²'.isdigit() is true, and int() of 5,000 digits is slow.
        if not (value.isascii() and value.isdigit() and len(value) <= MAX_FMTP_DIGITS):
            return None
        return int(value) or None

    return {
        "stereo": params.get("stereo") == "1",
        "max_average_bitrate": number("maxaveragebitrate"),
        "max_playback_rate": number("maxplaybackrate"),
    }


def media_section_count(sdp):
    """How many m= lines the SDP has."""
    return len(_split(sdp)[1])


def limit_candidates(sdp, most):
    """Keep the first `most` a=candidate lines of the SDP, drop the rest: every candidate pair
    is a connectivity check the server sends, so an offer cannot make it send thousands."""
    kept = 0

    def wanted(line):
        nonlocal kept
        if not line.startswith("a=candidate:"):
            return True
        kept += 1
        return kept <= most

    session, sections = _split(sdp)
    return _join(session, [[line for line in section if wanted(line)] for section in sections])


def parse_fmtp(value):
    """'a=1;b=2' -> {'a': '1', 'b': '2'}; a bare token maps to ''."""
    params = {}
    for item in value.split(";"):
        item = item.strip()
        if not item:
            continue
        key, _, val = item.partition("=")
        params[key.strip()] = val.strip()
    return params


def format_fmtp(params):
    return ";".join(f"{key}={value}" if value != "" else key for key, value in params.items())


def _split(sdp):
    """Session lines and a list of media sections, each a list of lines."""
    lines = [line for line in sdp.replace("\r\n", "\n").split("\n") if line]
    session, sections = [], []
    for line in lines:
        if line.startswith("m="):
            sections.append([line])
        elif sections:
            sections[-1].append(line)
        else:
            session.append(line)
    return session, sections


def _join(session, sections):
    lines = session + [line for section in sections for line in section]
    return CRLF.join(lines) + CRLF


def _is_audio(section):
    return section[0].startswith("m=audio ")


def has_audio_section(sdp):
    """True when the SDP has an audio m-line that is not rejected (port 0)."""
    _, sections = _split(sdp)
    for section in sections:
        parts = section[0].split()
        if _is_audio(section) and len(parts) > 1 and parts[1] != "0":
            return True
    return False


TRANSPORT_ATTRIBUTES = ("ice-ufrag", "ice-pwd", "fingerprint")


def missing_transport_attributes(sdp):
    """Which of a=ice-ufrag, a=ice-pwd, a=fingerprint the first live audio section lacks
    (at its own level or the session's): without them there is no ICE or DTLS to set up."""
    session, sections = _split(sdp)
    audio = next((sec for sec in sections if _is_audio(sec) and sec[0].split()[1:2] != ["0"]), None)
    if audio is None:
        return list(TRANSPORT_ATTRIBUTES)
    present = {line[2:].split(":", 1)[0] for line in session + audio[1:] if line.startswith("a=")}
    return [name for name in TRANSPORT_ATTRIBUTES if name not in present]


def dtls_setup(sdp):
    """The offer's a=setup value (RFC 5763: actpass, active or passive) for its first live audio
    section, or the session's when that section has none; None when neither has one."""
    session, sections = _split(sdp)
    audio = next((sec for sec in sections if _is_audio(sec) and sec[0].split()[1:2] != ["0"]), [])
    for lines in (audio[1:], session):
        value = next((line[len("a=setup:"):].strip() for line in lines if line.startswith("a=setup:")), None)
        if value is not None:
            return value
    return None


def payload_types(section, encoding_name):
    """Payload types in a media section whose a=rtpmap names encoding_name (case-insensitive)."""
    found = []
    for line in section:
        if line.startswith("a=rtpmap:"):
            pt, _, rest = line[len("a=rtpmap:"):].partition(" ")
            if rest.split("/")[0].lower() == encoding_name.lower():
                found.append(pt)
    return found


def audio_payload_type(sdp, encoding_name):
    """The payload type the first audio section gives encoding_name, as an int, or None."""
    _, sections = _split(sdp)
    for section in sections:
        if _is_audio(section):
            found = payload_types(section, encoding_name)
            return int(found[0]) if found else None
    return None


def codec_fmtp(sdp, encoding_name):
    """The fmtp parameters of the first audio payload type with that encoding, or None if absent."""
    _, sections = _split(sdp)
    for section in filter(_is_audio, sections):
        pts = payload_types(section, encoding_name)
        if not pts:
            continue
        prefix = f"a=fmtp:{pts[0]} "
        for line in section:
            if line.startswith(prefix):
                return parse_fmtp(line[len(prefix):])
        return {}
    return None


def set_codec_fmtp(sdp, encoding_name, params):
    """Merge params into the a=fmtp line of every audio payload type with that encoding.

    Parameters already present and not in params are kept; a missing fmtp line is added
    right after the codec's a=rtpmap line.
    """
    session, sections = _split(sdp)
    for section in filter(_is_audio, sections):
        for pt in payload_types(section, encoding_name):
            prefix = f"a=fmtp:{pt} "
            index = next((i for i, line in enumerate(section) if line.startswith(prefix)), None)
            if index is None:
                rtpmap = next(i for i, line in enumerate(section) if line.startswith(f"a=rtpmap:{pt} "))
                section.insert(rtpmap + 1, prefix + format_fmtp(params))
            else:
                merged = {**parse_fmtp(section[index][len(prefix):]), **params}
                section[index] = prefix + format_fmtp(merged)
    return _join(session, sections)


def set_audio_bandwidth(sdp, kbps):
    """Put b=AS:<kbps> in every audio section, replacing any b=AS already there.

    RFC 4566 orders a media section as m, i, c, b, k, a: the line goes after c= (or i=, or m=).
    """
    session, sections = _split(sdp)
    for section in filter(_is_audio, sections):
        section[:] = [line for line in section if not line.startswith("b=AS:")]
        anchor = 0
        for i, line in enumerate(section):
            if line[:2] in ("i=", "c=") or line.startswith("b="):
                anchor = i
        section.insert(anchor + 1, f"b=AS:{kbps}")
    return _join(session, sections)


def candidate_address(line):
    """The connection address of an a=candidate line, or None if the line is malformed."""
    parts = line.split()
    return parts[4] if line.startswith("a=candidate:") and len(parts) >= 8 else None


def keep_candidates(sdp, addresses):
    """Drop a=candidate lines whose address is not one of addresses (hostnames and mDNS names too)."""
    allowed = {ipaddress.ip_address(a) for a in addresses}

    def wanted(line):
        if not line.startswith("a=candidate:"):
            return True
        try:
            return ipaddress.ip_address(candidate_address(line) or "") in allowed
        except ValueError:
            return False

    session, sections = _split(sdp)
    return _join(session, [[line for line in section if wanted(line)] for section in sections])


def only_loopback(addresses):
    """True when addresses is non-empty and every one is a loopback address."""
    return bool(addresses) and all(ipaddress.ip_address(a).is_loopback for a in addresses)
