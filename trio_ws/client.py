"""Opening client connections.

Lead with :func:`open_websocket_url`::

    async with trio_ws.open_websocket_url("wss://example.com/chat") as ws:
        await ws.send("hello")
        print(await ws.recv())

:func:`connect_websocket_url` and :func:`connect_websocket` run the
connection's tasks in a nursery you pass, for a connection that outlives a
block; :func:`wrap_client_stream` speaks WebSocket over a stream you opened
yourself. :func:`open_reconnecting_websocket` reconnects after failures.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import os
import random
import socket
import ssl as ssl_module
import urllib.parse
from collections.abc import AsyncIterator, Callable, Sequence
from typing import TYPE_CHECKING, Any, cast

import anyio
import anyio.abc

from ._asyncio_protocol import adopt, from_socket
from ._streams import as_byte_stream
from ._tasks import move_on_after, running_on_trio
from ._url import WebSocketURI, parse_uri
from ._waits import wait_functions
from .connection import ConnectionContext, WebSocketConnection, leave_block
from .exceptions import InvalidHandshake, InvalidStatus, InvalidURI
from .protocol.deflate import DeflateConfig
from .protocol.handshake import USER_AGENT, ClientHandshake, Headers
from .protocol.machine import Role

if TYPE_CHECKING:
    from contextlib import AbstractAsyncContextManager
    from typing import TypeAlias

    import trio

    from ._streams import TrioStreamLike
    from .protocol.handshake import HeadersLike

    #: Where connection tasks run: an anyio task group or a trio nursery
    #: (both have the ``start_soon(func, *args, name=...)`` we use).
    Nursery: TypeAlias = anyio.abc.TaskGroup | trio.Nursery

__all__ = [
    "connect_websocket",
    "connect_websocket_url",
    "open_reconnecting_websocket",
    "open_websocket",
    "open_websocket_url",
    "wrap_client_stream",
]

logger: logging.Logger = logging.getLogger("trio_ws.client")

Compression = str | DeflateConfig | None

# What compression="deflate" means. Each side compresses with a 4 KiB window
# (12 bits) unless its peer asks for less: a third less CPU time per message
# than zlib's 32 KiB on JSON, and 32 KiB of zlib state instead of 144 KiB, for
# output about 10% larger (bench/io_common.json_message, 16 KiB messages).
# The client promises it in its offer; the server says so in its response,
# and accepts whatever window a client uses.
CLIENT_DEFLATE = DeflateConfig(client_max_window_bits=12)
SERVER_DEFLATE = DeflateConfig(server_max_window_bits=12)
CreateConnection = Callable[..., WebSocketConnection]


def compression_config(compression: Compression, *, server: bool = False) -> DeflateConfig | None:
    """Turn the ``compression`` option into a deflate configuration."""
    if compression is None:
        return None
    if isinstance(compression, DeflateConfig):
        return compression
    if compression == "deflate":
        return SERVER_DEFLATE if server else CLIENT_DEFLATE
    raise ValueError(f"compression must be 'deflate', a DeflateConfig or None, not {compression!r}")


# Any valid key will do for a request that is never sent (RFC 6455 §1.3's).
_TRIAL_KEY = "dGhlIHNhbXBsZSBub25jZQ=="


class _ClientOptions:
    """Everything a client connection is opened with, checked once."""

    def __init__(
        self,
        *,
        subprotocols: Sequence[str] | None = None,
        additional_headers: HeadersLike | None = None,
        user_agent_header: str | None = USER_AGENT,
        origin: str | None = None,
        compression: Compression = "deflate",
        open_timeout: float | None = 10.0,
        max_redirects: int = 10,
        create_connection: CreateConnection | None = None,
        unix_socket_path: str | None = None,
        **connection_options: Any,
    ) -> None:
        if isinstance(subprotocols, str):
            raise TypeError("subprotocols must be a list of strings, not a string")
        self.subprotocols: list[str] = list(subprotocols or ())
        # A copy: an iterator of pairs would not survive a second connection.
        self.additional_headers: Headers = Headers(additional_headers or ())
        self.user_agent_header = user_agent_header
        self.origin = origin
        self.compression: DeflateConfig | None = compression_config(compression)
        if open_timeout is not None and open_timeout <= 0:
            raise ValueError("open_timeout must be > 0 or None")
        self.open_timeout = open_timeout
        if max_redirects < 0:
            raise ValueError("max_redirects must be >= 0")
        self.max_redirects = max_redirects
        self.create_connection: CreateConnection = create_connection or WebSocketConnection
        self.unix_socket_path = unix_socket_path
        self.connection_options = connection_options
        # Fail now, not after connecting, on a bad option: a trial request
        # checks subprotocols, headers, origin and user agent. (Without any,
        # there is nothing it could refuse.)
        WebSocketConnection._check_options(**connection_options)
        if (
            self.subprotocols
            or self.additional_headers
            or origin is not None
            or user_agent_header not in (USER_AGENT, None)
        ):
            ClientHandshake(
                "localhost",
                "/",
                origin=origin,
                subprotocols=self.subprotocols,
                compression=self.compression,
                additional_headers=self.additional_headers,
                user_agent=user_agent_header,
                key=_TRIAL_KEY,
            )


def _check_ssl(uri: WebSocketURI, ssl: ssl_module.SSLContext | bool | None) -> None:
    """Raise ValueError if ``ssl`` contradicts the scheme of ``uri``."""
    if uri.secure and ssl is False:
        raise ValueError("a wss:// URL needs TLS; pass an SSLContext or leave ssl unset")
    if not uri.secure and ssl is not None and ssl is not False:
        raise ValueError("ssl was given for a ws:// URL; use wss:// for TLS")


def _ssl_context(
    uri: WebSocketURI, ssl: ssl_module.SSLContext | bool | None
) -> ssl_module.SSLContext | None:
    _check_ssl(uri, ssl)
    if not uri.secure:
        return None
    if ssl is None or ssl is True:
        return ssl_module.create_default_context()
    assert isinstance(ssl, ssl_module.SSLContext)
    return ssl


async def _open_stream(
    uri: WebSocketURI, context: ssl_module.SSLContext | None, options: _ClientOptions
) -> anyio.abc.ByteStream:
    """Connect TCP (or a UNIX socket) and TLS. OSError stays OSError (a
    certificate error is an :class:`ssl.SSLError`, thus an OSError too); a
    connection lost during the TLS handshake is an InvalidHandshake."""
    try:
        return await _open_raw_stream(uri, context, options)
    except OSError as exc:
        raise _clearer_connect_error(exc) from None
    except (anyio.EndOfStream, anyio.BrokenResourceError) as exc:
        # anyio's TLS handshake reports a peer that hung up with its own
        # exceptions; they must not reach the user.
        cause = exc.__cause__ if isinstance(exc.__cause__, OSError) else EOFError()
        raise InvalidHandshake("connection lost during the TLS handshake") from cause


def _clearer_connect_error(exc: OSError) -> OSError:
    """Return the error behind anyio's "All connection attempts failed".

    anyio tries every address the host resolves to and reports a generic
    OSError, with the real one (ConnectionRefusedError...) as its cause, or
    a group of them: users should read "Connection refused" right away.
    """
    cause = exc.__cause__
    if type(exc) is not OSError or exc.errno is not None:
        return exc  # a real OSError already (an ssl.SSLError, say)
    if isinstance(cause, OSError):
        return cause
    if isinstance(cause, BaseExceptionGroup):
        errors = [error for error in cause.exceptions if isinstance(error, OSError)]
        if errors:
            kinds = {type(error) for error in errors}
            kind = kinds.pop() if len(kinds) == 1 else OSError
            return kind(errors[0].errno, "; ".join(e.strerror or str(e) for e in errors))
    return exc


async def _open_raw_stream(
    uri: WebSocketURI, context: ssl_module.SSLContext | None, options: _ClientOptions
) -> anyio.abc.ByteStream:
    stream: anyio.abc.ByteStream
    if options.unix_socket_path is not None:
        stream = await anyio.connect_unix(options.unix_socket_path)
    elif (family := _ip_family(uri.host)) is not None:
        stream = await _connect_ip(family, uri.host, uri.port)
    else:
        stream = await anyio.connect_tcp(uri.host, uri.port)
    if context is None:
        return stream
    from anyio.streams.tls import TLSStream

    try:
        if not running_on_trio():
            # TLS reads through the connection's own protocol too.
            stream = adopt(stream, wait_functions()) or stream
        return await TLSStream.wrap(
            stream, hostname=uri.host, ssl_context=context, standard_compatible=False
        )
    except BaseException:
        await anyio.aclose_forcefully(stream)
        raise


def _ip_family(host: str) -> socket.AddressFamily | None:
    """The address family of an IP address literal; None for a host name."""
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host)
        except OSError:
            continue
        return family
    return None


async def _connect_ip(family: socket.AddressFamily, host: str, port: int) -> anyio.abc.SocketStream:
    """Connect to an IP address as :func:`anyio.connect_tcp` does, minus the
    task group its Happy Eyeballs race needs for host names."""
    # Non-blocking from the start where the system allows: one call less.
    sock = socket.socket(family, socket.SOCK_STREAM | _SOCK_NONBLOCK)
    try:
        if not _SOCK_NONBLOCK:  # pragma: no cover  # Linux has it
            sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        error = sock.connect_ex((host, port))
        if error in (errno.EINPROGRESS, errno.EWOULDBLOCK):
            if _connected(sock):
                error = 0
            else:
                await wait_functions().wait_writable(sock)
                error = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if error:
            # trio's message; the errno makes it a ConnectionRefusedError...
            raise OSError(error, f"Error connecting to {(host, port)!r}: {os.strerror(error)}")
        if not running_on_trio():
            # On asyncio, straight into the connection's own protocol.
            return await from_socket(sock, wait_functions())
        return await anyio.abc.SocketStream.from_socket(sock)
    except BaseException:
        sock.close()
        raise


_SOCK_NONBLOCK: int = getattr(socket, "SOCK_NONBLOCK", 0)


def _connected(sock: socket.socket) -> bool:
    """Whether a connect that said "in progress" is already done.

    Over loopback it always is: the kernel completes the TCP handshake
    within connect() itself. Then waiting until the socket is writable
    costs two epoll registrations and a pass through the scheduler.
    """
    try:
        sock.getpeername()
    except OSError:
        return False
    return True


async def _handshake(
    stream: anyio.abc.ByteStream,
    host_header: str,
    resource: str,
    options: _ClientOptions,
    authorization: str | None = None,
) -> WebSocketConnection:
    """Run the opening handshake over ``stream``; return the open connection.

    The caller closes ``stream`` if this raises.
    """
    headers: HeadersLike = options.additional_headers
    if authorization is not None and "Authorization" not in headers:
        headers = Headers(headers)
        headers["Authorization"] = authorization
    handshake = ClientHandshake(
        host_header,
        resource,
        origin=options.origin,
        subprotocols=options.subprotocols,
        compression=options.compression,
        additional_headers=headers,
        user_agent=options.user_agent_header,
    )
    connection = options.create_connection(stream, Role.CLIENT, **options.connection_options)
    connection.request = handshake.request
    eof = False
    try:
        await connection._send_handshake(handshake.data_to_send())
        while not handshake.complete:
            try:
                data = await connection._receive_handshake()
            except anyio.EndOfStream:
                eof = True
                handshake.receive_eof()
            else:
                handshake.receive_data(data)
    except (anyio.BrokenResourceError, anyio.ClosedResourceError) as exc:
        cause = exc.__cause__ if isinstance(exc.__cause__, OSError) else exc
        raise InvalidHandshake("connection lost during the opening handshake") from cause
    if handshake.response is not None:
        connection.response = handshake.response
    if handshake.error is not None:
        if eof and handshake.response is None:
            # The server hung up before answering (a restart, say): network
            # trouble that open_reconnecting_websocket may retry.
            raise handshake.error from EOFError("the server closed the connection")
        raise handshake.error
    connection._open(handshake)
    return connection


async def _connect(
    uri: WebSocketURI, ssl: ssl_module.SSLContext | bool | None, options: _ClientOptions
) -> WebSocketConnection:
    """Open a connection to ``uri``, following redirects, within ``open_timeout``."""
    # anyio.fail_after() without its two generator-based context managers.
    with move_on_after(options.open_timeout):
        return await _connect_in_time(uri, ssl, options)
    # Only our deadline cancels this scope.
    raise TimeoutError


async def _connect_in_time(
    uri: WebSocketURI, ssl: ssl_module.SSLContext | bool | None, options: _ClientOptions
) -> WebSocketConnection:
    for _ in range(options.max_redirects + 1):
        context = _ssl_context(uri, ssl)
        stream = await _open_stream(uri, context, options)
        try:
            return await _handshake(
                stream, uri.host_header, uri.resource, options, uri.authorization
            )
        except InvalidStatus as exc:
            await anyio.aclose_forcefully(stream)
            location = exc.response.headers.get("Location")
            if not 300 <= exc.response.status_code < 400 or location is None:
                raise
            new_url = urllib.parse.urljoin(str(uri), location)
            scheme, sep, rest = new_url.partition("://")
            new_url = {"http": "ws", "https": "wss"}.get(scheme.lower(), scheme) + sep + rest
            new_uri = parse_uri(new_url)
            if uri.secure and not new_uri.secure:
                raise InvalidURI(new_url, "redirect from wss:// to ws:// refused") from exc
            if new_uri.user is None and (new_uri.host, new_uri.port) == (uri.host, uri.port):
                # Credentials survive a redirect to the same origin only.
                new_uri = _with_credentials(new_uri, uri)
            logger.debug("following redirect %d to %s", exc.response.status_code, new_uri)
            uri = new_uri
        except BaseException:
            await anyio.aclose_forcefully(stream)
            raise
    raise InvalidHandshake(f"more than {options.max_redirects} redirects")


def _with_credentials(uri: WebSocketURI, source: WebSocketURI) -> WebSocketURI:
    return dataclasses.replace(uri, user=source.user, password=source.password)


def open_websocket_url(
    url: str, *, ssl: ssl_module.SSLContext | bool | None = None, **options: Any
) -> AbstractAsyncContextManager[WebSocketConnection]:
    """Connect to a ``ws://`` or ``wss://`` URL for the duration of an ``async with``.

    ::

        async with open_websocket_url("ws://127.0.0.1:8765/chat") as ws:
            await ws.send("hello")

    Leaving the block closes the connection (1000, within ``close_timeout``).
    An exception raised in the block propagates unchanged.

    Args:
        url: ``ws://`` or ``wss://``; ``user:password@`` becomes a Basic
            ``Authorization`` header.
        ssl: an :class:`ssl.SSLContext` for ``wss://`` (for instance one with
            verification turned off); the default verifies certificates.
        subprotocols: subprotocols to offer, in order of preference.
        additional_headers: extra request headers (a mapping or pairs).
        user_agent_header: the ``User-Agent`` value; None sends none.
        origin: an ``Origin`` header value.
        compression: ``"deflate"`` (default: permessage-deflate, offering
            to compress with a 12-bit window), a ``DeflateConfig``, or None.
        open_timeout: seconds for TCP, TLS and the handshake together;
            :class:`TimeoutError` after that. None waits forever.
        max_redirects: 3xx answers followed before giving up.
        unix_socket_path: connect to this UNIX socket instead of TCP.
        create_connection: a factory (a :class:`WebSocketConnection`
            subclass, or a :func:`functools.partial` of one).
        max_size, max_queue, write_limit, ping_interval, ping_timeout,
            close_timeout: see :class:`WebSocketConnection`.

    Raises:
        InvalidURI: the URL is not a WebSocket URL.
        OSError: the TCP connection failed.
        TimeoutError: ``open_timeout`` ran out.
        InvalidStatus: the server answered with another status than 101;
            the response is attached.
        InvalidHandshake: any other handshake failure.
    """
    client_options = _ClientOptions(**options)
    uri = parse_uri(url)
    _check_ssl(uri, ssl)  # fail now on a bad URL, not in __aenter__
    return ConnectionContext(lambda: _connect(uri, ssl, client_options))


def open_websocket(
    host: str,
    port: int,
    resource: str = "/",
    *,
    ssl: ssl_module.SSLContext | bool | None = None,
    **options: Any,
) -> AbstractAsyncContextManager[WebSocketConnection]:
    """Like :func:`open_websocket_url`, from a host, a port and a resource.

    ``ssl=True`` (or an :class:`ssl.SSLContext`) connects with TLS.
    """
    return open_websocket_url(_build_url(host, port, resource, ssl), ssl=ssl, **options)


async def connect_websocket_url(
    nursery: Nursery,
    url: str,
    *,
    ssl: ssl_module.SSLContext | bool | None = None,
    **options: Any,
) -> WebSocketConnection:
    """Open a connection whose tasks run in ``nursery``; close it yourself.

    The escape hatch for a connection that outlives a block: call
    ``await ws.aclose()`` when done. Arguments and errors are those of
    :func:`open_websocket_url`. ``nursery`` is a trio nursery or an anyio
    task group.
    """
    client_options = _ClientOptions(**options)
    connection = await _connect(parse_uri(url), ssl, client_options)
    connection._start(_task_group(nursery))
    return connection


async def connect_websocket(
    nursery: Nursery,
    host: str,
    port: int,
    resource: str = "/",
    *,
    ssl: ssl_module.SSLContext | bool | None = None,
    **options: Any,
) -> WebSocketConnection:
    """Like :func:`connect_websocket_url`, from a host, a port and a resource."""
    url = _build_url(host, port, resource, ssl)
    return await connect_websocket_url(nursery, url, ssl=ssl, **options)


async def wrap_client_stream(
    nursery: Nursery,
    stream: anyio.abc.ByteStream | TrioStreamLike,
    host: str,
    resource: str = "/",
    **options: Any,
) -> WebSocketConnection:
    """Speak WebSocket as a client over a stream you opened yourself.

    ``stream`` is any anyio byte stream or trio stream: a TLS stream, a UNIX
    socket, ``trio.testing.memory_stream_pair()``. ``host`` is the Host
    header value. The connection's tasks run in ``nursery``.
    """
    client_options = _ClientOptions(**options)
    byte_stream = as_byte_stream(stream)
    with anyio.fail_after(client_options.open_timeout):
        connection = await _handshake(byte_stream, host, resource, client_options)
    connection._start(_task_group(nursery))
    return connection


def _task_group(nursery: Nursery) -> anyio.abc.TaskGroup:
    # A trio nursery does what we need of a task group: start_soon(..., name=).
    return cast("anyio.abc.TaskGroup", nursery)


def _build_url(
    host: str, port: int, resource: str, ssl: ssl_module.SSLContext | bool | None
) -> str:
    scheme = "wss" if ssl not in (None, False) else "ws"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    if not resource.startswith("/"):
        resource = "/" + resource
    return f"{scheme}://{host}:{port}{resource}"


def _is_retryable(exc: BaseException) -> bool:
    """Network trouble and 5xx are worth retrying; 4xx and bad URLs are not."""
    if isinstance(exc, InvalidStatus):
        return exc.response.status_code >= 500
    if isinstance(exc, InvalidURI):
        return False
    if isinstance(exc, OSError | TimeoutError):
        return True
    if isinstance(exc, InvalidHandshake):
        # A connection lost mid-handshake is network trouble too.
        return isinstance(exc.__cause__, OSError | EOFError | anyio.BrokenResourceError)
    return False


class ReconnectingWebSocket:
    """Yields a fresh connection each time the previous one is gone.

    Made by :func:`open_reconnecting_websocket`; iterate over it with
    ``async for``. Before each new attempt the previous connection is
    closed; failed attempts are retried after a capped exponential backoff
    with full jitter: network errors, timeouts and 5xx answers are retried,
    4xx answers and bad URLs are raised.
    """

    def __init__(
        self,
        task_group: anyio.abc.TaskGroup,
        url: str,
        *,
        ssl: ssl_module.SSLContext | bool | None,
        backoff_initial: float,
        backoff_max: float,
        backoff_factor: float,
        options: _ClientOptions,
    ) -> None:
        self._task_group = task_group
        self._url = url
        self._uri = parse_uri(url)
        self._ssl = ssl
        self._options = options
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.backoff_factor = backoff_factor
        #: The connection handed out last, or None.
        self.connection: WebSocketConnection | None = None
        #: How many connections were opened so far.
        self.connections_opened: int = 0
        self._delay = backoff_initial
        self._opened_at = 0.0

    def __aiter__(self) -> AsyncIterator[WebSocketConnection]:
        return self

    async def __anext__(self) -> WebSocketConnection:
        delay = self._delay
        if self.connection is not None:
            with anyio.CancelScope(shield=True):
                await self.connection.aclose()
            self.connection = None
            if anyio.current_time() - self._opened_at >= self.backoff_max:
                delay = self.backoff_initial  # it was healthy: reconnect at once
            else:
                # A server that accepts and soon drops us must not get a
                # storm of reconnections from every client: back off as for
                # a failed attempt, and keep growing while it goes on.
                wait = random.uniform(0, delay)  # jitter, not crypto
                logger.info("connection to %s ended early; reconnecting in %.1f s", self._url, wait)
                await anyio.sleep(wait)
                delay = min(delay * self.backoff_factor, self.backoff_max)
        attempt = 0
        while True:
            try:
                connection = await _connect(self._uri, self._ssl, self._options)
            except Exception as exc:
                if not _is_retryable(exc):
                    raise
                attempt += 1
                wait = random.uniform(0, delay)  # jitter, not crypto
                logger.info(
                    "connection attempt %d to %s failed (%s); retrying in %.1f s",
                    attempt,
                    self._url,
                    exc,
                    wait,
                )
                await anyio.sleep(wait)
                delay = min(delay * self.backoff_factor, self.backoff_max)
                continue
            connection._start(self._task_group)
            self.connection = connection
            self.connections_opened += 1
            self._opened_at = anyio.current_time()
            self._delay = delay
            return connection


class _ReconnectingContext:
    def __init__(self, url: str, ssl: ssl_module.SSLContext | bool | None, **kwargs: Any) -> None:
        self._url = url
        self._ssl = ssl
        self._backoff = {
            key: kwargs.pop(key)
            for key in ("backoff_initial", "backoff_max", "backoff_factor")
            if key in kwargs
        }
        self._options = _ClientOptions(**kwargs)
        _check_ssl(parse_uri(url), ssl)
        self._task_group: anyio.abc.TaskGroup | None = None
        self._iterator: ReconnectingWebSocket | None = None

    async def __aenter__(self) -> ReconnectingWebSocket:
        task_group = anyio.create_task_group()
        await task_group.__aenter__()
        self._task_group = task_group
        self._iterator = ReconnectingWebSocket(
            task_group,
            self._url,
            ssl=self._ssl,
            backoff_initial=self._backoff.get("backoff_initial", 1.0),
            backoff_max=self._backoff.get("backoff_max", 60.0),
            backoff_factor=self._backoff.get("backoff_factor", 1.618),
            options=self._options,
        )
        return self._iterator

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        assert self._task_group is not None
        assert self._iterator is not None
        await leave_block(self._iterator.connection, self._task_group, exc)


def open_reconnecting_websocket(
    url: str, *, ssl: ssl_module.SSLContext | bool | None = None, **options: Any
) -> AbstractAsyncContextManager[ReconnectingWebSocket]:
    """Keep a connection to ``url`` open, reconnecting when it is lost.

    ::

        async with open_reconnecting_websocket("ws://127.0.0.1:8765/") as connections:
            async for ws in connections:
                try:
                    async for message in ws:
                        print(message)
                except trio_ws.ConnectionClosed:
                    continue  # reconnect

    Each iteration yields an open connection; the next iteration closes it
    (if still open) and connects again, retrying network errors, timeouts
    and 5xx answers with exponential backoff (``backoff_initial=1.0``,
    ``backoff_factor=1.618``, ``backoff_max=60.0`` seconds, full jitter).
    A 4xx answer or a bad URL raises. A connection that ended less than
    ``backoff_max`` seconds after it opened is followed by the same backoff,
    so a server that accepts and drops clients is not flooded with
    reconnections; after a longer one, the next attempt is immediate. The
    ``async with`` gives the connections a nursery; leaving it closes the
    last one.

    Other arguments are those of :func:`open_websocket_url`.
    """
    return _ReconnectingContext(url, ssl, **options)
