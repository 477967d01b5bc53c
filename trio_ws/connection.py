"""The WebSocket connection: a sans-IO machine driven by three tasks.

Theory of operation
-------------------

A :class:`WebSocketConnection` wraps one byte stream and one
:class:`~trio_ws.protocol.machine.WebSocketMachine`. Once the opening
handshake is done, :meth:`WebSocketConnection._start` runs three tasks in the
task group (nursery) of the ``async with`` that opened the connection, each
under its own cancel scope:

* the **reader** owns the receiving half of the stream and, at the end, the
  stream itself. It reads large chunks, feeds the machine, appends whole
  messages to a queue for :meth:`~WebSocketConnection.recv`, resolves pong
  waiters and moves whatever the machine wants to send (pongs, the close
  echo) to the outbox. It stops reading while ``max_queue`` messages, or
  1 MiB of them, wait unread. When the machine says so it leaves its loop,
  lets the writer flush, closes the stream and wakes everybody.
* the **writer** owns the sending half. It sleeps until the outbox is not
  empty, then writes everything queued in one call: frames queued while it
  was busy go out together.
* the **heartbeat** sends a ping every ``ping_interval`` seconds and fails the
  connection with 1011 if the pong does not come within ``ping_timeout``.

User-facing methods never touch the stream. ``send()`` waits for room
(``write_limit``), then hands the frame to the machine and its bytes to the
outbox synchronously, so a cancelled ``send()`` has either queued its whole
message or nothing. ``recv()`` only ever waits for the queue, so a cancelled
``recv()`` loses nothing. Closing sets a deadline (``close_timeout``) on the
reader's cancel scope; whatever happens, the reader's ``finally`` closes the
stream, so no task outlives the connection. A cancellation from outside (the
task group's scope, or one around the ``async with``) stops all three tasks
at once; then the reader's ``finally`` also finishes the closing handshake
itself, with 1001 unless a close was already under way, still within
``close_timeout``, since the writer is gone.

Only the machine holds protocol state; this module holds queues, events and
timers.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import socket
import time
import uuid
from collections import deque
from collections.abc import (
    AsyncIterable,
    Awaitable,
    Callable,
    Generator,
    Iterable,
    Mapping,
)
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc
import anyio.lowlevel

from ._asyncio_protocol import ConnectionProtocol, ProtocolStream, adopt
from ._streams import RECEIVE_SIZE, as_byte_stream, close_socket, peer_addresses
from ._tasks import (
    CancelScope,
    TaskGroup,
    TaskStarter,
    cancel_scope,
    connection_task_group,
    move_on_after,
    running_on_trio,
)
from ._waits import Latch, Wakeup, wait_functions
from .exceptions import (
    OK_CLOSE_CODES as _OK_CLOSE_CODES,
)
from .exceptions import (
    ConcurrencyError,
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
)
from .protocol.frames import CloseCode
from .protocol.machine import (
    BinaryMessage,
    Pong,
    Role,
    State,
    TextMessage,
    WebSocketMachine,
)

if TYPE_CHECKING:
    import asyncio
    from types import TracebackType

    from ._streams import TrioStreamLike
    from .protocol.deflate import PerMessageDeflate
    from .protocol.handshake import ClientHandshake, Request, Response, ServerHandshake

__all__ = ["ConnectionContext", "PongWaiter", "WebSocketConnection"]

Data = str | bytes
BytesLike = bytes | bytearray | memoryview


class PongWaiter:
    """Returned by :meth:`WebSocketConnection.ping`: await it for the latency.

    ``await waiter`` (or ``await waiter.wait()``) returns the round-trip time
    in seconds once the matching pong arrives, and raises
    :class:`~trio_ws.exceptions.ConnectionClosed` if the connection closes
    first. Wrap it in a cancel scope to give up waiting.
    """

    def __init__(self) -> None:
        self._event = anyio.Event()
        self._latency: float | None = None
        self._error: ConnectionClosed | None = None

    def _resolve(self, latency: float) -> None:
        self._latency = latency
        self._event.set()

    def _abort(self, error: ConnectionClosed) -> None:
        self._error = error
        self._event.set()

    def done(self) -> bool:
        """Tell whether the pong arrived or the connection closed."""
        return self._event.is_set()

    async def wait(self) -> float:
        """Wait for the pong and return the round-trip time in seconds.

        Cancellation:
            Safe. The ping stays outstanding; wait again or drop the waiter.
        """
        await self._event.wait()
        if self._error is not None:
            raise self._error
        assert self._latency is not None
        return self._latency

    def __await__(self) -> Generator[Any, None, float]:
        return self.wait().__await__()


class WebSocketConnection:
    """One open WebSocket connection, client or server side.

    You get one from :func:`~trio_ws.open_websocket_url` (and friends) or as
    the argument of your server handler; you do not create it yourself,
    except through the ``create_connection`` hook, which lets you pass a
    subclass (bind extra arguments with :func:`functools.partial`).

    Read with :meth:`recv` or ``async for message in ws``; write with
    :meth:`send`. Timeouts are cancel scopes:
    ``with trio.move_on_after(5): message = await ws.recv()``.
    """

    # Slots: a busy server holds thousands of these; a subclass made for
    # ``create_connection`` gets a __dict__ for its own attributes as usual.
    __slots__ = (
        "_close_requested",
        "_closed",
        "_closing_deadline",
        "_closing_timer",
        "_drained",
        "_eager_socket",
        "_eager_write",
        "_flushed",
        "_fragment_done",
        "_fragmenting",
        "_handed_at",
        "_heartbeat_scope",
        "_heartbeat_stopped",
        "_heartbeat_timer",
        "_heartbeat_wakeup",
        "_id",
        "_lent",
        "_logger",
        "_machine",
        "_messages",
        "_outbox",
        "_pings",
        "_protocol",
        "_queued_bytes",
        "_reader_resume",
        "_reader_scope",
        "_reader_wakeup",
        "_recv_busy",
        "_recv_reading",
        "_recv_waiter",
        "_request",
        "_response",
        "_resume_at",
        "_send_room",
        "_stream",
        "_streaming",
        "_task_group",
        "_transport_error",
        "_turn_began",
        "_unsent",
        "_waits",
        "_write_interrupted",
        "_writer_exited",
        "_writer_scope",
        "_writer_wakeup",
        "close_timeout",
        "latency",
        "local_address",
        "max_queue",
        "max_size",
        "ping_interval",
        "ping_timeout",
        "remote_address",
        "role",
        "subprotocol",
        "write_limit",
    )

    def __init__(
        self,
        stream: anyio.abc.ByteStream | TrioStreamLike,
        role: Role,
        *,
        max_size: int | None = 2**20,
        max_queue: int | None = 16,
        write_limit: int | None = 2**15,
        ping_interval: float | None = 20.0,
        ping_timeout: float | None = 20.0,
        close_timeout: float | None = 10.0,
        logger: logging.Logger | logging.LoggerAdapter[Any] | None = None,
    ) -> None:
        self._check_options(
            max_size=max_size,
            max_queue=max_queue,
            write_limit=write_limit,
            ping_interval=ping_interval,
            ping_timeout=ping_timeout,
            close_timeout=close_timeout,
        )
        self._stream = as_byte_stream(stream)
        self._waits = waits = wait_functions()
        if not running_on_trio():
            # On asyncio, read and write through a protocol of our own from
            # the opening handshake on (see _asyncio_protocol).
            self._stream = adopt(self._stream, waits) or self._stream
        self.role: Role = role
        self._id: uuid.UUID | None = None
        # The adapter is made on first use: most connections never log.
        self._logger: logging.Logger | logging.LoggerAdapter[Any] = logger or _ROLE_LOGGERS[role]
        self.max_size: int | None = max_size
        self.max_queue: int | None = max_queue
        self.write_limit: int | None = write_limit
        self.ping_interval: float | None = ping_interval
        self.ping_timeout: float | None = ping_timeout
        self.close_timeout: float | None = close_timeout
        self._request: Request | None = None
        self._response: Response | None = None
        #: The subprotocol agreed during the handshake, or None.
        self.subprotocol: str | None = None
        #: Round-trip time of the last ping answered, in seconds (0 before).
        self.latency: float = 0.0
        remote, local, raw_socket = peer_addresses(self._stream)
        #: The peer's address, as the socket reports it (``(host, port)`` for
        #: TCP; behind a proxy, see the ``X-Forwarded-For`` request header).
        self.remote_address: Any = remote
        #: Our own address on this connection.
        self.local_address: Any = local

        self._machine: WebSocketMachine | None = None
        # Made on the first message: an idle connection does not pay for it.
        self._messages: deque[Data] | None = None
        self._queued_bytes = 0  # their total length (see _QUEUE_BYTES)
        # Resume reading once the queue is half empty, not after every recv():
        # fewer wake-ups of the reader under a steady flow.
        self._resume_at = max(1, (max_queue or 1) // 2)
        # One-waiter hand-offs between tasks use wakeups, lighter than events
        # (self._waits, above).
        self._recv_waiter: Wakeup | None = None
        self._recv_busy = False
        # When the running task's turn began at the latest, as far as this
        # connection knows: see _checkpoint().
        self._turn_began = -math.inf
        self._reader_resume: Wakeup | None = None
        # Set by the asyncio protocol; on trio, by whoever ends the reader's
        # loan of the socket to recv() (see _read_until_close()).
        self._reader_wakeup: Wakeup | None = None
        # The reader lent the socket to recv(): see _read_until_close().
        self._lent = False
        self._recv_reading = False  # recv() is waiting on or reading the socket
        # When the reader last woke recv() with a message (none yet: lend the
        # socket at the first; see _read_until_close()).
        self._handed_at = math.inf
        # The last read from the socket took all there was (trio's plain
        # socket): the next one waits first. At the start too, most likely:
        # the opening handshake's last read was a short one.
        self._drained = True
        self._outbox: list[bytes] = []
        # Set by a direct write, cleared by a wait for input: while it is set,
        # the sender is sending again before anything came back, a stream of
        # messages, and the writer gathers them into fewer, larger writes.
        self._streaming = False
        self._unsent = 0  # bytes in the outbox or being written
        # The idle writer's wakeup: None while it writes. Until something
        # first has to wait for it, the writer does not run at all (see
        # _start_writer): an idle connection, or one whose every frame went
        # straight to the socket, carries no writer task.
        self._writer_wakeup: Wakeup | None = _WRITER_NOT_STARTED
        self._send_room: anyio.Event | None = None  # set when _unsent drops
        self._flushed: Wakeup | None = None  # set when nothing is unsent
        self._fragmenting = False  # a fragmented message is being sent
        self._fragment_done: anyio.Event | None = None
        self._pings: dict[bytes, tuple[float, PongWaiter]] = {}
        # None on asyncio's protocol path: the reader there only waits on
        # wakeups, which closing sets, and a timer ends the closing handshake.
        self._reader_scope: CancelScope | None = (
            None if isinstance(self._stream, ProtocolStream) else cancel_scope()
        )
        self._closing_timer: asyncio.TimerHandle | None = None
        self._writer_scope: CancelScope | None = None  # from _start_writer()
        self._task_group: TaskStarter | None = None  # from _start()
        self._heartbeat_scope: CancelScope | None = None  # one per wait for a pong
        self._heartbeat_stopped = False
        self._heartbeat_timer: asyncio.TimerHandle | None = None  # until the first ping
        self._heartbeat_wakeup: Wakeup | None = None  # while waiting to ping
        # The stream's socket, if the opening handshake and then the tasks
        # may read and write it directly.
        self._eager_socket: socket.socket | None = _eager_socket(self._stream, raw_socket)
        self._eager_write: Callable[[bytes], int] | None = None
        # On asyncio, from _start(): ours, in place of the stream's protocol.
        self._protocol: ConnectionProtocol | None = None
        self._writer_exited = self._waits.new_wakeup()
        self._write_interrupted = False  # the writer died in the middle of a write
        self._closing_deadline = math.inf
        self._close_requested = False  # aclose() was called
        self._closed = Latch()
        self._transport_error: BaseException | None = None

    @staticmethod
    def _check_options(
        *,
        max_size: int | None = 2**20,
        max_queue: int | None = 16,
        write_limit: int | None = 2**15,
        ping_interval: float | None = 20.0,
        ping_timeout: float | None = 20.0,
        close_timeout: float | None = 10.0,
        logger: object = None,
    ) -> None:
        """Raise TypeError or ValueError for a bad connection option, at once."""
        _check_positive("max_size", max_size)
        _check_positive("max_queue", max_queue)
        _check_positive("write_limit", write_limit, allow_zero=True)
        _check_positive("ping_interval", ping_interval)
        _check_positive("ping_timeout", ping_timeout)
        _check_positive("close_timeout", close_timeout, allow_zero=True)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.role.value} {self.state.name} id={self.id}>"

    # -- attributes -----------------------------------------------------------

    @property
    def id(self) -> uuid.UUID:
        """A unique id, handy to correlate log lines (made on first use)."""
        if self._id is None:
            self._id = uuid.uuid4()
        return self._id

    @property
    def logger(self) -> logging.LoggerAdapter[Any]:
        """Logs what happens to this connection; records carry ``websocket``."""
        logger = self._logger
        if not isinstance(logger, _ConnectionLogger):
            logger = self._logger = _ConnectionLogger(logger, {"websocket": self})
        return logger

    @logger.setter
    def logger(self, logger: logging.Logger | logging.LoggerAdapter[Any]) -> None:
        self._logger = logger

    @property
    def state(self) -> State:
        """``CONNECTING`` during the handshake, then ``OPEN``, ``CLOSING`` and
        ``CLOSED`` once the TCP connection is closed."""
        if self._closed.is_set():
            return State.CLOSED
        machine = self._machine
        if machine is None:
            return State.CONNECTING
        return State.OPEN if machine.state is State.OPEN else State.CLOSING

    @property
    def close_code(self) -> int | None:
        """The close code received from the peer; 1006 if the connection
        closed without one; None while that is not known yet.

        It is known once ``recv()`` raises
        :class:`~trio_ws.exceptions.ConnectionClosed` (or ``async for``
        ends), even if the TCP connection is still closing.
        """
        # The machine's answer is final once it is CLOSED: it ignores any
        # input after a close frame, a failure or EOF.
        return None if self._machine is None else self._machine.close_code

    @property
    def close_reason(self) -> str | None:
        """The close reason received from the peer (``""`` without one);
        None while that is not known yet, as for :attr:`close_code`."""
        return None if self._machine is None else self._machine.close_reason

    @property
    def request(self) -> Request:
        """The opening handshake's HTTP request: ``path``, ``query``,
        ``headers`` (cookies live there: ``request.cookies``).

        Set before your server handler or your ``async with`` block runs (on
        a server, before ``process_request`` too).
        """
        if self._request is None:
            raise AttributeError("the opening handshake has not received a request yet")
        return self._request

    @request.setter
    def request(self, request: Request) -> None:
        self._request = request

    @property
    def response(self) -> Response:
        """The opening handshake's HTTP response (the 101, or a rejection).

        Set once the handshake is done.
        """
        if self._response is None:
            raise AttributeError("the opening handshake has no response yet")
        return self._response

    @response.setter
    def response(self, response: Response) -> None:
        self._response = response

    @property
    def extension(self) -> PerMessageDeflate | None:
        """The negotiated permessage-deflate codec, or None."""
        return None if self._machine is None else self._machine.extension

    # -- opening --------------------------------------------------------------

    def _open(
        self,
        handshake: ClientHandshake | ServerHandshake,
    ) -> None:
        """Switch to OPEN with what a successful handshake negotiated."""
        self.subprotocol = handshake.subprotocol
        self._machine = machine = WebSocketMachine(
            self.role, max_size=self.max_size, extension=handshake.extension
        )
        trailing_data = handshake.trailing_data
        if trailing_data:
            # Frames that arrived in the same read as the handshake.
            machine.receive_data(trailing_data)
            self._process()

    async def _receive_handshake(self) -> bytes:
        """Read the next bytes of the opening handshake, as ``stream.receive()``
        would: EndOfStream at EOF, BrokenResourceError if the connection is
        lost. A plain socket is read directly, and then only waiting is a
        schedule point."""
        sock = self._eager_socket
        if sock is None:
            return await self._stream.receive(RECEIVE_SIZE)
        await self._waits.checkpoint_if_cancelled()
        try:
            while True:
                try:
                    data = sock.recv(RECEIVE_SIZE)
                except BlockingIOError:
                    await self._waits.wait_readable(sock)
                    continue
                if not data:
                    raise anyio.EndOfStream
                return data
        except self._waits.io_errors as exc:
            raise _stream_error(exc) from exc

    async def _send_handshake(self, data: bytes) -> None:
        """Write the opening handshake's request or response, as
        ``stream.send()`` would; directly to a plain socket, as
        :meth:`_receive_handshake` reads it."""
        sock = self._eager_socket
        if sock is None:
            await self._stream.send(data)
            return
        await self._waits.checkpoint_if_cancelled()
        try:
            await self._send_all(sock, data)
        except self._waits.io_errors as exc:
            raise _stream_error(exc) from exc

    def _start(self, task_group: TaskStarter) -> None:
        """Run the reader and the heartbeat in ``task_group``; the writer
        starts there when first needed (:meth:`_start_writer`)."""
        sock = self._eager_socket  # chosen in __init__
        if sock is not None:
            self._eager_write = sock.send
        elif isinstance(self._stream, ProtocolStream):
            self._protocol = protocol = self._stream.protocol
            protocol.attach(self)
            self._eager_write = protocol.try_write
        self._task_group = task_group  # the writer starts when first needed
        # Constant names: a name per connection would cost a string per task.
        task_group.start_soon(self._reader, name="trio_ws reader")
        if self._outbox:
            self._start_writer()
        if self.ping_interval is not None and not self._heartbeat_stopped:
            if self._protocol is not None:
                # On asyncio's protocol path a timer waits for the first
                # ping: a connection closed before then (most short-lived
                # ones) never runs a heartbeat task, and an idle one holds
                # none until then.
                self._heartbeat_timer = self._protocol.call_at(
                    self._waits.current_time() + self.ping_interval, self._start_heartbeat
                )
            else:
                task_group.start_soon(self._heartbeat, name="trio_ws heartbeat")

    # -- receiving ------------------------------------------------------------

    async def recv(self) -> Data:
        """Wait for the next whole message: ``str`` if text, ``bytes`` if binary.

        Messages that arrived before the connection closed are returned
        first; then every call raises.

        Raises:
            ConnectionClosedOK: the connection closed normally.
            ConnectionClosedError: the connection failed; ``__cause__`` holds
                the underlying error.
            ConcurrencyError: another task is already waiting in ``recv()``.

        Cancellation:
            Safe at any point. A message is never lost or reordered because a
            ``recv()`` was cancelled; the next call returns it. Always a
            cancel point; with a message queued, a schedule point only once
            the task's turn is over (see the docs' *Cancellation* page).
        """
        if self._recv_busy:
            raise ConcurrencyError("recv() is already waiting for a message in another task")
        # Exactly one checkpoint, and every await comes before the message is
        # taken: a cancellation can never strand a message that was popped.
        # When we must wait anyway, the wait is the schedule point.
        if self._messages:
            await self._checkpoint()
        else:
            await self._waits.checkpoint_if_cancelled()
        messages = self._messages
        if not messages:
            self._recv_busy = True
            borrowed = False
            try:
                while not messages:
                    if self._no_more_messages():
                        raise self._closed_error()
                    self._streaming = False
                    if self._lent and self._machine.state is State.OPEN:  # type: ignore[union-attr]
                        # Wait on the socket the reader lent us (see
                        # _read_until_close), here rather than in a coroutine
                        # of its own: a busy server parks thousands of these.
                        borrowed = True
                        self._recv_reading = True
                        error = None
                        try:
                            if self._drained:
                                await self._wait_readable(self._eager_socket)  # type: ignore[arg-type]
                            else:
                                await self._waits.checkpoint()
                        except self._waits.io_errors as exc:
                            error = exc
                        finally:
                            self._recv_reading = False
                        self._read_lent_socket(error)
                    else:
                        if borrowed:
                            self._wake_reader()  # it took the socket back: read on
                        self._recv_waiter = waiter = self._waits.new_wakeup()
                        await waiter.wait()
                        self._recv_waiter = None
                    self._turn_began = _clock()
                    messages = self._messages
            finally:
                self._recv_busy = False
                self._recv_waiter = None
                if borrowed or self._lent:
                    # The reader takes the socket back, unless we are back first.
                    self._wake_reader()
        message = messages.popleft()
        self._queued_bytes -= len(message)
        if (
            self._reader_resume is not None
            and len(messages) < self._resume_at
            and self._queued_bytes < _QUEUE_BYTES // 2
        ):
            self._reader_resume.set()
        return message

    def _read_lent_socket(self, error: Exception | None) -> None:
        """Read the socket the reader lent recv(), now readable (or failed
        with ``error``), and process what came: the reader's own loop, once,
        in recv()'s task. The message then reaches recv() with no hand-off
        from the reader, one pass of the scheduler less between a message's
        arrival and its answer.
        """
        sock = self._eager_socket
        machine = self._machine
        assert sock is not None
        assert machine is not None
        if machine.state is State.CLOSED:
            return  # failed while we waited (see _after_state_change), or closed
        if error is None:
            try:
                data = sock.recv(RECEIVE_SIZE)
            except BlockingIOError:
                self._drained = True
                return
            except OSError as exc:
                error = exc
        if error is not None:
            # Lost; or closed under us: by its owner while open, as the reader
            # would see it, or else by the reader, which says why itself.
            if machine.state is not State.OPEN and not isinstance(error, OSError):
                return
            self._connection_lost(error)
        else:
            self._feed_read(data)
        self._process()
        if machine.close_transport_now():
            self._transport_done()  # as the reader would, at once if it can

    def __aiter__(self) -> WebSocketConnection:
        """Iterate over incoming messages until the connection closes.

        The loop ends quietly on a normal close (1000, 1001, or no code) and
        raises :class:`~trio_ws.exceptions.ConnectionClosedError` otherwise.
        Leaving the loop early (``break``) is fine: the connection is its own
        iterator, not an async generator that would need finalizing.
        """
        return self

    async def __anext__(self) -> Data:
        """Return the next message, as :meth:`recv` does, until a normal close.

        Cancellation:
            Safe, as for :meth:`recv`.
        """
        try:
            return await self.recv()
        except ConnectionClosedOK:
            raise StopAsyncIteration from None

    def _no_more_messages(self) -> bool:
        machine = self._machine
        return machine is None or machine.state is State.CLOSED or self._closed.is_set()

    # -- sending --------------------------------------------------------------

    async def send(
        self,
        message: str | BytesLike | Iterable[str | BytesLike] | AsyncIterable[str | BytesLike],
    ) -> None:
        """Send a message: text for ``str``, binary for bytes-like objects.

        An iterable or async iterable of ``str`` (or of bytes-like objects)
        is sent as one fragmented message, one frame per item; other sends
        wait until it is finished, so frames of two messages never interleave.

        ``send()`` returns once the message is queued for the writer task; it
        waits first while more than ``write_limit`` bytes are unsent.

        Raises:
            ConnectionClosed: the connection is closing or closed.
            TypeError: ``message`` has an unsupported type (a dict, say).

        Cancellation:
            Safe while waiting for room: the message was then not queued at
            all. Cancelling a fragmented send half-way fails the connection
            with 1011, since the message cannot be finished. Always a cancel
            point; with room to queue, a schedule point only once the task's
            turn is over (see the docs' *Cancellation* page).
        """
        if isinstance(message, str):
            await self._wait_for_room()
            self._sending_machine().send_text(message)
            self._flush_machine()
        elif isinstance(message, bytes | bytearray | memoryview):
            await self._wait_for_room()
            self._sending_machine().send_binary(_byte_view(message))
            self._flush_machine()
        elif isinstance(message, Mapping):
            raise TypeError("send() takes str or bytes; encode a dict, e.g. with json.dumps()")
        elif isinstance(message, AsyncIterable):
            await self._send_fragments(aiter(message), is_async=True)
        elif isinstance(message, Iterable):
            await self._send_fragments(iter(message), is_async=False)
        else:
            raise TypeError(f"send() takes str, bytes or an iterable of them, not {message!r}")

    async def _send_fragments(self, fragments: Any, *, is_async: bool) -> None:
        await self._wait_for_room()
        self._fragmenting = True
        self._fragment_done = anyio.Event()
        text: bool | None = None
        try:
            while True:
                try:
                    fragment = await anext(fragments) if is_async else next(fragments)
                except (StopIteration, StopAsyncIteration):
                    break
                data: bytes | bytearray | memoryview
                if isinstance(fragment, str):
                    kind, data = True, fragment.encode()
                elif isinstance(fragment, bytes | bytearray | memoryview):
                    kind, data = False, _byte_view(fragment)
                else:
                    raise TypeError(f"fragments must be str or bytes, not {fragment!r}")
                if text is None:
                    text = kind
                    await self._wait_for_room(fragmenting=True)
                    machine = self._sending_machine()
                    if kind:
                        machine.send_text(fragment, fin=False)
                    else:
                        machine.send_binary(data, fin=False)
                elif kind is not text:
                    raise TypeError("fragments of one message must all be str or all bytes")
                else:
                    await self._wait_for_room(fragmenting=True)
                    self._sending_machine().send_continuation(data, fin=False)
                self._flush_machine()
            if text is not None:
                self._sending_machine().send_continuation(b"", fin=True)
                self._flush_machine()
        except BaseException:
            if text is not None and self._sending_machine().state is State.OPEN:
                # Half a message is on the wire and cannot be finished. (Once
                # the closing handshake has started, the close frame ends the
                # message; failing would cut that handshake short.)
                self._fail(CloseCode.INTERNAL_ERROR, "error in fragmented message")
            raise
        finally:
            self._fragmenting = False
            self._fragment_done.set()

    async def _wait_for_room(self, *, fragmenting: bool = False) -> None:
        """Checkpoint, then wait until a frame may be queued.

        Returns right after its last check of the connection's state, with no
        await in between, so the caller queues its frame synchronously into a
        connection known to be open: a close that lands during a wait is seen
        by the check that follows it.

        Raises ConnectionClosed if the connection is closing.
        """
        await self._checkpoint()
        while True:
            machine = self._machine
            if (
                machine is None
                or machine.close_sent is not None
                or machine.state is State.CLOSED
                or self._closed.is_set()
            ):
                raise self._closed_error()
            if self._fragmenting and not fragmenting:
                assert self._fragment_done is not None
                await self._fragment_done.wait()
            elif self.write_limit is not None and (
                self._unsent > self.write_limit
                or (self._protocol is not None and self._protocol.buffered() > self.write_limit)
            ):
                # Too much waits in the outbox, or in the asyncio transport's
                # buffer, where frames go straight when the writer is idle:
                # the writer, or the transport once it has drained, sets it.
                if self._send_room is None:
                    self._send_room = anyio.Event()
                await self._send_room.wait()
            else:
                return

    def _checkpoint(self) -> Awaitable[None]:
        """The checkpoint of a call that need not wait: a cancel point always,
        a schedule point once the running task's turn is over.

        On trio a turn lasts ``TRIO_TURN``; it begins when a call of this
        connection yields or comes back from a wait. The task running now
        began its turn no earlier than that: whichever task ran then, the
        scheduler has not passed over this one since. On asyncio the
        backend's checkpoint shares schedule points by count instead.
        """
        waits = self._waits
        if waits.turn:
            now = _clock()
            if now - self._turn_began < waits.turn:
                return waits.checkpoint_if_cancelled()
            self._turn_began = now
        return waits.checkpoint()

    def _sending_machine(self) -> WebSocketMachine:
        machine = self._machine
        assert machine is not None
        return machine

    def _flush_machine(self) -> None:
        """Move what the machine wants to send into the outbox, wake the writer.

        When the writer is idle with nothing queued, try the socket first: a
        non-blocking send of a small frame usually completes at once, which
        saves the hand-off to the writer task (a task switch per message).
        Whatever does not fit goes to the writer, in order. A streaming
        sender's small frames go to the writer, to be gathered, but not
        frames too large to gain from it.
        """
        assert self._machine is not None
        data = self._machine.data_to_send()
        if not data:
            return
        wakeup = self._writer_wakeup
        if (
            wakeup is not None
            and self._eager_write is not None
            and not self._outbox
            and (not self._streaming or len(data) >= _GATHER_BYTES)
        ):
            try:
                sent = self._eager_write(data)
            except OSError:  # would block, or broken: the writer finds out
                sent = 0
            if sent == len(data):
                self._streaming = True
                return
            data = data[sent:]
        self._outbox.append(data)
        self._unsent += len(data)
        if wakeup is _WRITER_NOT_STARTED:
            self._start_writer()
        elif wakeup is not None:
            wakeup.set()

    def _start_writer(self) -> None:
        """Start the writer, the first time something has to wait for it."""
        task_group = self._task_group
        if task_group is None:
            # Frames that came with the opening handshake were answered
            # before _start(): it starts the writer for them.
            return
        self._writer_wakeup = None  # busy from now: no direct writes
        self._writer_scope = cancel_scope()
        try:
            task_group.start_soon(self._writer, name="trio_ws writer")
        except RuntimeError:  # the task group is over: so is the connection
            self._writer_exited.set()

    async def ping(self, data: str | bytes | None = None) -> PongWaiter:
        """Send a ping; return a waiter for the matching pong.

        ``latency = await (await ws.ping())`` measures a round trip. With no
        ``data``, a random 4-byte payload is used.

        Raises:
            ConnectionClosed: the connection is closing or closed.
            ValueError: ``data`` exceeds 125 bytes, or a ping with the same
                payload is still waiting for its pong.

        Cancellation:
            Safe; the ping was sent or not, and a waiter is only returned if
            it was.
        """
        await self._waits.checkpoint()
        machine = self._machine
        if machine is None or machine.state is not State.OPEN or self._closed.is_set():
            raise self._closed_error()
        if data is None:
            payload = os.urandom(4)
            while payload in self._pings:  # pragma: no cover  # 1 in 2**32
                payload = os.urandom(4)
        else:
            payload = data.encode() if isinstance(data, str) else bytes(data)
        machine.send_ping(payload)
        waiter = PongWaiter()
        self._pings[payload] = (self._waits.current_time(), waiter)
        self._flush_machine()
        return waiter

    async def pong(self, data: str | bytes = b"") -> None:
        """Send an unsolicited pong, a one-way heartbeat (RFC 6455 §5.5.3).

        Pings from the peer are answered automatically; you never need this
        to keep a connection alive.

        Cancellation:
            Safe; the pong was queued or not.
        """
        await self._waits.checkpoint()
        machine = self._machine
        if machine is None or machine.state is not State.OPEN or self._closed.is_set():
            raise self._closed_error()
        machine.send_pong(data.encode() if isinstance(data, str) else bytes(data))
        self._flush_machine()

    # -- closing --------------------------------------------------------------

    async def aclose(self, code: int = CloseCode.NORMAL_CLOSURE, reason: str = "") -> None:
        """Perform the closing handshake and close the TCP connection.

        Sends a close frame with ``code`` and ``reason``, waits for the peer's
        answer and for the TCP connection to close, at most ``close_timeout``
        seconds in all, then closes it by force. Calling it again, or from
        several tasks, waits for the same close.

        Raises:
            ValueError: ``code`` may not be sent, or ``reason`` is too long.

        Cancellation:
            Stops waiting; the closing handshake goes on in the background,
            still bounded by ``close_timeout``.
        """
        machine = self._machine
        if machine is None:
            await self._abort()
            return
        self._close_requested = True
        if machine.state is State.OPEN and not self._closed.is_set():
            machine.send_close(code, reason)
            self._flush_machine()
            self._after_state_change()
        await self._closed.wait()

    async def wait_closed(self) -> None:
        """Wait until the connection is closed, by either side.

        Cancellation:
            Safe.
        """
        await self._closed.wait()

    async def _abort(self) -> None:
        """Close the stream of a connection that never opened."""
        if not self._closed.is_set():
            self._closed.set()
            await anyio.aclose_forcefully(self._stream)

    def _fail(self, code: int, reason: str) -> None:
        """Fail the connection (RFC 6455 §7.1.7) from our side: send a close
        frame with ``code`` and drop the connection without waiting."""
        machine = self._machine
        if machine is None or self._closed.is_set():
            return
        machine.fail(code, reason)
        self._flush_machine()
        self._after_state_change()

    def _after_state_change(self) -> None:
        """React to the machine leaving OPEN: start the close timer, wake
        everybody waiting for something that will not come."""
        machine = self._machine
        assert machine is not None
        if machine.state is State.OPEN:
            return
        if self._closing_deadline == math.inf and self.close_timeout is not None:
            self._closing_deadline = self._waits.current_time() + self.close_timeout
            if not machine.close_transport_now():
                # The reader waits for the rest of the closing handshake, at
                # most until then. (If it is over, the reader stops below.)
                if self._reader_scope is not None:
                    self._reader_scope.deadline = self._closing_deadline
                else:
                    self._closing_timer = self._stream.protocol.call_at(  # type: ignore[attr-defined]
                        self._closing_deadline, self._wake_reader
                    )
        if self._reader_resume is not None:
            self._reader_resume.set()
        if self._lent:
            self._wake_reader()  # the closing handshake is the reader's to read
        if self._send_room is not None:
            self._send_room.set()
        if machine.state is State.CLOSED:
            if self._recv_waiter is not None:
                self._recv_waiter.set()
            if self._recv_reading:
                # recv() waits on the socket we lent it, and nothing more will
                # be read (we failed the connection): end its wait now, not
                # once the close frame is flushed and the socket closed.
                with contextlib.suppress(OSError):
                    self._eager_socket.shutdown(socket.SHUT_RD)  # type: ignore[union-attr]
            self._abort_pings()
            if machine.close_transport_now():
                self._stop_reader()

    def _stop_reader(self) -> None:
        """Make the reader return: one parked on a wakeup (the protocol's, or
        for room in the queue) is woken, which is cheaper than raising a
        cancellation through it; one reading the stream is cancelled."""
        if self._reader_wakeup is not None:
            self._reader_wakeup.set()
        elif self._reader_resume is not None:
            self._reader_resume.set()
        elif self._reader_scope is not None and not self._reader_scope.cancel_called:
            self._reader_scope.cancel()

    def _abort_pings(self) -> None:
        if not self._pings:
            return
        error = self._closed_error()
        for _, waiter in self._pings.values():
            waiter._abort(error)
        self._pings.clear()

    def _closed_error(self) -> ConnectionClosed:
        """Build the exception that tells the user why the connection closed."""
        machine = self._machine
        if machine is None:
            return ConnectionClosedError(None, None)
        rcvd, sent = machine.close_rcvd, machine.close_sent
        ok = (
            rcvd is not None
            and sent is not None
            and rcvd.code in _OK_CLOSE_CODES
            and sent.code in _OK_CLOSE_CODES
        )
        cls = ConnectionClosedOK if ok else ConnectionClosedError
        error = cls(rcvd, sent, machine.close_rcvd_then_sent)
        error.__cause__ = machine.failure or self._transport_error
        return error

    # -- the three tasks --------------------------------------------------------

    async def _reader(self) -> None:
        torn_down = True
        try:
            if self._reader_scope is None:
                await self._read_until_close()
            else:
                with self._reader_scope:
                    await self._read_until_close()
            torn_down = False
        except Exception:  # pragma: no cover  # a bug here must not kill the user's task group
            torn_down = False
            self.logger.exception("unexpected error in the reader task")
            self._fail(CloseCode.INTERNAL_ERROR, "")
        finally:
            self._lent = False  # recv() waits for us from now on
            # Only a cancellation from outside our own scope (the task group's,
            # or one around it) gets here with torn_down still set.
            await self._close_transport(torn_down=torn_down)

    async def _read_until_close(self) -> None:
        """Read and process until the machine says to close the transport."""
        machine = self._machine
        assert machine is not None
        stream = self._stream
        sock = self._eager_socket
        protocol = self._protocol
        io_errors = self._waits.io_errors
        lending = False
        while not machine.close_transport_now():
            if self._recv_reading or lending:
                # The socket is lent to recv() (see below): park until a
                # recv() returns, or the connection leaves OPEN.
                lending = False
                self._reader_wakeup = wakeup = self._waits.new_wakeup()
                try:
                    await wakeup.wait()
                finally:
                    self._reader_wakeup = None
                if self._lent and _clock() - self._turn_began > _LEND_WITHIN:
                    # We ran long after recv() returned: the scheduler is busy
                    # with other tasks, and a pass less per message no longer
                    # pays for our wake-up per message. Read for recv() again.
                    self._lent = False
                continue
            if self._lent:
                self._lent = False  # take it back: recv() is not waiting
            if self._queue_full():
                # Backpressure: let TCP push back on the peer.
                if protocol is not None:
                    protocol.pause_reading()
                self._reader_resume = self._waits.new_wakeup()
                await self._reader_resume.wait()
                self._reader_resume = None
                continue
            if protocol is not None:
                # The protocol's callbacks read and process; they wake us once
                # the queue is full or the transport is to close, and the
                # closing timer once the peer took too long to finish closing.
                if self._waits.current_time() >= self._closing_deadline:
                    return
                protocol.resume_reading()
                self._reader_wakeup = wakeup = self._waits.new_wakeup()
                try:
                    await wakeup.wait()
                finally:
                    self._reader_wakeup = None
                continue
            if sock is not None:
                # Straight from the socket, as the stream would, minus its
                # layers. After a short read the socket is most likely empty:
                # wait first (the wait is the checkpoint) rather than try a
                # read that would fail. After a full one, try again at once.
                try:
                    if self._drained:
                        await self._wait_readable(sock)
                    else:
                        await self._waits.checkpoint()
                    data = sock.recv(RECEIVE_SIZE)
                except BlockingIOError:
                    self._drained = True
                    continue
                except io_errors as exc:
                    self._connection_lost(exc)
                else:
                    self._feed_read(data)
                waiting = self._recv_waiter is not None
                self._process()
                if waiting and self._messages and machine.state is State.OPEN:
                    # Lend the socket to recv(), which a message just woke. A
                    # task that waits in recv() again and again (a handler's
                    # ``async for``, a client's send-then-recv) then waits on
                    # the socket itself and reads its next message with no
                    # hand-off from us, one pass of the scheduler less between
                    # a message's arrival and its answer. Every recv() that
                    # returns wakes us: we park again if recv() is back on the
                    # socket, and take it back otherwise, so that pings, the
                    # peer's close and EOF are still seen while the task does
                    # something else; so does the connection leaving OPEN.
                    # (One task at a time waits on the socket: trio allows no
                    # more.) Only while passes are short, though: the last
                    # hand-off reached recv() soon after we made it.
                    now = _clock()
                    if self._turn_began - self._handed_at < _LEND_WITHIN:
                        lending = self._lent = not self._queue_full()
                    self._handed_at = now
                continue
            try:
                data = await stream.receive(RECEIVE_SIZE)
            except anyio.EndOfStream:
                self._eof_received()
            except io_errors as exc:
                self._connection_lost(exc)
            else:
                machine.receive_data(data)
            self._process()

    def _feed_read(self, data: bytes) -> None:
        """Feed what one read of the plain socket returned to the machine."""
        self._drained = len(data) < RECEIVE_SIZE
        if data:
            self._machine.receive_data(data)  # type: ignore[union-attr]
        else:
            self._eof_received()

    def _wait_readable(self, sock: socket.socket) -> Awaitable[None]:
        if sock.fileno() < 0:
            # Closed by the stream's owner while nobody waited on it (the
            # reader had lent it). Waiting would make trio fail in its own
            # bookkeeping: fail as the wait would have failed.
            raise anyio.ClosedResourceError
        return self._waits.wait_readable(sock)

    def _queue_full(self) -> bool:
        """Whether the reader should stop reading until recv() takes some."""
        machine = self._machine
        assert machine is not None
        return (
            self.max_queue is not None
            and self._messages is not None
            and (len(self._messages) >= self.max_queue or self._queued_bytes >= _QUEUE_BYTES)
            and machine.state is State.OPEN
        )

    # Called by the ConnectionProtocol, on asyncio, from the event loop.

    def _data_received(self, data: bytes) -> None:
        machine = self._machine
        assert machine is not None
        if machine.eof_received:
            return
        try:
            machine.receive_data(data)
            self._process()
        except Exception:  # pragma: no cover  # as in _reader(): not the event loop's problem
            self.logger.exception("unexpected error while processing received data")
            self._fail(CloseCode.INTERNAL_ERROR, "")
        if self._queue_full():
            assert self._protocol is not None
            self._protocol.pause_reading()
            self._wake_reader()
        elif machine.close_transport_now():
            self._transport_done()

    def _transport_eof(self) -> None:
        self._transport_lost(None)  # to the connection, the same end of input

    def _transport_lost(self, exc: Exception | None) -> None:
        machine = self._machine
        assert machine is not None
        if not machine.eof_received:
            if exc is None:
                self._eof_received()
            else:
                self._connection_lost(exc)
            self._process()
        self._transport_done()

    def _transport_done(self) -> None:
        """The machine is done with the transport: close it from the callback
        if that needs no wait (the handler then sees the connection closed at
        once, not after the reader's next turn), and let the reader return."""
        machine = self._machine
        assert machine is not None
        if machine.close_transport_now() and not self._closed.is_set():
            self._close_at_once()
        self._wake_reader()

    def _wake_reader(self) -> None:
        if self._reader_wakeup is not None:
            self._reader_wakeup.set()

    def _writing_resumed(self) -> None:
        """The transport's buffer drained: room for a send() that waits."""
        room = self._send_room
        if room is not None and (self.write_limit is None or self._unsent <= self.write_limit):
            self._send_room = None
            room.set()

    def _eof_received(self) -> None:
        machine = self._machine
        assert machine is not None
        if self._transport_error is None and machine.close_rcvd is None:
            self._transport_error = EOFError(
                "the peer closed the TCP connection without a close frame"
            )
        machine.receive_eof()

    def _connection_lost(self, exc: BaseException) -> None:
        machine = self._machine
        assert machine is not None
        if self._transport_error is None:
            cause = exc.__cause__ if isinstance(exc.__cause__, OSError) else exc
            self._transport_error = cause
        machine.receive_eof()

    def _process(self) -> None:
        """Dispatch the machine's events; queue its output."""
        machine = self._machine
        assert machine is not None
        events = machine.events_received()
        if events:
            messages = self._messages
            if messages is None:
                messages = self._messages = deque()
            # Messages that precede the peer's close frame are always kept, as
            # are those before a protocol error: they were sent to the user.
            # Only once the user asked to close, and so stopped reading, do
            # messages past max_queue go: the reader no longer pauses then
            # (it must see the peer's close), and memory stays bounded.
            dropping = self._close_requested and self.max_queue is not None
            for event in events:
                cls = type(event)
                if cls is TextMessage or cls is BinaryMessage:
                    if dropping and len(messages) >= self.max_queue:  # type: ignore[operator]
                        self.logger.debug("dropped a message received after aclose()")
                        continue
                    data = event.data  # type: ignore[union-attr]
                    messages.append(data)
                    self._queued_bytes += len(data)
                elif cls is Pong:
                    self._pong_received(event)  # type: ignore[arg-type]
            if self._recv_waiter is not None and messages:
                self._recv_waiter.set()
        self._flush_machine()
        if machine.state is not State.OPEN:
            self._after_state_change()

    def _pong_received(self, pong: Pong) -> None:
        now = self._waits.current_time()
        for payload in pong.acked:
            entry = self._pings.pop(payload, None)
            if entry is None:
                continue
            sent_at, waiter = entry
            latency = now - sent_at
            if payload == pong.data:
                self.latency = latency
            waiter._resolve(latency)

    async def _writer(self) -> None:
        io_errors = self._waits.io_errors
        scope = self._writer_scope
        assert scope is not None
        try:
            with scope:
                while True:
                    outbox = self._outbox
                    if not outbox:
                        if self._flushed is not None:
                            self._flushed.set()
                        self._writer_wakeup = wakeup = self._waits.new_wakeup()
                        await wakeup.wait()
                        if self._writer_wakeup is not wakeup:
                            return  # _stop_writer() took the wakeup away
                        self._writer_wakeup = None
                        continue
                    if self._streaming:
                        await self._gather()
                    # A writer cancelled before it starts must leave the outbox
                    # whole, for _go_away() to send.
                    await self._waits.checkpoint_if_cancelled()
                    outbox = self._outbox
                    self._outbox = []
                    data = outbox[0] if len(outbox) == 1 else b"".join(outbox)
                    self._write_interrupted = True
                    try:
                        await self._write(data)
                    except io_errors as exc:
                        self._connection_lost(exc)
                        self._after_state_change()
                        return
                    self._write_interrupted = False
                    self._unsent -= len(data)
                    room = self._send_room
                    if room is not None and (
                        self.write_limit is None or self._unsent <= self.write_limit
                    ):
                        self._send_room = None
                        room.set()
        finally:
            self._writer_wakeup = None  # no more eager writes either
            if self._flushed is not None:
                self._flushed.set()
            if self._send_room is not None:
                self._send_room.set()
            self._writer_exited.set()

    async def _gather(self) -> None:
        """Give a sender that keeps sending a few passes of the scheduler to
        queue more before the writer writes: one system call for many small
        frames. Stop once enough is queued, or once two passes in a row added
        nothing: the sender paused (the scheduler runs the two of us in either
        order, so one empty pass proves little), and gets direct writes again.
        """
        outbox = self._outbox
        queued = len(outbox)
        idle_passes = 0
        for _ in range(_GATHER_PASSES):
            if self._unsent >= _GATHER_BYTES or outbox is not self._outbox:
                return
            await self._waits.cancel_shielded_checkpoint()
            if len(outbox) == queued:
                idle_passes += 1
                if idle_passes == 2:
                    self._streaming = False
                    return
            else:
                queued = len(outbox)
                idle_passes = 0

    async def _write(self, data: bytes) -> None:
        """Write ``data`` the fastest way the stream allows."""
        if self._eager_socket is not None:
            await self._send_all(self._eager_socket, data)
        elif self._protocol is not None:
            await self._protocol.send(data)
        else:
            await self._stream.send(data)

    async def _send_all(self, sock: socket.socket, data: bytes) -> None:
        """Write ``data`` to ``sock`` as trio's ``send_all`` would, without
        its layers (trio only, where ``sock`` is the stream's own socket)."""
        view = memoryview(data)
        while view:
            try:
                sent = sock.send(view)
            except BlockingIOError:
                await self._waits.wait_writable(sock)
                continue
            view = view[sent:]

    async def _heartbeat(self, ping_first: bool = False) -> None:
        # The wait for the next ping, where the heartbeat spends its life, is
        # a wakeup that a timer or _stop_heartbeat() sets: returning from a
        # wait is cheaper than raising a cancellation through it. The wait for
        # a pong runs in a cancel scope whose deadline is the timeout, and
        # which _stop_heartbeat() cancels. Started by the timer that waited
        # for the first ping (_start_heartbeat), it pings at once.
        interval = self.ping_interval
        assert interval is not None
        machine = self._machine
        assert machine is not None
        closed = self._closed
        while True:
            if machine.state is not State.OPEN:
                # The closing handshake has begun (before we first ran, for a
                # connection closed at once): nothing is left to keep alive,
                # and ping() would refuse. No timer, then.
                return
            if ping_first:
                ping_first = False
            else:
                self._heartbeat_wakeup = wakeup = self._waits.new_wakeup()
                if self._heartbeat_stopped:
                    wakeup.set()  # stopped before we ran: no wait
                # Until the next ping is due (on asyncio a timer sets the
                # wakeup: no cancel scope to keep while idle).
                await self._waits.wait_until(wakeup, self._waits.current_time() + interval)
                self._heartbeat_wakeup = None
            if self._heartbeat_stopped or closed.is_set():
                return
            try:
                waiter = await self.ping()
            except ConnectionClosed:
                return
            if self.ping_timeout is None:
                continue
            with self._heartbeat_wait(self.ping_timeout):
                try:
                    await waiter.wait()
                except ConnectionClosed:
                    return
            if waiter.done():
                continue
            if not self._heartbeat_stopped:
                self.logger.info("keepalive ping timeout; failing the connection with 1011")
                self._fail(CloseCode.INTERNAL_ERROR, "keepalive ping timeout")
            return

    def _heartbeat_wait(self, seconds: float) -> CancelScope:
        scope = move_on_after(seconds)
        if self._heartbeat_stopped:
            scope.cancel()
        self._heartbeat_scope = scope
        return scope

    def _start_heartbeat(self) -> None:
        """The first ping is due: run the heartbeat (asyncio's protocol path,
        where a timer waited for this instead of a task)."""
        self._heartbeat_timer = None
        machine = self._machine
        assert machine is not None
        assert self._task_group is not None
        if not self._heartbeat_stopped and machine.state is State.OPEN:
            self._task_group.start_soon(self._heartbeat, True, name="trio_ws heartbeat")

    def _stop_heartbeat(self) -> None:
        self._heartbeat_stopped = True
        timer = self._heartbeat_timer
        if timer is not None:
            self._heartbeat_timer = None
            timer.cancel()
        wakeup = self._heartbeat_wakeup
        if wakeup is not None:
            self._heartbeat_wakeup = None
            wakeup.set()
        elif self._heartbeat_scope is not None and not self._heartbeat_scope.cancel_called:
            self._heartbeat_scope.cancel()

    def _stop_writer(self) -> None:
        """Stop the writer: an idle one is woken to return, which is cheaper
        than raising a cancellation through it; a busy one is cancelled; one
        that never started never will."""
        wakeup = self._writer_wakeup
        if wakeup is _WRITER_NOT_STARTED:
            self._writer_wakeup = None  # no more direct writes either
            self._writer_exited.set()
        elif wakeup is not None and not self._outbox:
            self._writer_wakeup = None
            wakeup.set()
        else:
            self._cancel_writer()

    def _cancel_writer(self) -> None:
        """Stop the writer at once, busy or not."""
        scope = self._writer_scope
        if scope is None:  # it never started (and may have been told not to)
            self._writer_wakeup = None
            self._writer_exited.set()
        elif not scope.cancel_called:
            scope.cancel()

    def _close_deadline(self) -> float:
        """When closing must be over: the deadline set when closing began, or
        ``close_timeout`` from now if it began without one (EOF, a crash)."""
        if self._closing_deadline == math.inf and self.close_timeout is not None:
            return self._waits.current_time() + self.close_timeout
        return self._closing_deadline

    async def _go_away(self) -> None:
        """Close with 1001 on behalf of tasks cancelled from outside.

        When the task group that runs us (or a scope around it) is cancelled,
        every task of ours stops at once, the writer too, and a close frame
        queued by ``aclose()`` would never leave: the peer would see the TCP
        connection drop (1006). So the reader, which owns the stream at the
        end, finishes the closing handshake itself, within ``close_timeout``
        (RFC 6455 §7.1.2; 1001: we are going away).
        """
        machine = self._machine
        assert machine is not None
        deadline = self._close_deadline()
        self._cancel_writer()
        self._stop_heartbeat()
        with move_on_after(max(0.0, deadline - self._waits.current_time())):
            # The stream has one writer at a time: wait for ours to stop.
            await self._writer_exited.wait()
            if self._write_interrupted or machine.eof_received:
                return  # half a frame may be on the wire, or nobody listens
            if machine.state is State.OPEN:
                machine.send_close(CloseCode.GOING_AWAY)
                self._flush_machine()
                self._after_state_change()
            if self._outbox:
                data = b"".join(self._outbox)
                self._outbox = []
                try:
                    await self._write(data)
                except self._waits.io_errors as exc:
                    self._connection_lost(exc)
                    self._after_state_change()
                    return
                self._unsent = 0
            await self._read_until_close()

    async def _close_transport(self, *, torn_down: bool = False) -> None:
        """Flush what is queued (bounded), close the stream, stop the tasks."""
        if self._closed.is_set():
            return  # closed at once already, by the protocol's callback
        if torn_down or not self._close_at_once():
            with cancel_scope(shield=True):
                if torn_down:
                    await self._go_away()
                await self._flush_and_close_stream()
            self._transport_closed()

    def _close_at_once(self) -> bool:
        """Close the transport now if nothing is left to send or to wait for,
        and say whether it did: a plain socket closes at once, as its stream
        would close it, and so does the protocol's transport once its buffer
        is empty. Nothing to wait for, so no scope either."""
        if (self._outbox or self._unsent) and not self._writer_exited.is_set():
            return False
        sock = self._eager_socket
        protocol = self._protocol
        if sock is None and (protocol is None or protocol._writing_paused):
            return False
        self._stop_writer()
        self._stop_heartbeat()
        if sock is not None:
            close_socket(sock)
        else:
            self._stream.close()  # type: ignore[attr-defined]  # a ProtocolStream
        self._transport_closed()
        return True

    def _transport_closed(self) -> None:
        """Record that the stream is closed; wake everybody."""
        machine = self._machine
        assert machine is not None
        if machine.state is not State.CLOSED or not machine.eof_received:
            machine.receive_eof()
        self._closed.set()
        if self._protocol is not None:
            self._protocol.detach()  # closed: nothing more to receive
        if self._closing_timer is not None:
            self._closing_timer.cancel()
            self._closing_timer = None
        self._after_state_change()
        if self._recv_waiter is not None:
            self._recv_waiter.set()
        if self._send_room is not None:
            self._send_room.set()
        if self._logger.isEnabledFor(logging.DEBUG):
            self.logger.debug("connection closed: %s", self._closed_error())

    async def _flush_and_close_stream(self) -> None:
        """Let the writer flush (bounded), stop the tasks, close the stream."""
        deadline = self._close_deadline()
        if (self._outbox or self._unsent) and not self._writer_exited.is_set():
            self._flushed = self._waits.new_wakeup()
            with move_on_after(max(0.0, deadline - self._waits.current_time())):
                await self._flushed.wait()
        self._stop_writer()
        self._stop_heartbeat()
        if self._protocol is not None:
            # Closing aborts the transport: let a direct write that it
            # buffered go out first.
            with move_on_after(max(0.0, deadline - self._waits.current_time())):
                try:
                    await self._protocol.wait_drained()
                except self._waits.io_errors:
                    pass
        if self._eager_write is not None:
            # A plain socket closes at once: no need for a deadline.
            await self._stream.aclose()
        else:
            with move_on_after(max(0.0, deadline - self._waits.current_time())):
                await self._stream.aclose()


class _WriterNotStarted:
    """The writer's wakeup until the writer first runs: never waited for."""

    __slots__ = ()

    def is_set(self) -> bool:
        return False

    def set(self) -> None:  # pragma: no cover  # _flush_machine starts the writer instead
        raise AssertionError("the writer has not started")

    def wait(self) -> Awaitable[Any]:  # pragma: no cover
        raise AssertionError("the writer has not started")


_WRITER_NOT_STARTED: Wakeup = _WriterNotStarted()


class ConnectionContext:
    """``async with`` support for a connection: its tasks run in a task group
    of their own for the duration of the block, and leaving the block closes
    the connection (1000; 1011 if the block raised; 1001 if it was cancelled).

    The task group never sees the block's exception: our tasks turn their own
    failures into connection state and never raise, so the user's exception
    propagates unchanged instead of inside an ``ExceptionGroup``, even when
    a deadline around the block expires while the connection closes.
    """

    def __init__(self, opener: Callable[[], Awaitable[WebSocketConnection]]) -> None:
        self._opener = opener
        self._connection: WebSocketConnection | None = None
        self._task_group: TaskGroup | None = None

    async def __aenter__(self) -> WebSocketConnection:
        connection = await self._opener()
        task_group = connection_task_group()
        await task_group.__aenter__()
        self._connection, self._task_group = connection, task_group
        connection._start(task_group)
        return connection

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Returning None, not False: to a type checker the block's exception
        # then always propagates, so code after an early ``return`` inside the
        # block is not reported as missing a return.
        assert self._task_group is not None
        await leave_block(self._connection, self._task_group, exc)


async def leave_block(
    connection: WebSocketConnection | None,
    task_group: TaskGroup,
    exc: BaseException | None,
) -> None:
    """Close ``connection`` as a block that raised ``exc`` (or None) ends, then
    exit ``task_group``, which we entered by hand for the block.

    The code says how the block ended: 1000 normally, 1011 if it raised,
    1001 if it was cancelled (or interrupted): we are going away.
    """
    if exc is None:
        code = CloseCode.NORMAL_CLOSURE
    elif isinstance(exc, Exception):
        code = CloseCode.INTERNAL_ERROR
    else:
        code = CloseCode.GOING_AWAY
    try:
        if connection is not None:
            with cancel_scope(shield=True):
                await connection.aclose(code)
            if exc is None:
                # A scope around the block that was cancelled while the close
                # was shielded (a deadline that expired meanwhile) takes
                # effect here, whether or not our tasks are still finishing.
                await connection._waits.checkpoint_if_cancelled()
    finally:
        try:
            await task_group.__aexit__(None, None, None)
        except anyio.get_cancelled_exc_class():
            # A scope around the block was cancelled, which cancelled our
            # tasks too, while the block itself raised: let its exception
            # through, as a nursery would after splitting off the
            # cancellation, instead of a Cancelled that the scope then
            # swallows along with the user's error.
            if exc is None:
                raise


class _ConnectionLogger(logging.LoggerAdapter[Any]):
    """The adapter :attr:`WebSocketConnection.logger` makes on first use."""


#: Each role's logger, looked up once: getLogger() takes a lock.
_ROLE_LOGGERS = {role: logging.getLogger(f"trio_ws.{role.value}") for role in Role}


#: The clock of _checkpoint()'s turns and of the reader's loans of its socket
#: (_read_until_close): only its differences matter.
_clock = time.perf_counter

#: How many scheduler passes, at most, the writer waits for a streaming
#: sender to queue more frames, and how many bytes are enough to write at once.
_GATHER_PASSES = 16
_GATHER_BYTES = 2**14
#: Lend the socket to recv() (see _read_until_close) while the scheduler
#: lets a woken task run within this many seconds: a pass of few tasks.
_LEND_WITHIN = 0.00025
#: The reader also stops while the messages waiting for recv() total this
#: many bytes (characters for text): max_queue messages of max_size each
#: would be 16 MiB with the defaults. Reading again only once recv() brought
#: them under half of it keeps a stream of large messages from stopping and
#: starting the reader at each one. Reading far ahead bought nothing either:
#: on asyncio, a queue swinging by megabytes made malloc hand its memory back
#: to the system and fault it in again, page by page, for every message.
_QUEUE_BYTES = 2**20


def _byte_view(data: BytesLike) -> BytesLike:
    """Return ``data`` as a sequence of bytes.

    ``len()`` of a memoryview counts items, not bytes: a view of an
    ``array("i")`` or a 2-D buffer would get a frame length that does not
    match its payload.
    """
    if isinstance(data, memoryview) and (data.ndim != 1 or data.itemsize != 1):
        return data.cast("B") if data.c_contiguous else data.tobytes()
    return data


def _stream_error(exc: Exception) -> Exception:
    """What anyio's socket stream raises for ``exc`` from its socket: a lost
    connection, or a socket closed under a waiting task."""
    if isinstance(exc, OSError):
        return anyio.BrokenResourceError()
    return anyio.ClosedResourceError()


def _eager_socket(stream: anyio.abc.ByteStream, sock: socket.socket | None) -> socket.socket | None:
    """The socket ``_flush_machine`` may write to directly, if any.

    Only anyio's own plain TCP or UNIX stream on trio qualifies: there the
    stream is a thin layer over a non-blocking socket, with no buffer of its
    own that a direct write could overtake, and closing it closes the socket
    and nothing else. On asyncio the transport owns the socket and may hold
    buffered bytes; a TLS stream must encrypt.
    """
    if (
        not isinstance(stream, anyio.abc.SocketStream)
        or type(stream).__module__ != "anyio._backends._trio"
        or not running_on_trio()
    ):
        return None
    if type(sock) is socket.socket and not sock.getblocking():
        return sock
    return None


def _check_positive(name: str, value: object, *, allow_zero: bool = False) -> None:
    # Every connection checks its six options, most often plain numbers in
    # range: settle those with one type test (bool is not int here).
    if value is None or ((type(value) is float or type(value) is int) and value > 0):
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number or None, not {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'} or None")
