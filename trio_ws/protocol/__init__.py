"""The sans-IO core of trio_ws: RFC 6455 frames and closing, the HTTP/1.1
upgrade handshake and RFC 7692 permessage-deflate.

Nothing in this package performs I/O, reads a clock or imports an event loop:
feed it bytes, read events and bytes to send. The I/O layer in
:mod:`trio_ws` drives it; you can drive it yourself, too.
"""

from .frames import Close, CloseCode, Frame, Opcode
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
    "Close",
    "CloseCode",
    "Event",
    "Frame",
    "Opcode",
    "Ping",
    "Pong",
    "Role",
    "State",
    "TextMessage",
    "WebSocketMachine",
]
