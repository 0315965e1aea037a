"""Connection guards for uvicorn's HTTP protocols: a client must send a whole request head (request line and
headers) within ``header_timeout`` seconds of connecting or of its previous response, or the connection is
closed; and a head may not exceed ``MAX_HEAD_BYTES``.

uvicorn closes idle keep-alive connections only after a first response, and any byte cancels that timer, so a
client that connects and sends nothing, or trickles its headers (slowloris), would hold a socket for ever.
The body has its own deadline in the app (``ServerConfig.body_timeout_s``).

Two parsers: httptools (llhttp, C; uvicorn's fast path, used where it is installed) and h11 (pure Python).
Both answer a head over ``MAX_HEAD_BYTES`` with 400 and close the connection.

    protocol = guarded_protocol(header_timeout=10.0)        # httptools if installed, else h11
    protocol = guarded_protocol(10.0, hot=app.hot_route)     # and the infer route answered in the protocol
    uvicorn.Config(app, http=protocol, h11_max_incomplete_event_size=MAX_HEAD_BYTES, ...)
"""

from __future__ import annotations

import asyncio
import importlib.util

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from .hot_path import HotPath, HotRoute

MAX_HEAD_BYTES = 16 * 1024  # request line + headers


class _HeadDeadline:
    """The timer half of a guard, mixed into a uvicorn protocol class: armed on connect and after each response
    while the connection waits for a new request; the protocol disarms it once a request head is complete."""

    _head_timer: asyncio.TimerHandle | None = None
    header_timeout: float = 10.0

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._arm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self._waiting_for_head() and not self.transport.is_closing():
            self._arm()  # the next request's head has the same deadline

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._head_timer = self.loop.call_later(self.header_timeout, self._head_too_slow)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_too_slow(self) -> None:
        self._head_timer = None
        if self._waiting_for_head() and not self.transport.is_closing():
            self.transport.close()

    def _waiting_for_head(self) -> bool:
        raise NotImplementedError


class GuardedH11Protocol(_HeadDeadline, H11Protocol):
    def data_received(self, data: bytes) -> None:
        if self.conn.their_state is h11.IDLE and _head_too_large(bytes(self.conn.trailing_data[0]) + data):
            self.send_400_response("Request head too large.")  # h11 alone checks only heads split across reads
            return
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:  # the request head is complete
            self._disarm()

    def _waiting_for_head(self) -> bool:
        return self.conn.their_state is h11.IDLE


def _head_too_large(buffered: bytes) -> bool:
    return len(buffered) > MAX_HEAD_BYTES and buffered.find(b"\r\n\r\n", 0, MAX_HEAD_BYTES + 4) == -1


class HeadTooLarge(Exception):
    pass


def _guarded_httptools() -> type:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class GuardedHttpToolsProtocol(_HeadDeadline, HttpToolsProtocol):
        """Counts the head as llhttp hands it over; a callback that raises makes the parser fail, and uvicorn
        answers that with a 400 and closes the connection."""

        _head_size = 0

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._head_size = 0

        def on_url(self, url: bytes) -> None:
            self._count(len(url))
            super().on_url(url)

        def on_header(self, name: bytes, value: bytes) -> None:
            self._count(len(name) + len(value) + 4)  # "name: value\r\n"
            super().on_header(name, value)

        def on_headers_complete(self) -> None:
            self._disarm()
            super().on_headers_complete()

        def _count(self, size: int) -> None:
            self._head_size += size
            if self._head_size > MAX_HEAD_BYTES:
                raise HeadTooLarge

        def _waiting_for_head(self) -> bool:
            return self.cycle is None or self.cycle.response_complete

    return GuardedHttpToolsProtocol


def httptools_available() -> bool:
    return importlib.util.find_spec("httptools") is not None


def guarded_protocol(header_timeout: float, parser: str = "auto", hot: HotRoute | None = None) -> type:
    """A uvicorn ``http=`` protocol class with the guards: ``parser`` "httptools", "h11" or "auto" (httptools where
    it is installed); with httptools, ``hot`` (the server's infer route) is answered in the protocol
    (hot_path.py)."""
    use_httptools = parser == "httptools" or (parser == "auto" and httptools_available())
    base = _guarded_httptools() if use_httptools else GuardedH11Protocol
    if use_httptools and hot is not None:
        return type(base.__name__, (HotPath, base), {"header_timeout": header_timeout, "hot": hot})
    return type(base.__name__, (base,), {"header_timeout": header_timeout})
