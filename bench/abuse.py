"""The attacks of issue 13, run on loopback against a real `manage.py serve`, bounded in count
and time; each prints what held.

1. listener places: offers that used to crash the consumer after it took a place
   (`maxaveragebitrate=²`, 5,000 digits, 80 m-lines), each sent 3 times to a profile with max
   listeners 3; then whether a real listener still gets in, and the places still counted;
2. sockets one address can hold open without sending an offer;
3. STUN checks per listener: an offer naming 100 candidates on UDP ports this benchmark
   listens on; the checks the server sends to them in 10 s, and to how many ports;
4. encoders (variants) running for 19 listeners asking for 19 different bitrates;
5. admin login guesses checked before the lockout, and the answer to the right password then;
6. log bytes for 999 bad requests (WebSockets to unrouted paths, bad messages, pages of streams
   that do not exist); lines of one kind reach the log at most 20 times a minute.

    .venv/bin/python bench/abuse.py
"""
import asyncio
import json
import os
import platform
import shlex
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

import websockets  # noqa: E402

from bench.listeners import prepare_database  # noqa: E402
from streams.webrtc import sdp  # noqa: E402
from streams.webrtc.ice import restrict_host_addresses  # noqa: E402
from tests.listener import Listener, connect_like_a_browser  # noqa: E402
from tests.rigs.daphne import DaphneServer  # noqa: E402

ADMIN_PASSWORD = "bench-only-password"  # bench.listeners.prepare_database's
OFFER = (PROJECT / "tests" / "data" / "aiortc_offer.sdp").read_text()


def run_manage(db, code):
    env = {**os.environ, "RTC_DB_PATH": str(db), "DJANGO_SETTINGS_MODULE": "rtccaster_site.settings"}
    subprocess.run([sys.executable, "-c", "import django; django.setup(); " + code], cwd=PROJECT, env=env, check=True)


async def send_offer(server, slug, offer):
    async with connect_like_a_browser(server.ws_url(slug)) as ws:
        await ws.send(json.dumps({"type": "offer", "sdp": offer}))
        return json.loads(await ws.recv())


async def places(server):
    triggers = {
        "maxaveragebitrate=²": OFFER.replace("a=rtpmap:96 opus/48000/2\n", "a=rtpmap:96 opus/48000/2\na=fmtp:96 maxaveragebitrate=²\n"),
        "5,000 digits": OFFER.replace("a=rtpmap:96 opus/48000/2\n", "a=rtpmap:96 opus/48000/2\na=fmtp:96 maxaveragebitrate=" + "9" * 5000 + "\n"),
        "80 m-lines": OFFER + "".join(f"m=audio 9 UDP/TLS/RTP/SAVPF 0\na=mid:{i}\na=rtpmap:0 PCMU/8000\n" for i in range(1, 80)),
    }
    for name, offer in triggers.items():
        replies = [await send_offer(server, "small", offer) for _ in range(3)]
        print(f"  {name}: replies {[r.get('code', r['type']) for r in replies]}")
    async with Listener(server.ws_url("small")) as listener:
        await listener.listen_for(0.5)
        admitted = True
    status = await asyncio.to_thread(server.status)
    print(f"1. listener places: a real listener admitted afterwards: {admitted}; peers now {status['peers']} "
          f"(places leaked: {status['peers']})")


async def sockets_per_address(server, most=2000):
    opened, refused_at = [], None
    try:
        for i in range(most):
            ws = await connect_like_a_browser(server.ws_url("open"))
            opened.append(ws)
            try:
                message = json.loads(await asyncio.wait_for(ws.recv(), 0.05))
                if message.get("code") == "too-many-connections":
                    refused_at = i
                    break
            except asyncio.TimeoutError:
                pass
    finally:
        await asyncio.gather(*(ws.close() for ws in opened), return_exceptions=True)
    print(f"2. sockets one address can hold open without an offer: {refused_at} "
          f"(the next was refused with too-many-connections)" if refused_at is not None
          else f"2. sockets one address can hold open: all {most} tried were accepted")


async def stun_checks(server, targets=100, seconds=10):
    socks = []
    for _ in range(targets):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        s.setblocking(False)
        socks.append(s)
    lines = "".join(f"a=candidate:{i} 1 udp {2130706431 - i} 127.0.0.1 {s.getsockname()[1]} typ host\n"
                    for i, s in enumerate(socks))
    offer = "\n".join(line for line in OFFER.splitlines() if not line.startswith("a=candidate:")) + "\n" + lines
    received = {}
    async with connect_like_a_browser(server.ws_url("open")) as ws:
        await ws.send(json.dumps({"type": "offer", "sdp": offer}))
        await ws.recv()
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            for s in socks:
                try:
                    while True:
                        s.recv(2048)
                        received[s] = received.get(s, 0) + 1
                except BlockingIOError:
                    pass
            await asyncio.sleep(0.05)
    for s in socks:
        s.close()
    print(f"3. STUN checks per listener: an offer naming {targets} candidates drew {sum(received.values())} "
          f"checks to {len(received)} ports in {seconds} s")


async def variants(server):
    listeners = [Listener(server.ws_url("open"), offer_edit=lambda o, b=b: sdp.set_codec_fmtp(o, "opus", {"stereo": "1", "maxaveragebitrate": str(b)}))
                 for b in range(20_000, 115_000, 5_000)][:19]
    for listener in listeners:
        await listener.connect()
    await asyncio.gather(*(listener.listen_for(0.3) for listener in listeners))
    status = await asyncio.to_thread(server.status)
    hubs = [hub for hub in status["hubs"] if hub["slug"] == "open"]
    await asyncio.gather(*(listener.close() for listener in listeners))
    print(f"4. encoders for 19 listeners asking for 19 different bitrates: {len(hubs)} "
          f"({sorted(hub['listeners'] for hub in hubs)} listeners each)")


def login_guesses(server):
    """Like a browser: the login form first (for its CSRF cookie and token), then each guess."""
    import http.cookiejar
    import re

    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
    url = server.url("/admin/login/")

    def post(password):
        page = opener.open(url, timeout=10).read().decode()
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
        data = urllib.parse.urlencode({"username": "admin", "password": password, "csrfmiddlewaretoken": token,
                                       "next": "/admin/"}).encode()
        request = urllib.request.Request(url, data=data, headers={"Referer": url})
        try:
            with opener.open(request, timeout=10) as response:
                return response.status, response.url
        except urllib.error.HTTPError as error:
            return error.code, url

    started = time.monotonic()
    statuses = [post(f"guess-{i}")[0] for i in range(10)]
    seconds = time.monotonic() - started
    right = post(ADMIN_PASSWORD)
    checked = sum(1 for status in statuses if status == 200)
    print(f"5. admin login: {checked} guesses checked before the lockout ({statuses}, {10 / seconds:.0f} tries/s "
          f"answered); the right password then: {right[0]}")


async def log_bytes(server, log_path, count=999):
    """Three kinds of bad request, a third each: WebSockets to unrouted paths, bad messages,
    and pages of streams that do not exist (Django logs each 404 as a warning)."""
    def size():
        return sum(p.stat().st_size for p in log_path.parent.glob(log_path.name + "*"))

    before = size()
    for i in range(count // 3):
        try:
            async with websockets.connect(f"ws://127.0.0.1:{server.port}/ws/nope/{i}/", origin=server.url("").rstrip("/")):
                pass
        except websockets.InvalidStatus:
            pass
    for i in range(count // 3):  # a socket each: one socket may send only 5 a second
        async with connect_like_a_browser(server.ws_url("open")) as ws:
            await ws.send("{not json")
            await ws.recv()

    def missing_pages():
        for i in range(count // 3):
            try:
                urllib.request.urlopen(server.url(f"/listen/nothing-{i}/"), timeout=10).read()
            except urllib.error.HTTPError:
                pass

    await asyncio.to_thread(missing_pages)
    print(f"6. log bytes for {count} bad requests ({count // 3} unrouted sockets, {count // 3} bad messages, "
          f"{count // 3} pages of unknown streams): {size() - before}")


async def attacks(server, log_path):
    await places(server)
    await sockets_per_address(server)
    await stun_checks(server)
    await variants(server)
    await asyncio.to_thread(login_guesses, server)
    await log_bytes(server, log_path)


def main():
    print("command:", shlex.join([".venv/bin/python", "bench/abuse.py", *sys.argv[1:]]))
    print(f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    restrict_host_addresses(["127.0.0.1"])
    with tempfile.TemporaryDirectory() as workdir:
        db = prepare_database(workdir)
        run_manage(db, "from streams.models import StreamProfile; "
                       "StreamProfile.objects.create(name='Small', slug='small', max_listeners=3); "
                       "StreamProfile.objects.create(name='Open', slug='open')")
        log_path = Path(workdir) / "app.log"
        server = DaphneServer(db, log_path, extra_env={"RTC_MAX_LISTENERS_PER_ADDRESS": "0"}).start()
        try:
            asyncio.run(attacks(server, log_path))
        finally:
            server.stop()


if __name__ == "__main__":
    main()
