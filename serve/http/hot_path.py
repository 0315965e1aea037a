"""The hot path: POST /v2/models/{name}/infer answered inside the HTTP protocol, without ASGI.

Under load single-seed requests are the server's whole business, and each costs the event loop a few hundred
microseconds of CPU on cores the model needs too. Through ASGI much of that is layers: uvicorn makes a scope, an
event and a task per request, passes the body and the answer as message dicts and checks every header it sends.
``HotPath``, mixed into uvicorn's httptools protocol (connections.guarded_protocol), takes the request itself when it
is the connection's only one in flight: it keeps the head's headers, collects the body as llhttp hands it over
(de-chunked), gives both to the service (``HotRoute.answer``), and writes the reply to the socket from the
batcher's done callback. The same rules hold as through ASGI: the API key and a declared length over the limit
are refused before the body (``reject``), as are a body over the limit (413) and one later than the deadline (408);
each such refusal closes the connection (the body's rest cannot be told from a next request; through ASGI a 401
keeps it open). A client leaving mid-body is one log line (499), and keep-alive, Connection: close and a
graceful stop (answers in flight are written, then the connection closes) behave as uvicorn's.

Everything else goes through ASGI as before: other routes and methods, a URL with a query or escapes, a request
pipelined behind one in flight, Expect: 100-continue, upgrades, and the h11 parser. There the app answers the same
route with the same service (``server._Service.infer``), so both paths give the same bytes.
"""

from __future__ import annotations

import asyncio
import http
from collections.abc import Callable
from typing import Protocol

Reply = tuple[int, list[tuple[bytes, bytes]], bytes]  # status, headers (lower-case names), body


def body_too_large(limit: int) -> str:
    return f"request body exceeds the limit of {limit} bytes"


def body_too_slow(timeout: float) -> str:
    return f"request body did not arrive within {timeout:g}s"


class HotRoute(Protocol):
    path: bytes  # the request target answered here, exactly as sent
    body_limit: int
    body_timeout: float

    def reject(self, headers: dict[bytes, bytes]) -> Reply | None: ...
    def answer(self, headers: dict[bytes, bytes], raw: bytes, reply: Callable[[Reply], None]) -> None: ...
    def error_reply(self, status: int, message: str) -> Reply: ...
    def client_left(self, peer: str) -> Reply: ...


class HotPath:
    """Mixin for uvicorn's HttpToolsProtocol (with connections._HeadDeadline): ``hot`` is the route's service."""

    hot: HotRoute

    def on_headers_complete(self) -> None:
        cycle = self.cycle
        if (self.url != self.hot.path or (cycle is not None and not cycle.response_complete)
                or self.expect_100_continue or self.parser.get_method() != b"POST" or self.parser.should_upgrade()):
            return super().on_headers_complete()
        self._disarm()  # the head arrived in time
        keep_alive = self.parser.get_http_version() != "1.0" and self.parser.should_keep_alive()
        headers = dict(self.headers)
        self.cycle = cycle = HotCycle(self, headers, keep_alive)
        if (early := self.hot.reject(headers)) is not None:
            cycle.refuse(early)

    def on_body(self, body: bytes) -> None:
        if type(self.cycle) is HotCycle:
            return self.cycle.received(body)
        super().on_body(body)

    def on_message_complete(self) -> None:
        if type(self.cycle) is HotCycle:
            return self.cycle.complete()
        super().on_message_complete()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        cycle = self.cycle
        if type(cycle) is HotCycle and cycle.reading and cycle.timer is None:  # part of the body is still to come
            cycle.timer = self.loop.call_later(self.hot.body_timeout, cycle.too_slow)

    def connection_lost(self, exc: Exception | None) -> None:
        cycle = self.cycle
        if type(cycle) is HotCycle and cycle.reading:
            cycle.stop_reading()
            cycle.response_complete = True  # nothing to answer: the client is gone
            client = self.client
            self.hot.client_left(f"{client[0]}:{client[1]}" if client else "?")
        super().connection_lost(exc)


class _NoEvent:
    """uvicorn's protocol sets its cycle's message event when the connection is lost; a hot cycle has no waiter."""

    def set(self) -> None:
        pass


class HotCycle:
    """One request on the hot path, in the protocol's ``cycle`` slot where uvicorn's own code looks at it
    (``response_complete``, ``keep_alive``, ``disconnected``, ``message_event``)."""

    message_event = _NoEvent()

    def __init__(self, protocol: HotPath, headers: dict[bytes, bytes], keep_alive: bool):
        self.protocol, self.headers, self.keep_alive = protocol, headers, keep_alive
        self.chunks: list[bytes] = []
        self.size = 0
        self.reading = True  # the body is still arriving
        self.response_complete = self.disconnected = False
        self.timer: asyncio.TimerHandle | None = None

    def received(self, chunk: bytes) -> None:
        if not self.reading:
            return
        self.size += len(chunk)
        limit = self.protocol.hot.body_limit
        if self.size > limit:
            return self.refuse(self.protocol.hot.error_reply(413, body_too_large(limit)))
        self.chunks.append(chunk)

    def complete(self) -> None:
        if self.reading:
            raw = b"".join(self.chunks)
            self.stop_reading()
            self.protocol.hot.answer(self.headers, raw, self.reply)

    def too_slow(self) -> None:
        self.timer = None
        if self.reading:
            self.refuse(self.protocol.hot.error_reply(408, body_too_slow(self.protocol.hot.body_timeout)))

    def refuse(self, reply: Reply) -> None:
        """Answer before the whole body has arrived: the rest of it cannot be told from a next request, so the
        connection closes after the answer."""
        self.stop_reading()
        self.keep_alive = False
        self.reply(reply)

    def stop_reading(self) -> None:
        self.reading = False
        self.chunks = []
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def reply(self, reply: Reply) -> None:
        if self.response_complete:
            return
        self.response_complete = True
        protocol = self.protocol
        transport = protocol.transport
        if not transport.is_closing():
            status, headers, payload = reply
            head = [_status_line(status), _default_head(protocol.server_state.default_headers)]
            head += [b"%s: %s\r\n" % header for header in headers]
            if not self.keep_alive:
                head.append(b"connection: close\r\n")
            head += [b"\r\n", payload]
            transport.write(b"".join(head))
            if not self.keep_alive:
                transport.close()
        protocol.on_response_complete()  # uvicorn's: counts it, starts a pipelined request or the keep-alive timer


_STATUS_LINES: dict[int, bytes] = {}
_DEFAULT_HEAD: list = [None, b""]  # uvicorn's default headers (server, date: a new list each second), as bytes


def _status_line(status: int) -> bytes:
    line = _STATUS_LINES.get(status)
    if line is None:
        try:
            phrase = http.HTTPStatus(status).phrase
        except ValueError:  # 499, nginx's "client closed request"
            phrase = ""
        line = _STATUS_LINES[status] = f"HTTP/1.1 {status} {phrase}\r\n".encode()
    return line


def _default_head(headers: list[tuple[bytes, bytes]]) -> bytes:
    if _DEFAULT_HEAD[0] is not headers:
        _DEFAULT_HEAD[:] = [headers, b"".join(b"%s: %s\r\n" % header for header in headers)]
    return _DEFAULT_HEAD[1]
