"""WHEP (WebRTC-HTTP Egress Protocol, draft-ietf-wish-whep; its HTTP rules are WHIP's, RFC 9725):
listening from players this project did not write.

    POST    /whep/<slug>/              an SDP offer (application/sdp)  -> 201, the answer, Location
    PATCH   /whep/<slug>/<session>/    trickle ICE candidates (application/trickle-ice-sdpfrag) -> 204
    DELETE  /whep/<slug>/<session>/    ends the session at once -> 200
    OPTIONS on both                    CORS preflight; Accept-Post / Accept-Patch

With several workers (REDIS_URL) a session lives in the worker that answered its POST, and its
id names that worker: a PATCH or DELETE that reaches another worker is passed on to it over
the Channels layer (streams/whepforward.py) and answered as if it had come there; 503 if it
does not answer in time.

A WHEP session is a ListenerSession (streams/session.py), as a WebSocket listener's is: the
same limits, timeouts, encode-once fan-out and profile changes. It has no socket to tell the
listener anything, so whatever ends it on the server's side (ICE timeout, failure, the
operator stopping the stream or changing its codec or access) closes its peer; the player sees
the connection end, as RFC 9725 has it, and may POST again.

Access is the listen page's: a secret-link stream takes its key as `Authorization: Bearer
<key>` (or `?key=`); a stream for signed-in users is not offered over WHEP (players carry no
sign-in); and a stream refused to the client answers exactly as an unknown one (404), so WHEP
reveals no more than the page about which protected streams exist.

CSRF: WHEP clients are players and pages of other origins that send no cookies, so these views
are exempt from Django's CSRF check (which would refuse every one of them). That is safe
because nothing here acts on a cookie's authority: access comes from the Bearer key or the
session URL (a random, unguessable capability), never from a signed-in user.
"""
import asyncio
import logging
import secrets
import time
from dataclasses import asdict, dataclass

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.handlers.exception import response_for_exception
from django.http import Http404, HttpResponse
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt

from . import whepforward
from .models import StreamProfile, not_found_message
from .runtime import get_runtime
from .session import ListenerSession, SessionRefused

logger = logging.getLogger(__name__)

SDP = "application/sdp"
SDP_FRAGMENT = "application/trickle-ice-sdpfrag"
MAX_BODY_BYTES = 64 * 1024  # as a signaling message
ENDPOINT_METHODS = "POST, OPTIONS"
SESSION_METHODS = "PATCH, DELETE, OPTIONS"
RETRY_AFTER_SECONDS = 10  # a full stream: when a player may try again
ENDED_MEMORY_SECONDS = 60


@dataclass(eq=False)
class Resource:
    """A WHEP session's resource: its listener session and the entity-tag of its ICE session."""

    session: ListenerSession
    etag: str


class Sessions:
    """A process's WHEP sessions: the live ones, and those that ended by themselves within the
    last minute, so that a player's DELETE after it closed its own connection (which ends the
    session at once, as whip-whep's stop() does) still gets its 200. A part of the runtime
    (StreamRuntime.part): its sessions end when the runtime closes."""

    def __init__(self, runtime):
        self.live = {}  # session id -> Resource
        self.recently_ended = {}  # session id -> (slug, monotonic time, why)

    async def close(self):
        """End every live session (the runtime closes), each giving back its peer, its place in
        the listener limits and its channel, as a DELETE does."""
        resources, self.live = list(self.live.values()), {}
        results = await asyncio.gather(*(resource.session.end() for resource in resources), return_exceptions=True)
        for resource, result in zip(resources, results):
            if isinstance(result, Exception):
                logger.error("%r: ending the WHEP session on shutdown failed", resource.session, exc_info=result)
        if resources:
            logger.info("ended %d WHEP session(s) on shutdown", len(resources))

    def ended(self, session_id, slug, why):
        self.live.pop(session_id, None)
        now = time.monotonic()
        for old in [key for key, (_, when, _) in self.recently_ended.items() if now - when > ENDED_MEMORY_SECONDS]:
            del self.recently_ended[old]
        self.recently_ended[session_id] = (slug, now, why)


def sessions():
    """This process's WHEP sessions (a part of the running loop's runtime)."""
    return get_runtime().part(Sessions)


def resources():
    """This process's live WHEP sessions by id."""
    return sessions().live


def cors(response, methods):
    """Any page may use WHEP (RFC 9725 asks endpoints to support CORS); without credentials, so a
    page of another site never acts with a visitor's cookies."""
    response["Access-Control-Allow-Origin"] = "*"
    response["Access-Control-Expose-Headers"] = ("Location, Link, ETag, Accept-Post, Accept-Patch, Retry-After, "
                                                 "WWW-Authenticate")
    response["Allow"] = methods
    return response


def preflight(methods, **headers):
    response = HttpResponse(status=200)
    response["Access-Control-Allow-Methods"] = methods
    response["Access-Control-Allow-Headers"] = "Authorization, Content-Type, If-Match"
    response["Access-Control-Max-Age"] = "86400"
    for name, value in headers.items():
        response[name.replace("_", "-")] = value
    return cors(response, methods)


def text(status, message, methods, **headers):
    response = HttpResponse(message + "\n", status=status, content_type="text/plain; charset=utf-8")
    for name, value in headers.items():
        response[name.replace("_", "-")] = value
    return cors(response, methods)


def _quoted(value):
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def ice_server_links(servers):
    """RTC_ICE_SERVERS as RFC 9725 Link header values, one per URL, joined by commas."""
    links = []
    for server in servers:
        urls = server["urls"] if isinstance(server["urls"], list) else [server["urls"]]
        for url in urls:
            link = f'<{url}>; rel="ice-server"'
            if "username" in server:
                link += f"; username={_quoted(server['username'])}"
            if "credential" in server:
                link += f'; credential={_quoted(server["credential"])}; credential-type="password"'
            links.append(link)
    return ", ".join(links)


def bearer_key(request):
    """The secret link's key: `Authorization: Bearer <key>`, or `?key=` for players that only take a URL."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return request.GET.get("key", "")


async def answered_as_django_does(request, exception, methods):
    """The very response the listen page gives for this exception (its 404 page), with CORS."""
    response = await sync_to_async(response_for_exception)(request, exception)
    response["WWW-Authenticate"] = 'Bearer realm="whep"'  # a key may change the answer (RFC 9110 11.6.1)
    return cors(response, methods)


def read_body(request, wanted_type, methods, accept_header):
    """The request's text, or the response refusing it (415 wrong type, 413 too large, 400 not text)."""
    if request.content_type.lower() != wanted_type:
        return None, text(415, f"Send the body as {wanted_type}.", methods, **{accept_header: wanted_type})
    if len(request.body) > MAX_BODY_BYTES:
        return None, text(413, f"The body may be at most {MAX_BODY_BYTES // 1024} KiB.", methods)
    try:
        return request.body.decode("utf-8"), None
    except UnicodeDecodeError:
        return None, text(400, "The body is not UTF-8 text.", methods)


@dataclass(frozen=True)
class SessionRequest:
    """What a PATCH or DELETE on a session says, as plain values: what another worker passes on
    to the one holding the session. A body over the limit is cut just past it, which still says
    "too large"."""

    method: str
    slug: str
    session_id: str
    content_type: str
    body: bytes
    if_match: str

    @classmethod
    def of(cls, request, slug, session_id):
        body = request.body[:MAX_BODY_BYTES + 1] if request.method == "PATCH" else b""
        return cls(request.method, slug, session_id, request.content_type, body, request.headers.get("If-Match", ""))


def short(session_id):
    """A session's name in the log: the start of its random part, never the whole capability."""
    return session_id.rpartition(".")[2][:4] + "…"


@csrf_exempt
async def endpoint(request, slug):
    """POST an offer: 201 with the answer and the session's Location, or why not."""
    if request.method == "OPTIONS":
        return preflight(ENDPOINT_METHODS, Accept_Post=SDP)
    if request.method != "POST":
        return text(405, "A WHEP endpoint takes POST (an SDP offer) and OPTIONS.", ENDPOINT_METHODS)
    offer, refusal = read_body(request, SDP, ENDPOINT_METHODS, "Accept-Post")
    if refusal:
        return refusal
    if not offer.strip():
        return text(400, "The body must be an SDP offer.", ENDPOINT_METHODS)
    profile = await StreamProfile.objects.filter(slug=slug, enabled=True).afirst()
    if profile is None:
        return await answered_as_django_does(request, Http404(not_found_message(slug)), ENDPOINT_METHODS)
    if profile.access == StreamProfile.Access.LOGGED_IN:
        return text(403, "This stream is for signed-in users, and WHEP players carry no sign-in: "
                         "listen on its page.", ENDPOINT_METHODS)
    key = bearer_key(request)
    if profile.refusal(None, key):  # a token (RFC 9725 4.5) missing or wrong: 401 with a challenge (RFC 6750 3)
        return text(401, "This stream needs its secret key as the player's token "
                         "(Authorization: Bearer <key>); the key is missing or no longer valid.",
                    ENDPOINT_METHODS, WWW_Authenticate='Bearer realm="rtc-caster"')
    return await start_session(request, profile, key, offer)


async def start_session(request, profile, key, offer):
    session_id = whepforward.session_id()
    table = sessions()

    async def ended(code, message):
        table.ended(session_id, profile.slug, code)
        logger.info("%s: WHEP session ended (%s)", profile.slug, code)

    session = ListenerSession(profile, request.META.get("REMOTE_ADDR", "?"), key=key, on_end=ended)
    try:
        answer = await session.start(offer)
    except SessionRefused as refused:
        if refused.code == "too-many-listeners":  # RFC 9725 4.6: 503 while the server cannot take more
            return text(503, refused.message, ENDPOINT_METHODS, Retry_After=str(RETRY_AFTER_SECONDS))
        return text(400, f"{refused.code}: {refused.message}", ENDPOINT_METHODS)
    if session.ended:  # the stream stopped while answering
        return await answered_as_django_does(request, Http404(not_found_message(profile.slug)), ENDPOINT_METHODS)
    resource = table.live[session_id] = Resource(session, f'"{secrets.token_hex(8)}"')
    logger.info("%r: WHEP session %s", session, short(session_id))
    if settings.REDIS_URL:  # its PATCH or DELETE may reach another worker, which passes it on here
        whepforward.desk().serve(answer_forwarded)
    response = HttpResponse(answer, status=201, content_type=SDP)
    response["Location"] = reverse("streams:whep-session", args=[profile.slug, session_id])
    response["ETag"] = resource.etag
    response["Accept-Patch"] = SDP_FRAGMENT
    response["Cache-Control"] = "no-store"  # the answer holds the session's ICE credentials
    links = ice_server_links(settings.RTC_ICE_SERVERS)
    if links:
        response["Link"] = links
    return cors(response, ENDPOINT_METHODS)


@csrf_exempt
async def session_resource(request, slug, session_id):
    """A live WHEP session: PATCH (trickle ICE), DELETE (end it); here, or in the worker holding it."""
    if request.method == "OPTIONS":
        return preflight(SESSION_METHODS, Accept_Patch=SDP_FRAGMENT)
    if request.method not in ("PATCH", "DELETE"):
        return text(405, "A WHEP session takes PATCH (trickle ICE) and DELETE.", SESSION_METHODS)
    asked = SessionRequest.of(request, slug, session_id)
    worker = whepforward.holder(session_id)
    if worker is not None:
        return await forward(worker, asked)
    return await act(asked)


async def forward(worker, asked):
    """Have the worker holding the session answer the request (multi-process mode)."""
    try:
        status, headers, body = await whepforward.desk().forward(worker, asdict(asked))
    except whepforward.NoAnswer as silence:
        logger.warning("%s: WHEP %s of session %s not done: %s", asked.slug, asked.method, short(asked.session_id),
                       silence)
        return text(503, f"The server process holding this WHEP session did not answer within "
                         f"{whepforward.FORWARD_TIMEOUT_SECONDS:g} s: it may have stopped, which ended the "
                         f"session. Try again, or POST a new offer.", SESSION_METHODS)
    response = HttpResponse(body, status=status)
    for name, value in headers:
        response[name] = value
    return response


async def answer_forwarded(request):
    """A request for one of this worker's sessions that another worker passed on (whepforward):
    answered as if it had come here, as (status, headers, body)."""
    response = await act(SessionRequest(**request))
    return response.status_code, list(response.items()), response.content


async def act(asked):
    """PATCH or DELETE one of this process's sessions."""
    table = sessions()
    resource = table.live.get(asked.session_id)
    if resource is None or resource.session.slug != asked.slug:
        slug_, _, why = table.recently_ended.get(asked.session_id, (None, 0, ""))
        if asked.method == "DELETE" and slug_ == asked.slug:
            del table.recently_ended[asked.session_id]
            return text(200, f"The session had already ended ({why}).", SESSION_METHODS)
        return text(404, "There is no such WHEP session: it has ended, or never was.", SESSION_METHODS)
    if asked.method == "DELETE":
        table.live.pop(asked.session_id, None)
        name = repr(resource.session)
        await resource.session.end()
        logger.info("%s: WHEP session ended by the player (DELETE)", name)
        return text(200, "The session has ended.", SESSION_METHODS)
    return await trickle(asked, resource)


async def trickle(asked, resource):
    """RFC 9725 4.3.1: candidates found after the offer; ICE restarts are not supported (aiortc
    cannot restart ICE), so they get 422 and the session goes on as it was."""
    fragment, refusal = read_body(asked, SDP_FRAGMENT, SESSION_METHODS, "Accept-Patch")
    if refusal:
        return refusal
    if_match = asked.if_match.strip()
    if if_match == "*" or resource.session.ice_restart(fragment):
        return text(422, "ICE restarts are not supported: DELETE this session and POST a new offer.",
                    SESSION_METHODS, ETag=resource.etag)
    if if_match and resource.etag not in [tag.strip() for tag in if_match.split(",")]:
        return text(412, "If-Match names another ICE session.", SESSION_METHODS, ETag=resource.etag)
    added = await resource.session.add_candidates(fragment)
    logger.info("%r: %d trickled candidate(s) added", resource.session, added)
    response = HttpResponse(status=204)
    response["ETag"] = resource.etag
    return cors(response, SESSION_METHODS)
