"""A connection guard for uvicorn's h11 protocol: a client must send a whole request head (request line and
headers) within ``header_timeout`` seconds of connecting or of its previous response, or the connection is closed.

uvicorn closes idle keep-alive connections only after a first response, and any byte cancels that timer, so a
client that connects and sends nothing, or trickles its headers (slowloris), would hold a socket for ever.
The body has its own deadline in the app (``ServerConfig.body_timeout_s``).

    uvicorn.Config(app, http=guarded_h11(header_timeout=10.0), ...)
"""

from __future__ import annotations

import asyncio

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol


def guarded_h11(header_timeout: float) -> type[H11Protocol]:
    class GuardedH11Protocol(H11Protocol):
        _head_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self.conn.their_state is not h11.IDLE:  # the request head is complete
                self._disarm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
                self._arm()  # the next request's head has the same deadline

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            self._disarm()
            self._head_timer = self.loop.call_later(header_timeout, self._head_too_slow)

        def _disarm(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _head_too_slow(self) -> None:
            self._head_timer = None
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
                self.transport.close()

    return GuardedH11Protocol
