"""Limits at the HTTP server (rtccaster_site/httpguard.py), over a real daphne on 127.0.0.1 with
raw sockets: what a hostile client can do to the server is bounded before Django sees it."""
import socket
import time

import pytest

from rtccaster_site import httpguard

pytestmark = pytest.mark.django_db(transaction=True)


def connect(server):
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    sock.settimeout(5)
    return sock


def response(sock):
    """Everything the server sends until it closes the connection (or 5 s pass)."""
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except TimeoutError:
        pass
    return data


def status_of(data):
    return int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.1 ") else None


def test_an_ordinary_request_is_served_without_a_server_banner(server):
    with connect(server) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        data = response(sock)
    head = data.split(b"\r\n\r\n", 1)[0].lower()
    assert status_of(data) == 200 and b"\r\nserver:" not in head


def test_a_client_trickling_its_headers_is_cut_off_at_the_deadline(server, monkeypatch):
    with connect(server) as sock:
        started = time.monotonic()
        sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        sock.settimeout(httpguard.HEADER_SECONDS + 5)
        for i in range(100):  # a header line a second would keep Twisted's idle timer happy forever
            try:
                sock.sendall(b"X-Slow-%d: 1\r\n" % i)
            except OSError:
                break
            ready = sock.recv(65536, socket.MSG_PEEK | socket.MSG_DONTWAIT) if _readable(sock, 1.0) else b""
            if ready:
                break
        data = response(sock)
        elapsed = time.monotonic() - started
    assert status_of(data) == 408
    assert httpguard.HEADER_SECONDS - 1 <= elapsed <= httpguard.HEADER_SECONDS + 3


def _readable(sock, seconds):
    import select

    return bool(select.select([sock], [], [], seconds)[0])


def test_oversized_headers_get_431(server):
    for headers in (b"X-Big: " + b"a" * 20_000 + b"\r\n", b"".join(b"X-Many-%d: %s\r\n" % (i, b"b" * 100) for i in range(200))):
        with connect(server) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n" + headers + b"\r\n")
            assert status_of(response(sock)) == 431


def test_a_body_over_the_limit_gets_413_before_it_is_sent(server):
    with connect(server) as sock:
        started = time.monotonic()
        sock.sendall(b"POST /admin/login/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                     b"Content-Length: 52428800\r\n\r\n")  # 50 MB announced, none sent
        data = response(sock)
    assert status_of(data) == 413 and time.monotonic() - started < 2


def test_a_chunked_body_is_cut_off_at_the_limit(server):
    chunk = b"a" * 65536
    with connect(server) as sock:
        sock.sendall(b"POST /admin/login/ HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n")
        sent = 0
        try:
            while sent <= 4 * httpguard.MAX_BODY_BYTES:
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sent += len(chunk)
        except OSError:  # the server closed on us
            pass
        data = response(sock)
    assert status_of(data) == 413
