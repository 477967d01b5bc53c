"""The sans-IO core of trio_ws: RFC 6455 frames and closing, the HTTP/1.1
upgrade handshake and RFC 7692 permessage-deflate.

Nothing in this package performs I/O, reads a clock or imports an event loop:
feed it bytes, read events and bytes to send. The I/O layer in
:mod:`trio_ws` drives it; you can drive it yourself, too.
"""

from .deflate import DeflateConfig, PerMessageDeflate
from .frames import Close, CloseCode, Frame, Opcode
from .handshake import ClientHandshake, ServerHandshake, accept_key, select_subprotocol
from .http import Headers, Request, Response, make_response
from .machine import (
    BinaryMessage,
    Event,
    Ping,
    Pong,
    Role,
    State,
    TextMessage,
    WebSocketMachine,
)

__all__ = [
    "BinaryMessage",
    "ClientHandshake",
    "Close",
    "CloseCode",
    "DeflateConfig",
    "Event",
    "Frame",
    "Headers",
    "Opcode",
    "PerMessageDeflate",
    "Ping",
    "Pong",
    "Request",
    "Response",
    "Role",
    "ServerHandshake",
    "State",
    "TextMessage",
    "WebSocketMachine",
    "accept_key",
    "make_response",
    "select_subprotocol",
]
