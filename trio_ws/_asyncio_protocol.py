"""The connection's own asyncio protocol, and a socket stream on top of it.

On asyncio, anyio's socket stream reads through a protocol that queues what
arrives and wakes the reading task; ``receive()`` resumes reading for the
wait and pauses it again after each chunk (two ``epoll_ctl`` calls per read
on uvloop), and splits chunks larger than it was asked for by copying the
rest; ``send()`` waits on an event even when the transport took everything.
Each connection also carries that protocol's queue and two events, and the
stream's guards, for as long as it lives. A WebSocket connection does better
to read as asyncio means it to: a protocol whose ``data_received`` hands the
bytes to the connection's machine at once, so a message reaches the task
waiting in ``recv()`` in one pass of the event loop instead of two.

A :class:`ConnectionProtocol` has two lives. Until a connection attaches to
it, it buffers what arrives for :class:`ProtocolStream`, an anyio socket
stream that the opening handshake (or a TLS layer) reads and writes like any
other. Once attached, it feeds the connection directly. Clients connect
into one (:func:`from_socket`), and :func:`adopt` swaps one in under a
socket stream that anyio made (a server's accepted connections), with
whatever anyio's protocol had queued; anyio's stream is then dropped.

The connection's reader task stays what it is on every backend, the owner of
the connection's lifetime: it waits for the callbacks to say the queue is
full or the transport should close. Writes go to the transport directly,
with a high-water mark of zero as anyio sets it: a write that the transport
cannot pass on at once waits until its buffer drains.
"""

from __future__ import annotations

import asyncio
import socket
from typing import TYPE_CHECKING, Any, Protocol

import anyio
import anyio.abc

from ._streams import socket_address

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from ._waits import Waits, Wakeup

__all__ = [
    "ConnectionProtocol",
    "ProtocolStream",
    "Receiver",
    "adopt",
    "from_socket",
]

#: Bytes buffered for ProtocolStream.receive() before reading pauses.
PENDING_LIMIT = 2**16


class Receiver(Protocol):
    """What the protocol calls on the connection (``WebSocketConnection``)."""

    def _data_received(self, data: bytes, /) -> None: ...

    def _transport_eof(self) -> None: ...

    def _transport_lost(self, exc: Exception | None, /) -> None: ...

    def _writing_resumed(self) -> None: ...

    @property
    def write_limit(self) -> int | None: ...


class ConnectionProtocol(asyncio.Protocol):
    """Buffers for a :class:`ProtocolStream`, then feeds a connection, from
    its transport; writes to it."""

    __slots__ = (
        "_drained",
        "_eof",
        "_error",
        "_lost",
        "_pending",
        "_pending_size",
        "_readable",
        "_reading_paused",
        "_receiver",
        "_waits",
        "_writing_paused",
        "transport",
    )

    transport: asyncio.Transport

    def __init__(self, waits: Waits) -> None:
        self._waits = waits
        self._receiver: Receiver | None = None
        self._writing_paused = False
        self._drained: Wakeup | None = None
        self._error: Exception | None = None
        # Until a connection attaches: what arrived, and who waits for more.
        # A list: it holds a chunk or two (a request, a TLS record), and an
        # empty deque would cost ten times its size for the connection's life.
        self._pending: list[bytes] = []
        self._pending_size = 0
        self._readable: Wakeup | None = None
        self._reading_paused = False
        self._eof = False  # eof_received() or connection_lost() was called
        self._lost = False  # connection_lost() was called

    # -- callbacks from the transport ------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.transport.set_write_buffer_limits(0)

    def data_received(self, data: bytes) -> None:
        receiver = self._receiver
        if receiver is not None:
            receiver._data_received(data)
            return
        self._pending.append(data)
        self._pending_size += len(data)
        if self._pending_size >= PENDING_LIMIT and not self._reading_paused:
            self._reading_paused = True
            self.transport.pause_reading()
        self._wake_reader()

    def eof_received(self) -> bool:
        self._eof = True
        if self._receiver is not None:
            self._receiver._transport_eof()
        else:
            self._wake_reader()
        # Keep the transport: the connection closes it when its closing is over.
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self._error = exc
        self._eof = self._lost = True
        self._writing_paused = False
        self._wake_writer()
        if self._receiver is not None:
            self._receiver._transport_lost(exc)
        else:
            self._wake_reader()

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        self._wake_writer()
        if self._receiver is not None:
            self._receiver._writing_resumed()

    def _wake_writer(self) -> None:
        drained = self._drained
        if drained is not None:
            self._drained = None
            drained.set()

    def _wake_reader(self) -> None:
        readable = self._readable
        if readable is not None:
            self._readable = None
            readable.set()

    # -- what the connection calls ---------------------------------------------

    def attach(self, receiver: Receiver) -> None:
        """Feed ``receiver`` from now on, starting with what is buffered."""
        self._receiver = receiver
        pending = self._pending
        self._pending = []
        self._pending_size = 0
        for chunk in pending:
            receiver._data_received(chunk)
        if self._lost:
            receiver._transport_lost(self._error)
        elif self._eof:
            receiver._transport_eof()
        else:
            self.resume_reading()

    def detach(self) -> None:
        """Stop feeding the receiver, whose connection is closed.

        The receiver holds the protocol; the protocol's reference back made
        a cycle that kept a closed connection, and all it holds, alive until
        the garbage collector's next full pass (about 40 objects each).
        """
        self._receiver = None

    def try_write(self, data: bytes) -> int:
        """Write ``data`` if the transport's buffer has room for it and say
        how much it took: all or nothing.

        The caller makes sure that nothing of its own waits to be written
        first. Room: the buffer is empty or, once a connection is attached,
        holds at most its ``write_limit``, the most its ``send()`` lets wait
        in the transport (see ``WebSocketConnection._wait_for_room``).
        """
        transport = self.transport
        if self._writing_paused:
            receiver = self._receiver
            if receiver is None:
                return 0
            limit = receiver.write_limit
            if limit is not None and transport.get_write_buffer_size() > limit:
                return 0
        if transport.is_closing():
            return 0
        transport.write(data)
        return len(data)

    def buffered(self) -> int:
        """How many bytes wait in the transport's buffer."""
        return self.transport.get_write_buffer_size() if self._writing_paused else 0

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

    def call_at(self, when: float, callback: Callable[[], object]) -> asyncio.TimerHandle:
        """Call ``callback`` at ``when`` on the event loop's clock."""
        return asyncio.get_running_loop().call_at(when, callback)

    def pause_reading(self) -> None:
        self._reading_paused = True
        self.transport.pause_reading()

    def resume_reading(self) -> None:
        self._reading_paused = False
        self.transport.resume_reading()


class ProtocolStream(anyio.abc.SocketStream):
    """anyio's socket stream on asyncio, over a :class:`ConnectionProtocol`.

    Until a connection attaches to the protocol, ``receive()`` reads what it
    buffered; ``send()`` writes to the transport and, as anyio's stream does,
    returns once the transport's buffer is empty. Socket attributes come
    from what the transport learnt when it was made: no system call each.
    """

    def __init__(self, transport: asyncio.Transport, protocol: ConnectionProtocol) -> None:
        self._transport = transport
        self.protocol = protocol
        self._closed = False

    @property
    def _raw_socket(self) -> socket.socket:
        return self._transport.get_extra_info("socket")  # type: ignore[no-any-return]

    def peer_addresses(self) -> tuple[Any, Any, socket.socket]:
        """``(remote_address, local_address, raw_socket)`` as the attributes
        give them, for :func:`~trio_ws._streams.peer_addresses`."""
        transport = self._transport
        return (
            socket_address(transport.get_extra_info("peername")),
            socket_address(transport.get_extra_info("sockname")),
            transport.get_extra_info("socket"),
        )

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        transport = self._transport
        sock = transport.get_extra_info("socket")
        family = sock.family
        local = socket_address(transport.get_extra_info("sockname"))
        remote = socket_address(transport.get_extra_info("peername"))
        attributes: dict[Any, Callable[[], Any]] = {
            anyio.abc.SocketAttribute.family: lambda: family,
            anyio.abc.SocketAttribute.local_address: lambda: local,
            anyio.abc.SocketAttribute.raw_socket: lambda: sock,
        }
        if remote is not None:
            attributes[anyio.abc.SocketAttribute.remote_address] = lambda: remote
        if family in (socket.AF_INET, socket.AF_INET6):
            attributes[anyio.abc.SocketAttribute.local_port] = lambda: local[1]
            if remote is not None:
                attributes[anyio.abc.SocketAttribute.remote_port] = lambda: remote[1]
        return attributes

    async def receive(self, max_bytes: int = 65536) -> bytes:
        if max_bytes < 1:
            raise ValueError("max_bytes must be a positive integer")
        protocol = self.protocol
        if protocol._receiver is not None:
            raise anyio.BusyResourceError("reading from")
        pending = protocol._pending
        if pending:
            await protocol._waits.checkpoint()
        while not pending:
            if self._closed:
                raise anyio.ClosedResourceError
            if protocol._eof:
                if protocol._error is not None:
                    raise anyio.BrokenResourceError from protocol._error
                raise anyio.EndOfStream
            if protocol._readable is not None:
                raise anyio.BusyResourceError("reading from")
            protocol._readable = readable = protocol._waits.new_wakeup()
            try:
                await readable.wait()
            finally:
                protocol._readable = None
        chunk = pending.pop(0)
        if len(chunk) > max_bytes:
            chunk, rest = chunk[:max_bytes], chunk[max_bytes:]
            pending.insert(0, rest)
        protocol._pending_size -= len(chunk)
        if protocol._reading_paused and protocol._pending_size < PENDING_LIMIT // 2:
            protocol.resume_reading()
        return chunk

    async def send(self, item: bytes) -> None:
        protocol = self.protocol
        if self._closed:
            raise anyio.ClosedResourceError
        await protocol._waits.checkpoint_if_cancelled()
        if protocol.try_write(item):
            # Return once the transport passed it all on, as anyio's stream
            # does: aclose() aborts the transport, and what it held is lost.
            if protocol._writing_paused:
                await protocol.wait_drained()
        else:
            try:
                await protocol.send(item)
            except anyio.BrokenResourceError:
                if self._closed:
                    raise anyio.ClosedResourceError from None
                raise
        if self._closed:
            raise anyio.ClosedResourceError

    async def send_eof(self) -> None:
        try:
            self._transport.write_eof()
        except OSError:
            pass

    def close(self) -> None:
        """Close at once: abort the transport (what it still buffers is lost)."""
        if not self._closed:
            self._closed = True
            self.protocol._wake_reader()
            self._transport.abort()

    async def aclose(self) -> None:
        self.close()
        await anyio.lowlevel.checkpoint()


async def from_socket(sock: socket.socket, waits: Waits) -> ProtocolStream:
    """A :class:`ProtocolStream` over a connected socket (which it then owns)."""
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.connect_accepted_socket(
        lambda: ConnectionProtocol(waits), sock
    )
    return ProtocolStream(transport, protocol)


_TRANSPORT_METHODS = (
    "get_protocol",
    "set_protocol",
    "is_closing",
    "write",
    "get_write_buffer_size",
    "pause_reading",
    "resume_reading",
)


def adopt(stream: anyio.abc.ByteStream, waits: Waits) -> ProtocolStream | None:
    """A :class:`ProtocolStream` on the transport of ``stream``, if it is
    anyio's plain socket stream on asyncio, open and not at EOF; else None,
    and ``stream`` is left be. Bytes anyio's protocol had queued come first.
    ``stream`` must not be used afterwards: the new stream owns the transport.
    """
    if isinstance(stream, ProtocolStream):
        return stream
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
    protocol = ConnectionProtocol(waits)
    protocol.transport = transport
    for chunk in old.read_queue:
        protocol._pending.append(chunk)
        protocol._pending_size += len(chunk)
    old.read_queue.clear()
    transport.set_protocol(protocol)
    # anyio sets a high-water mark of 0, so the transport says it is paused
    # as soon as anything stays in its buffer; keep it.
    protocol._writing_paused = transport.get_write_buffer_size() > 0
    # anyio reads only while receive() waits; the protocol reads on its own.
    protocol.resume_reading()
    return ProtocolStream(transport, protocol)
