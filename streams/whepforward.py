"""WHEP session requests that reach another worker than the one holding the session.

In multi-process mode the daphne workers share one listening port and the kernel hands each
connection to any of them, so a player's PATCH or DELETE may reach a worker that does not hold
its session (the peer lives in the worker that answered the POST). So:

- a session's id starts with its worker's id, `<worker>-<tag>.<random>` (session_id()), and any
  worker reads from it where the session lives (holder()). The tag (an HMAC of the worker's id
  with the SECRET_KEY that all workers share) lets through only ids that a worker made, so a
  made-up id is a 404 at once and writes nothing to Redis: requests for workers that never were
  cannot pile up there;
- each worker that holds WHEP sessions answers on a channel of the Channels layer named for it,
  `whep.<worker>` (Desk.serve()), from its first session until its runtime closes (its desk
  is a part of the runtime: WorkerDesk);
- a worker that gets a request for another's session sends it there with a reply channel of its
  own (Desk.forward()); the holder does what it would have done had the request come to it and
  sends back the response (status, headers, body). No answer within FORWARD_TIMEOUT_SECONDS
  (the holder stopped, which ended its sessions, or it is stuck) raises NoAnswer: a 503.

Only control crosses the layer here (a DELETE, a few candidate lines), never audio. Without
REDIS_URL there is one process: ids carry no worker and nothing here runs.
"""
import asyncio
import contextvars
import logging
import re
import secrets
import time

from channels.exceptions import ChannelFull
from channels.layers import get_channel_layer
from django.conf import settings
from django.utils.crypto import constant_time_compare, salted_hmac

from .groups import LAYER_ERRORS
from .runtime import get_runtime

logger = logging.getLogger(__name__)

FORWARD_TIMEOUT_SECONDS = 3.0  # the holder's answer, its DELETE closing the peer included
RECEIVE_RETRY_SECONDS = 1.0  # the channel layer did not answer: listen again after this
REQUEST = "whep.request"
RESPONSE = "whep.response"
# A worker's id as it may appear in a session id: what is also valid in a channel name.
WORKER_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
TAG_CHARS = 12  # hex digits of the worker's tag: 48 bits to guess


class NoAnswer(Exception):
    """The worker holding the session did not answer in time (or the layer could not carry it)."""


def session_id():
    """A new WHEP session's id: random and unguessable; with several workers, prefixed by this one's."""
    token = secrets.token_urlsafe(18)
    if not settings.REDIS_URL:
        return token
    worker_id = get_runtime().worker_id
    return f"{worker_id}-{worker_tag(worker_id)}.{token}"


def worker_tag(worker_id):
    return salted_hmac("streams.whepforward.worker", worker_id, algorithm="sha256").hexdigest()[:TAG_CHARS]


def worker_of(session_id):
    """The worker a session id names, if a worker made it; else None."""
    worker, _, tag = session_id.partition(".")[0].rpartition("-")
    if not WORKER_ID.fullmatch(worker) or not constant_time_compare(tag, worker_tag(worker)):
        return None
    return worker


def holder(session_id):
    """The id of the other worker that holds this session, or None: it is this process's to answer
    (one process, this worker's own session, or an id that no worker made)."""
    if not settings.REDIS_URL:
        return None
    worker = worker_of(session_id)
    return None if worker == get_runtime().worker_id else worker


def inbox(worker_id):
    """The channel on which a worker answers for its WHEP sessions."""
    return f"whep.{worker_id}"


class Desk:
    """A worker's end of forwarding: answering for its own sessions, and asking for others'."""

    def __init__(self, layer, worker_id):
        self.layer = layer
        self.worker_id = worker_id
        self._task = None
        self._answering = set()  # requests being answered (a bare task may be collected)
        self._closed = False

    @property
    def serving(self):
        return self._task is not None and not self._task.done()

    def serve(self, answer):
        """From now on, answer requests forwarded to this worker: `await answer(request)` returns
        (status, headers, body). Once is enough; again after a failure starts it afresh. Not
        after close()."""
        if self.serving or self._closed:
            return
        # In a context of its own: one inherited from a request would hold that request's thread
        # executor (asgiref), gone once its response is sent.
        self._task = asyncio.get_running_loop().create_task(
            self._receive(answer), name="whep-desk", context=contextvars.Context())
        self._task.add_done_callback(_said_if_failed)

    async def stop(self):
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.wait([task])
        for pending in list(self._answering):
            pending.cancel()
        if self._answering:
            await asyncio.wait(list(self._answering))

    async def close(self):
        """Stop for good: answer nothing more, and leave no task behind."""
        self._closed = True
        await self.stop()

    async def forward(self, worker_id, request):
        """Have `worker_id` answer `request` (a dict of plain values); its (status, headers, body),
        or NoAnswer after FORWARD_TIMEOUT_SECONDS."""
        reply_to = await self.layer.new_channel()
        message = {"type": REQUEST, "request": request, "reply_to": reply_to,
                   "deadline": time.time() + FORWARD_TIMEOUT_SECONDS}
        try:
            async with asyncio.timeout(FORWARD_TIMEOUT_SECONDS):
                await self.layer.send(inbox(worker_id), message)
                reply = await self.layer.receive(reply_to)
        except (*LAYER_ERRORS, ChannelFull) as error:
            raise NoAnswer(f"worker {worker_id} did not answer within {FORWARD_TIMEOUT_SECONDS:g} s "
                           f"({type(error).__name__})") from None
        return reply["status"], [tuple(header) for header in reply["headers"]], reply["body"]

    async def _receive(self, answer):
        channel = inbox(self.worker_id)
        failing = False
        while True:
            try:
                message = await self.layer.receive(channel)
            except LAYER_ERRORS as error:
                if not failing:
                    logger.warning("WHEP requests forwarded to this worker wait: the channel layer does not "
                                   "answer (%s); listening again", error or type(error).__name__)
                failing = True
                await asyncio.sleep(RECEIVE_RETRY_SECONDS)
                continue
            failing = False
            if message.get("type") != REQUEST:
                continue
            task = asyncio.get_running_loop().create_task(self._answer(answer, message))
            self._answering.add(task)
            task.add_done_callback(self._answering.discard)

    async def _answer(self, answer, message):
        try:
            status, headers, body = await answer(message["request"])
        except Exception:
            logger.exception("a WHEP request forwarded from another worker failed")
            status, headers, body = 500, [], b"The server could not handle this.\n"
        if time.time() > message["deadline"]:  # the asker has answered 503 and stopped listening
            logger.warning("answered a forwarded WHEP request too late (over %g s): its player got 503",
                           FORWARD_TIMEOUT_SECONDS)
            return
        reply = {"type": RESPONSE, "status": status, "headers": [list(header) for header in headers], "body": body}
        try:
            await self.layer.send(message["reply_to"], reply)
        except (*LAYER_ERRORS, ChannelFull) as error:
            logger.warning("could not send the answer to a forwarded WHEP request (%s)", error or type(error).__name__)


def _said_if_failed(task):
    """A desk that failed (a bug) says so once, with the traceback; the next session starts it again."""
    if not task.cancelled() and task.exception() is not None:
        logger.error("answering WHEP requests forwarded to this worker failed; its next WHEP session starts it "
                     "again", exc_info=task.exception())


class WorkerDesk(Desk):
    """This worker's Desk, on the Channels layer: a part of its runtime (StreamRuntime.part),
    closed when the runtime closes."""

    def __init__(self, runtime):
        super().__init__(get_channel_layer(), runtime.worker_id)


def desk():
    """This worker's Desk (a part of the running loop's runtime)."""
    return get_runtime().part(WorkerDesk)
