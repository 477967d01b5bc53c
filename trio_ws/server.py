"""Serving WebSocket connections.

::

    async def handler(ws: trio_ws.WebSocketConnection) -> None:
        async for message in ws:
            await ws.send(message)

    async with trio.open_nursery() as nursery:
        server = await nursery.start(trio_ws.serve_websocket, handler, "127.0.0.1", 8765)

:func:`serve_websocket` runs until cancelled. Each connection runs
``handler(ws)`` in a task of its own: a slow or crashing handler never blocks
the others or the server. Returning from the handler closes the connection
with 1000; raising closes it with 1011 and logs the traceback on the
``trio_ws.server`` logger.
"""

from __future__ import annotations

import errno
import logging
import socket
import ssl as ssl_module
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import anyio.abc
import anyio.streams.stapled
from anyio.streams.tls import TLSStream

from ._asyncio_protocol import adopt, from_socket
from ._streams import as_byte_stream
from ._tasks import (
    TaskStarter,
    cancel_scope,
    connection_task_group,
    create_task_group,
    move_on_after,
    running_on_trio,
)
from ._waits import wait_functions
from .client import Compression, _task_group, compression_config
from .connection import WebSocketConnection
from .exceptions import ConnectionClosed, InvalidHandshake
from .protocol.frames import CloseCode
from .protocol.handshake import (
    SERVER,
    Headers,
    Request,
    Response,
    ServerHandshake,
    make_response,
    select_subprotocol,
)
from .protocol.machine import Role, State

if TYPE_CHECKING:
    from typing import TypeAlias

    import trio

    from ._streams import TrioStreamLike
    from .client import Nursery
    from .protocol.deflate import DeflateConfig
    from .protocol.handshake import HeadersLike

    # What nursery.start() passes: anyio's, or trio's own for trio users.
    _TaskStatus: TypeAlias = (
        "anyio.abc.TaskStatus[WebSocketServer] | trio.TaskStatus[WebSocketServer]"
    )

__all__ = ["WebSocketServer", "serve_websocket", "wrap_server_stream"]

logger: logging.Logger = logging.getLogger("trio_ws.server")

_ConnT = TypeVar("_ConnT", bound=WebSocketConnection)
#: ``async def handler(ws)``; ``ws`` may be typed as the subclass that your
#: ``create_connection`` makes.
Handler = Callable[[_ConnT], Awaitable[None]]
ProcessRequest = Callable[
    [WebSocketConnection, Request], "Awaitable[Response | None] | Response | None"
]
ProcessResponse = Callable[
    [WebSocketConnection, Request, Response], "Awaitable[Response | None] | Response | None"
]
SelectSubprotocol = Callable[[WebSocketConnection, Sequence[str]], "str | None"]

# Errors that mean "too many open files" or "out of buffers": accept() fails
# with them under load, and the right answer is to wait, not to crash.
_ACCEPT_CAPACITY_ERRNOS = {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}

#: At most this many waiting connections are taken after each accept().
ACCEPT_BATCH = 64


def _raw_listening_socket(listener: anyio.abc.SocketListener) -> socket.socket | None:
    """The socket under one of anyio's asyncio TCP or Unix listeners, or None."""
    if type(listener).__module__ != "anyio._backends._asyncio":
        return None
    sock = listener.extra(anyio.abc.SocketAttribute.raw_socket, None)
    if not isinstance(sock, socket.socket) or sock.type != socket.SOCK_STREAM:
        return None
    return sock


def accept_waiting(listening: socket.socket) -> list[socket.socket]:
    """Accept the connections waiting on a non-blocking listening socket, up
    to :data:`ACCEPT_BATCH`, as anyio's accept() sets them up (non-blocking,
    ``TCP_NODELAY`` for TCP). Stops at the first error: a closed listener,
    or one out of descriptors, is for the next ``accept()`` to report."""
    accepted: list[socket.socket] = []
    tcp = listening.family in (socket.AF_INET, socket.AF_INET6)
    for _ in range(ACCEPT_BATCH):
        try:
            sock, _ = listening.accept()
        except OSError:  # BlockingIOError most often: nobody else waits
            break
        try:
            sock.setblocking(False)
            if tcp:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:  # reset already: let the handshake find out
            pass
        accepted.append(sock)
    return accepted


async def _resolve(value: Any) -> Any:
    if isinstance(value, Awaitable):
        return await value
    return value


class _ServerOptions:
    """Everything a server connection is accepted with, checked once."""

    def __init__(
        self,
        *,
        process_request: ProcessRequest | None = None,
        process_response: ProcessResponse | None = None,
        select_subprotocol: SelectSubprotocol | None = None,
        subprotocols: Sequence[str] | None = None,
        origins: Sequence[str | None] | None = None,
        additional_headers: HeadersLike | None = None,
        server_header: str | None = SERVER,
        compression: Compression = "deflate",
        open_timeout: float | None = 10.0,
        max_header_size: int = 16384,
        create_connection: Callable[..., WebSocketConnection] | None = None,
        **connection_options: Any,
    ) -> None:
        if isinstance(subprotocols, str):
            raise TypeError("subprotocols must be a list of strings, not a string")
        if isinstance(origins, str):
            raise TypeError("origins must be a list of origins, not a string")
        self.process_request = process_request
        self.process_response = process_response
        self.select_subprotocol = select_subprotocol
        self.subprotocols: list[str] = list(subprotocols or ())
        self.origins: list[str | None] | None = None if origins is None else list(origins)
        # Check header values now, not at the first connection: a bad one
        # would otherwise fail every handshake.
        self.additional_headers: Headers = Headers(additional_headers or ())
        if server_header is not None:
            Headers([("Server", server_header)])
        self.server_header = server_header
        self.compression: DeflateConfig | None = compression_config(compression, server=True)
        if open_timeout is not None and open_timeout <= 0:
            raise ValueError("open_timeout must be > 0 or None")
        self.open_timeout = open_timeout
        self.max_header_size = max_header_size
        self.create_connection: Callable[..., WebSocketConnection] = (
            create_connection or WebSocketConnection
        )
        self.connection_options = connection_options
        # Fail now, not at the first connection, on a bad connection option.
        WebSocketConnection._check_options(**connection_options)


async def _server_handshake(
    stream: anyio.abc.ByteStream, options: _ServerOptions
) -> WebSocketConnection | None:
    """Read the request, run the hooks, answer it.

    Returns the open connection, or None if the request was refused or
    answered with a plain HTTP response; the caller then closes the stream.
    """
    connection = options.create_connection(stream, Role.SERVER, **options.connection_options)
    handshake = ServerHandshake(max_header_size=options.max_header_size)
    while handshake.request is None and handshake.error is None:
        try:
            data = await connection._receive_handshake()
        except anyio.EndOfStream:
            handshake.receive_eof()
        else:
            handshake.receive_data(data)
    if handshake.request is not None:
        connection.request = handshake.request
    try:
        response = await _respond(connection, handshake, options)
        if response is None:
            return None
        handshake.send_response(response)
    except Exception:
        # A hook raised, or returned something we cannot send: that is a bug
        # in the application, so it gets a traceback, and the client a 500
        # rather than a connection closed without a word.
        connection.logger.exception("opening handshake failed")
        response = make_response(
            500, "Failed to open a WebSocket connection.\nSee server log for more information.\n"
        )
        handshake.send_response(response)
    connection.response = response
    await connection._send_handshake(handshake.data_to_send())
    if response.status_code != 101:
        return None
    connection._open(handshake)
    return connection


async def _respond(
    connection: WebSocketConnection, handshake: ServerHandshake, options: _ServerOptions
) -> Response | None:
    """Run the hooks and build the response; None if no answer is worth sending."""
    request = handshake.request
    response: Response | None = None
    if request is not None and options.process_request is not None:
        # The hook sees every complete request, even one that is not a valid
        # upgrade, so it can answer a health check or an HTML page.
        response = await _resolve(options.process_request(connection, request))
    if response is None and handshake.error is not None:
        connection.logger.info("opening handshake failed: %s", handshake.error)
        return handshake.error_response
    if response is None:
        assert request is not None
        response = _check_origin(request, options.origins)
    if response is None:
        assert request is not None
        if options.select_subprotocol is not None:
            subprotocol = options.select_subprotocol(connection, handshake.client_subprotocols)
        else:
            subprotocol = select_subprotocol(handshake.client_subprotocols, options.subprotocols)
        response = handshake.accept(
            subprotocol=subprotocol,
            compression=options.compression,
            additional_headers=options.additional_headers,
            server_header=options.server_header,
        )
        if options.process_response is not None:
            replacement = await _resolve(options.process_response(connection, request, response))
            if replacement is not None:
                response = replacement
    return response


def _check_origin(request: Request, origins: list[str | None] | None) -> Response | None:
    if origins is None:
        return None
    origin = request.headers.get("Origin")
    if origin in origins:
        return None
    return make_response(
        403, f"Failed to open a WebSocket connection: origin {origin!r} not allowed.\n"
    )


class WebSocketServer:
    """A running server, as returned by ``await nursery.start(serve_websocket, ...)``.

    Attributes:
        listeners: the anyio listeners accepting connections (one per
            address family and address when listening on several).
        connections: the connections currently open.
    """

    def __init__(
        self,
        handler: Handler[Any],
        listeners: Sequence[anyio.abc.SocketListener],
        *,
        handler_nursery: Nursery | None,
        options: _ServerOptions,
        ssl_context: ssl_module.SSLContext | None = None,
    ) -> None:
        self.handler = handler
        self.ssl_context = ssl_context
        self.listeners: list[anyio.abc.SocketListener] = list(listeners)
        # Read once: once the listeners are closed their sockets cannot say,
        # and repr() or .port must still work after the server stopped.
        self._addresses = [
            address
            for listener in self.listeners
            if (address := listener.extra(anyio.abc.SocketAttribute.local_address, None))
            is not None
        ]
        self.connections: set[WebSocketConnection] = set()
        self._handler_nursery = handler_nursery
        self._options = options
        self._cancel_scope = anyio.CancelScope()  # cancelled by aclose()
        self._closing = False
        self._stopped = anyio.Event()

    def __repr__(self) -> str:
        return f"<WebSocketServer {self.sockets_addresses()!r}>"

    @property
    def port(self) -> int:
        """The TCP port of the first listener (handy after binding port 0)."""
        for address in self.sockets_addresses():
            if isinstance(address, tuple):
                return int(address[1])
        raise RuntimeError("this server does not listen on TCP")

    def sockets_addresses(self) -> list[Any]:
        """The local address of every listening socket."""
        return list(self._addresses)

    async def run(self, *, task_status: _TaskStatus = anyio.TASK_STATUS_IGNORED) -> None:
        """Accept connections until cancelled or :meth:`aclose` is called.

        Cancellation:
            Closes every open connection with 1001 (going away), each within
            its ``close_timeout``, before returning.
        """
        try:
            with self._cancel_scope:
                # On trio a bare nursery: each connection's task is cheaper
                # to start and to run than in anyio's task group.
                async with create_task_group() as task_group:
                    handler_nursery = self._handler_nursery or task_group
                    for listener in self.listeners:
                        task_group.start_soon(self._accept_loop, listener, handler_nursery)
                    task_status.started(self)
        finally:
            # Handlers in our task group were cancelled, which closes their
            # connections with 1001; those in a handler_nursery of the
            # user's are still open and get the same here.
            self._closing = True
            with anyio.CancelScope(shield=True):
                for listener in self.listeners:
                    await anyio.aclose_forcefully(listener)
                async with anyio.create_task_group() as task_group:
                    for connection in list(self.connections):
                        task_group.start_soon(connection.aclose, CloseCode.GOING_AWAY)
                self._stopped.set()

    async def aclose(self) -> None:
        """Stop accepting, close every connection with 1001 (going away)
        within ``close_timeout``, and stop the server.

        Cancellation:
            Stops waiting; connections still close in the background.
        """
        # One path for aclose() and cancellation: run() does the closing, so
        # a cancelled aclose() cannot leave the server half stopped.
        self._closing = True
        self._cancel_scope.cancel()
        await self._stopped.wait()

    async def _accept_loop(
        self, listener: anyio.abc.SocketListener, handler_nursery: TaskStarter
    ) -> None:
        # On asyncio, the connections already waiting when one is accepted
        # are taken at once, straight into a protocol of our own, without a
        # wait each in anyio's accept() and a stream to adopt afterwards.
        # Waiting is still anyio's accept(), which its aclose() interrupts.
        raw = None if running_on_trio() else _raw_listening_socket(listener)
        while not self._closing:
            try:
                stream = await listener.accept()
            except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                return
            except OSError as exc:
                if exc.errno in _ACCEPT_CAPACITY_ERRNOS:
                    logger.error("accept() failed: %s; retrying in 100 ms", exc)
                    await anyio.sleep(0.1)
                    continue
                raise
            handler_nursery.start_soon(self._serve_stream, stream)
            if raw is not None:
                for sock in accept_waiting(raw):
                    handler_nursery.start_soon(self._serve_socket, sock)

    async def _serve_socket(self, sock: socket.socket) -> None:
        """:meth:`_serve_stream` for a socket that :func:`accept_waiting` took."""
        try:
            stream = await from_socket(sock, wait_functions())
        except BaseException as exc:
            sock.close()
            if not isinstance(exc, Exception):
                raise
            logger.debug("connection lost before its opening handshake: %r", exc)
            return
        await self._serve_stream(stream)

    async def _serve_stream(self, stream: anyio.abc.ByteStream) -> None:
        """Run one connection from TLS and handshake to close; never raise
        but for cancellation."""
        try:
            connection = await self._open(stream)
        except BaseException as exc:
            # Cancelled mid-handshake too: the stream is ours until it opens.
            await anyio.aclose_forcefully(stream)
            if not isinstance(exc, Exception):
                raise
            logger.info("opening handshake failed: %r", exc)
            return
        if connection is None:
            await anyio.aclose_forcefully(stream)
            return
        # On asyncio the connection moved the stream's transport onto a
        # protocol of its own: anyio's stream object can go now.
        del stream
        handler = self.handler
        if self._closing:
            # The server stopped while this handshake was finishing in a
            # handler_nursery of the user's, which run() does not cancel: say
            # goodbye at once.
            handler = _going_away
        self.connections.add(connection)
        try:
            await run_handler(connection, handler)
        finally:
            self.connections.discard(connection)

    async def _open(self, stream: anyio.abc.ByteStream) -> WebSocketConnection | None:
        # open_timeout covers the TLS handshake too: a client that connects
        # and says nothing must not hold a task and a socket forever.
        with move_on_after(self._options.open_timeout) as timeout:
            try:
                if self.ssl_context is not None:
                    if not running_on_trio():
                        stream = adopt(stream, wait_functions()) or stream
                    stream = await TLSStream.wrap(
                        stream,
                        server_side=True,
                        ssl_context=self.ssl_context,
                        standard_compatible=False,
                    )
                return await _server_handshake(stream, self._options)
            except (
                anyio.BrokenResourceError,
                anyio.ClosedResourceError,
                anyio.EndOfStream,
                OSError,
                ssl_module.SSLError,
            ) as exc:
                logger.debug("connection lost during the opening handshake: %r", exc)
                return None
        if timeout.cancelled_caught:
            logger.info("opening handshake timed out after %s s", self._options.open_timeout)
        return None


async def _going_away(connection: WebSocketConnection) -> None:
    await connection.aclose(CloseCode.GOING_AWAY)


async def run_handler(connection: _ConnT, handler: Handler[_ConnT]) -> None:
    """Run ``handler(connection)`` with the connection's tasks beside it, then
    close: 1000 on return, 1011 (and a logged traceback) on an exception,
    1001 on cancellation. Never raises but for cancellation."""
    code = CloseCode.NORMAL_CLOSURE
    async with connection_task_group() as task_group:
        connection._start(task_group)
        try:
            await handler(connection)
        except ConnectionClosed as exc:
            # The peer went away while the handler was using the connection:
            # nothing to report beyond a debug line.
            connection.logger.debug("handler stopped: %s", exc)
        except ExceptionGroup as group:
            # A handler with a nursery of its own sees the same disconnect
            # wrapped in a group; only something else in it is a failure.
            _, others = group.split(ConnectionClosed)
            if others is None:
                connection.logger.debug("handler stopped: %s", group.exceptions[0])
            else:
                connection.logger.exception("connection handler failed")
                code = CloseCode.INTERNAL_ERROR
        except Exception:
            connection.logger.exception("connection handler failed")
            code = CloseCode.INTERNAL_ERROR
        except BaseException:
            code = CloseCode.GOING_AWAY
            raise
        finally:
            if connection.state is State.CLOSED:
                # The peer closed first: nothing left to wait for, so no
                # shield either.
                await connection.aclose(code)
            else:
                with cancel_scope(shield=True):
                    await connection.aclose(code)


async def serve_websocket(
    handler: Handler[_ConnT],
    host: str | Sequence[str] | None,
    port: int,
    *,
    ssl: ssl_module.SSLContext | None = None,
    handler_nursery: Nursery | None = None,
    unix_socket_path: str | None = None,
    backlog: int = 65536,
    task_status: _TaskStatus = anyio.TASK_STATUS_IGNORED,
    **options: Any,
) -> None:
    """Serve WebSocket connections until cancelled.

    Use it with ``nursery.start`` to learn the server once it listens::

        server = await nursery.start(serve_websocket, handler, "127.0.0.1", 0)
        print(server.port)

    Args:
        handler: ``async def handler(ws)``, run in a task of its own for each
            connection.
        host: the address to listen on; ``None`` listens on every address,
            IPv4 and IPv6; a list of addresses listens on each.
        port: the TCP port; 0 picks a free one (see ``server.port``).
        ssl: an :class:`ssl.SSLContext` to serve ``wss://``.
        handler_nursery: run handlers in this nursery instead of the
            server's own.
        unix_socket_path: listen on this UNIX socket instead of TCP (``host``
            and ``port`` are then ignored).
        process_request: ``(ws, request) -> Response | None``, sync or async:
            return a response (see :func:`~trio_ws.make_response`) to answer
            with plain HTTP (a health check, a 401) instead of upgrading.
        process_response: ``(ws, request, response) -> Response | None``: see
            or replace the 101 response.
        select_subprotocol: ``(ws, offered) -> str | None``; by default the
            first of ``subprotocols`` that the client offered.
        subprotocols: the subprotocols this server speaks.
        origins: acceptable ``Origin`` values (``None`` in the list accepts
            a request without one); others get 403.
        additional_headers: extra headers for the 101 response.
        server_header: the ``Server`` header value; None sends none.
        compression: ``"deflate"`` (default: permessage-deflate, compressing
            with a 12-bit window, any window from the client), a
            ``DeflateConfig``, or None.
        open_timeout: seconds a client has to complete the handshake.
        create_connection: a connection factory (a subclass, or a partial).
        max_size, max_queue, write_limit, ping_interval, ping_timeout,
            close_timeout: see :class:`~trio_ws.WebSocketConnection`.

    Cancellation:
        Cancelling closes every open connection with 1001 (going away),
        each within ``close_timeout``.
    """
    server_options = _ServerOptions(**options)
    listeners: list[anyio.abc.SocketListener]
    if unix_socket_path is not None:
        listeners = [await anyio.create_unix_listener(unix_socket_path, backlog=backlog)]
    elif isinstance(host, str) or host is None:
        listeners = _flatten(
            await anyio.create_tcp_listener(local_host=host, local_port=port, backlog=backlog)
        )
    else:
        listeners = []
        try:
            for one_host in host:
                multi = await anyio.create_tcp_listener(
                    local_host=one_host, local_port=port, backlog=backlog
                )
                listeners.extend(_flatten(multi))
                if port == 0:  # the same port for every address, like asyncio
                    port = listeners[0].extra(anyio.abc.SocketAttribute.local_port)
        except BaseException:
            for one in listeners:
                await anyio.aclose_forcefully(one)
            raise
    server = WebSocketServer(
        handler,
        listeners,
        handler_nursery=handler_nursery,
        options=server_options,
        ssl_context=ssl,
    )
    await server.run(task_status=task_status)


def _flatten(listener: anyio.abc.Listener[Any]) -> list[anyio.abc.SocketListener]:
    # anyio returns a MultiListener when it binds several addresses.
    if isinstance(listener, anyio.streams.stapled.MultiListener):
        return [_socket_listener(one) for one in listener.listeners]
    return [_socket_listener(listener)]


def _socket_listener(listener: anyio.abc.Listener[Any]) -> anyio.abc.SocketListener:
    assert isinstance(listener, anyio.abc.SocketListener)
    return listener


async def wrap_server_stream(
    nursery: Nursery,
    stream: anyio.abc.ByteStream | TrioStreamLike,
    **options: Any,
) -> WebSocketConnection:
    """Speak WebSocket as a server over a stream you accepted yourself.

    Runs the opening handshake (with the hooks and options of
    :func:`serve_websocket`), then starts the connection's tasks in
    ``nursery`` and returns the open connection; close it with
    :meth:`~trio_ws.WebSocketConnection.aclose`.

    Raises:
        InvalidHandshake: the request was refused or answered with plain
            HTTP (the response was sent and the stream closed).
        TimeoutError: the handshake took longer than ``open_timeout``.
    """
    server_options = _ServerOptions(**options)
    byte_stream = as_byte_stream(stream)
    try:
        with anyio.fail_after(server_options.open_timeout):
            connection = await _server_handshake(byte_stream, server_options)
    except BaseException:
        await anyio.aclose_forcefully(byte_stream)
        raise
    if connection is None:
        await anyio.aclose_forcefully(byte_stream)
        raise InvalidHandshake("the opening handshake did not upgrade the connection")
    connection._start(_task_group(nursery))
    return connection
