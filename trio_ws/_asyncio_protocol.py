"""The connection's own asyncio protocol, on the transport of anyio's stream.

On asyncio, anyio's socket stream reads through a protocol that queues what
arrives and wakes the reading task; ``receive()`` resumes reading for the
wait and pauses it again after each chunk (two ``epoll_ctl`` calls per read
on uvloop), and splits chunks larger than it was asked for by copying the
rest. A WebSocket connection does better to read as asyncio means it to: a
protocol whose ``data_received`` hands the bytes to the connection's
machine at once, so a message reaches the task waiting in ``recv()`` in one
pass of the event loop instead of two.

Once the opening handshake is over, :func:`take_over` swaps a
:class:`ConnectionProtocol` in for anyio's, with what anyio's had queued. The
connection's reader task stays what it is on every backend, the owner of the
connection's lifetime: it waits for the callbacks to say the queue is full
or the transport should close. Writes go to the transport directly, with
anyio's flow control: a write that the transport cannot pass on at once
waits until its buffer drains.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Protocol

import anyio
import anyio.abc

if TYPE_CHECKING:
    from ._waits import Waits, Wakeup

__all__ = ["ConnectionProtocol", "Receiver", "take_over"]


class Receiver(Protocol):
    """What the protocol calls on the connection (``WebSocketConnection``)."""

    def _data_received(self, data: bytes, /) -> None: ...

    def _transport_eof(self) -> None: ...

    def _transport_lost(self, exc: Exception | None, /) -> None: ...


class ConnectionProtocol(asyncio.Protocol):
    """Feeds a connection from its transport and writes to it."""

    __slots__ = ("_drained", "_error", "_receiver", "_waits", "_writing_paused", "transport")

    def __init__(self, receiver: Receiver, transport: asyncio.Transport, waits: Waits) -> None:
        self._receiver = receiver
        self.transport = transport
        self._waits = waits
        self._writing_paused = False
        self._drained: Wakeup | None = None
        self._error: Exception | None = None

    # -- callbacks from the transport ------------------------------------------

    def data_received(self, data: bytes) -> None:
        self._receiver._data_received(data)

    def eof_received(self) -> bool:
        self._receiver._transport_eof()
        # Keep the transport: the connection closes it when its closing is over.
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self._error = exc
        self._writing_paused = False
        self._wake_writer()
        self._receiver._transport_lost(exc)

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        self._wake_writer()

    def _wake_writer(self) -> None:
        drained = self._drained
        if drained is not None:
            self._drained = None
            drained.set()

    # -- what the connection calls ---------------------------------------------

    def try_write(self, data: bytes) -> int:
        """Write ``data`` if nothing is waiting in the transport's buffer (so
        nothing can be overtaken) and say how much it took: all or nothing."""
        transport = self.transport
        if self._writing_paused or transport.is_closing():
            return 0
        transport.write(data)
        return len(data)

    async def send(self, data: bytes) -> None:
        """Write ``data``; return once the transport has passed it all on.

        Raises:
            anyio.BrokenResourceError: the connection is lost or closed.
        """
        await self.wait_drained()  # raises if the transport is closing
        self.transport.write(data)
        await self.wait_drained()

    async def wait_drained(self) -> None:
        """Wait until the transport's write buffer is empty (or lost)."""
        while self._writing_paused:
            self._drained = drained = self._waits.new_wakeup()
            try:
                await drained.wait()
            finally:
                self._drained = None
        self._check_open()

    def _check_open(self) -> None:
        if self.transport.is_closing():
            raise anyio.BrokenResourceError from self._error

    def pause_reading(self) -> None:
        self.transport.pause_reading()

    def resume_reading(self) -> None:
        self.transport.resume_reading()


_TRANSPORT_METHODS = (
    "get_protocol",
    "set_protocol",
    "is_closing",
    "write",
    "get_write_buffer_size",
    "pause_reading",
    "resume_reading",
)


def take_over(
    stream: anyio.abc.ByteStream, receiver: Receiver, waits: Waits
) -> ConnectionProtocol | None:
    """Put a :class:`ConnectionProtocol` under ``stream``, if it is anyio's
    plain socket stream on asyncio, open and not at EOF; else return None
    and leave it be. Bytes anyio's protocol had queued go to ``receiver``
    first, in order."""
    transport: Any = getattr(stream, "_transport", None)
    old: Any = getattr(stream, "_protocol", None)  # anyio's StreamProtocol
    if (
        type(stream).__module__ != "anyio._backends._asyncio"
        # uvloop's transports have asyncio's methods but not its classes.
        or not all(callable(getattr(transport, name, None)) for name in _TRANSPORT_METHODS)
        or transport.is_closing()
        or getattr(old, "is_at_eof", True)
        or getattr(old, "exception", None) is not None
        or transport.get_protocol() is not old
    ):
        return None
    queued = old.read_queue
    old.read_event.clear()
    protocol = ConnectionProtocol(receiver, transport, waits)
    transport.set_protocol(protocol)
    # anyio sets a high-water mark of 0, so the transport says it is paused
    # as soon as anything stays in its buffer; keep it.
    protocol._writing_paused = transport.get_write_buffer_size() > 0
    while queued:
        receiver._data_received(queued.popleft())
    transport.resume_reading()
    return protocol
