"""Every exception trio_ws raises.

The tree::

    WebSocketError
    ├── ConnectionClosed
    │   ├── ConnectionClosedOK
    │   └── ConnectionClosedError
    ├── InvalidHandshake
    │   ├── InvalidURI
    │   ├── InvalidStatus
    │   ├── InvalidHeader
    │   └── NegotiationError
    ├── ProtocolError
    ├── PayloadTooBig
    └── ConcurrencyError (also a RuntimeError)

Besides these, opening a connection may raise the builtin :class:`OSError`
(the TCP connection failed) and :class:`TimeoutError` (``open_timeout`` ran
out). Bad arguments raise :class:`TypeError` or :class:`ValueError` at once.

This module imports nothing but the standard library; the sans-IO core and the
I/O layer both build on it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .protocol.frames import Close
    from .protocol.handshake import Response

__all__ = [
    "ConcurrencyError",
    "ConnectionClosed",
    "ConnectionClosedError",
    "ConnectionClosedOK",
    "InvalidHandshake",
    "InvalidHeader",
    "InvalidStatus",
    "InvalidURI",
    "NegotiationError",
    "PayloadTooBig",
    "ProtocolError",
    "WebSocketError",
]

# RFC 6455 §7.4.1: 1000 and 1001 end a connection normally; an empty close
# frame (reported as 1005) carries no complaint either.
OK_CLOSE_CODES = frozenset({1000, 1001, 1005})


class WebSocketError(Exception):
    """Base class of every exception defined by trio_ws.

    Catch it to handle any WebSocket-level failure in one place; OS-level
    errors while connecting remain :class:`OSError`.
    """


class ConnectionClosed(WebSocketError):
    """The connection is closed, so the operation you called cannot run.

    Raised by ``recv()``, ``send()`` and ``ping()`` once the connection is
    closing or closed. ``rcvd`` is the close frame the peer sent and ``sent``
    the one we sent (either may be ``None``); ``rcvd_then_sent`` says which
    came first when both exist. When the TCP connection was lost, the
    exception's ``__cause__`` is the error behind it.

    You usually catch one of the two subclasses: :class:`ConnectionClosedOK`
    for a normal close, :class:`ConnectionClosedError` for anything else.
    """

    def __init__(
        self,
        rcvd: Close | None,
        sent: Close | None,
        rcvd_then_sent: bool | None = None,
    ) -> None:
        self.rcvd = rcvd
        self.sent = sent
        self.rcvd_then_sent = rcvd_then_sent
        super().__init__(rcvd, sent, rcvd_then_sent)

    def __str__(self) -> str:
        if self.rcvd is None:
            if self.sent is None:
                return "no close frame received or sent"
            return f"sent {self.sent}; no close frame received"
        if self.sent is None:
            return f"received {self.rcvd}; no close frame sent"
        if self.rcvd_then_sent:
            return f"received {self.rcvd}; then sent {self.sent}"
        return f"sent {self.sent}; then received {self.rcvd}"

    @property
    def code(self) -> int:
        """The close code of the connection: the one received, else 1006."""
        if self.rcvd is not None:
            return self.rcvd.code
        return 1006

    @property
    def reason(self) -> str:
        """The close reason received from the peer, or ``""``."""
        return "" if self.rcvd is None else self.rcvd.reason


class ConnectionClosedOK(ConnectionClosed):
    """The connection closed normally (1000, 1001, or a close with no code).

    ``async for message in ws`` treats this as the end of the stream and
    stops quietly.
    """


class ConnectionClosedError(ConnectionClosed):
    """The connection closed with an error, or without a closing handshake.

    Read the message: ``no close frame received or sent`` means the TCP
    connection was lost (see ``__cause__``); ``sent 1011 (internal error)
    keepalive ping timeout; no close frame received`` means the peer stopped
    answering pings within ``ping_timeout``.
    """


class InvalidHandshake(WebSocketError):
    """The opening handshake failed; no WebSocket connection was established."""


class InvalidURI(InvalidHandshake):
    """The URL is not a valid ``ws://`` or ``wss://`` URL."""

    def __init__(self, uri: str, msg: str) -> None:
        self.uri = uri
        self.msg = msg
        super().__init__(uri, msg)

    def __str__(self) -> str:
        return f"{self.uri} isn't a valid URI: {self.msg}"


class InvalidStatus(InvalidHandshake):
    """The server answered the upgrade request with a status other than 101.

    ``response`` holds the whole HTTP response (status, headers, the start of
    the body), so you can tell a 401 from a 503 and read what the server said.
    """

    def __init__(self, response: Response) -> None:
        self.response = response
        super().__init__(response)

    def __str__(self) -> str:
        return f"server rejected WebSocket connection: HTTP {self.response.status_code}"


class InvalidHeader(InvalidHandshake):
    """A handshake header is missing or has a value we cannot accept."""

    def __init__(self, name: str, value: str | None = None, explanation: str = "") -> None:
        self.name = name
        self.value = value
        self.explanation = explanation
        super().__init__(name, value, explanation)

    def __str__(self) -> str:
        if self.value is None:
            text = f"missing {self.name} header"
        elif self.value == "":
            text = f"empty {self.name} header"
        else:
            text = f"invalid {self.name} header: {self.value}"
        return f"{text} ({self.explanation})" if self.explanation else text


class NegotiationError(InvalidHandshake):
    """Subprotocol or extension negotiation failed."""


class ProtocolError(WebSocketError):
    """Someone broke RFC 6455.

    Raised at once when you ask the sans-IO core for something the protocol
    forbids in its current state (a data frame after the close frame). When
    the *peer* breaks the protocol, the connection is failed with close code
    1002 and this exception becomes the ``__cause__``
    of the :class:`ConnectionClosedError` you see.
    """


class PayloadTooBig(WebSocketError):
    """A message exceeded ``max_size``.

    The connection is failed with close code 1009; this exception becomes the
    ``__cause__`` of the :class:`ConnectionClosedError` you see. Raise
    ``max_size`` (or set it to ``None``) if the peer legitimately sends larger
    messages.
    """


class ConcurrencyError(WebSocketError, RuntimeError):
    """Two tasks called ``recv()`` (or iterated the connection) at once.

    Each message goes to exactly one caller, so concurrent readers would see
    an arbitrary interleaving. Read in one task and hand messages to others
    through a memory channel, or use ``async for`` in a single task.
    """
