"""trio_ws: WebSocket client and server for trio, and for asyncio through anyio.

::

    async with trio_ws.open_websocket_url("ws://127.0.0.1:8765/") as ws:
        await ws.send("hello")
        print(await ws.recv())
"""

from .client import (
    ReconnectingWebSocket,
    connect_websocket,
    connect_websocket_url,
    open_reconnecting_websocket,
    open_websocket,
    open_websocket_url,
    wrap_client_stream,
)
from .connection import PongWaiter, WebSocketConnection
from .exceptions import (
    ConcurrencyError,
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    InvalidHandshake,
    InvalidHeader,
    InvalidStatus,
    InvalidURI,
    NegotiationError,
    PayloadTooBig,
    ProtocolError,
    WebSocketError,
)
from .protocol.deflate import DeflateConfig
from .protocol.frames import CloseCode
from .protocol.handshake import Headers, Request, Response, make_response
from .protocol.machine import State
from .server import WebSocketServer, serve_websocket, wrap_server_stream

__version__ = "0.1.0.dev0"

__all__ = [
    "CloseCode",
    "ConcurrencyError",
    "ConnectionClosed",
    "ConnectionClosedError",
    "ConnectionClosedOK",
    "DeflateConfig",
    "Headers",
    "InvalidHandshake",
    "InvalidHeader",
    "InvalidStatus",
    "InvalidURI",
    "NegotiationError",
    "PayloadTooBig",
    "PongWaiter",
    "ProtocolError",
    "ReconnectingWebSocket",
    "Request",
    "Response",
    "State",
    "WebSocketConnection",
    "WebSocketError",
    "WebSocketServer",
    "connect_websocket",
    "connect_websocket_url",
    "make_response",
    "open_reconnecting_websocket",
    "open_websocket",
    "open_websocket_url",
    "serve_websocket",
    "wrap_client_stream",
    "wrap_server_stream",
]

# Show the public path in reprs, tracebacks and docs, as trio does.
for _name in __all__:
    _obj = globals()[_name]
    if getattr(_obj, "__module__", "").startswith("trio_ws.") and _obj.__module__ != __name__:
        try:
            _obj.__module__ = __name__
        except (AttributeError, TypeError):  # pragma: no cover  # immutable objects
            pass
del _name, _obj
