"""Byte streams as the connection sees them: anyio's ``ByteStream``.

The connection is written against anyio. Users of trio may hand us trio's own
streams (``trio.SocketStream``, ``trio.SSLStream``,
``trio.testing.memory_stream_pair()``), so :func:`as_byte_stream` adapts
anything with trio's ``send_all``/``receive_some`` interface. Errors from the
stream are translated here, at one boundary, into anyio's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import anyio
import anyio.abc

if TYPE_CHECKING:
    import socket
    from collections.abc import Callable, Mapping

__all__ = [
    "TrioStreamLike",
    "as_byte_stream",
    "close_socket",
    "peer_addresses",
    "socket_address",
]

RECEIVE_SIZE = 65536


class TrioStreamLike(Protocol):
    """What we need of a trio stream (``trio.abc.Stream``)."""

    async def send_all(self, data: bytes | bytearray | memoryview, /) -> None: ...

    async def receive_some(self, max_bytes: int | None = None, /) -> bytes | bytearray: ...

    async def aclose(self) -> None: ...


class _TrioStreamAdapter(anyio.abc.ByteStream):
    """An anyio ``ByteStream`` over a trio ``Stream``."""

    def __init__(self, stream: TrioStreamLike) -> None:
        import trio  # only when the user gave us a trio stream

        self._trio = trio
        self.stream = stream

    async def receive(self, max_bytes: int = RECEIVE_SIZE) -> bytes:
        try:
            data = await self.stream.receive_some(max_bytes)
        except self._trio.ClosedResourceError as exc:
            raise anyio.ClosedResourceError from exc
        except (self._trio.BrokenResourceError, OSError) as exc:
            raise anyio.BrokenResourceError from _os_error(exc)
        if not data:
            raise anyio.EndOfStream
        return bytes(data)

    async def send(self, item: bytes) -> None:
        try:
            await self.stream.send_all(item)
        except self._trio.ClosedResourceError as exc:
            raise anyio.ClosedResourceError from exc
        except (self._trio.BrokenResourceError, OSError) as exc:
            raise anyio.BrokenResourceError from _os_error(exc)

    async def send_eof(self) -> None:
        send_eof = getattr(self.stream, "send_eof", None)
        if send_eof is None:
            raise NotImplementedError
        await send_eof()

    async def aclose(self) -> None:
        await self.stream.aclose()

    @property
    def extra_attributes(self) -> dict[Any, Any]:
        sock = _find_socket(self.stream)
        if sock is None:
            return {}
        return {
            anyio.abc.SocketAttribute.remote_address: sock.getpeername,
            anyio.abc.SocketAttribute.local_address: sock.getsockname,
        }


def _os_error(exc: BaseException) -> BaseException:
    """The OSError behind a trio error, as anyio's own streams chain it.

    trio raises ``BrokenResourceError`` from the socket's ``OSError``; the
    connection reports ``__cause__`` of what we raise as the reason the
    connection was lost, so skip trio's wrapper.
    """
    cause = exc.__cause__
    return cause if isinstance(cause, OSError) else exc


def _find_socket(stream: object) -> socket.socket | None:
    # trio.SocketStream has .socket; trio.SSLStream has .transport_stream.
    for _ in range(4):
        sock = getattr(stream, "socket", None)
        if sock is not None:
            return sock  # type: ignore[no-any-return]  # duck-typed trio socket
        stream = getattr(stream, "transport_stream", None)
        if stream is None:
            return None
    return None


def as_byte_stream(stream: anyio.abc.ByteStream | TrioStreamLike) -> anyio.abc.ByteStream:
    """Return ``stream`` as an anyio byte stream, adapting a trio stream."""
    if isinstance(stream, anyio.abc.ByteStream):
        return stream
    if hasattr(stream, "send_all") and hasattr(stream, "receive_some"):
        return _TrioStreamAdapter(stream)
    raise TypeError(f"expected an anyio ByteStream or a trio Stream, got {stream!r}")


def peer_addresses(stream: anyio.abc.ByteStream) -> tuple[Any, Any, socket.socket | None]:
    """Return ``(remote_address, local_address, raw_socket)``, None where
    unknown."""
    try:
        direct = getattr(stream, "peer_addresses", None)
        if direct is not None:
            return direct()  # type: ignore[no-any-return]  # a ProtocolStream's
        if type(stream).extra_attributes is _SOCKET_ATTRIBUTES:
            # anyio's own socket streams: ask the socket, as their attributes
            # would, without building the mapping and its closures.
            sock: socket.socket = stream._raw_socket  # type: ignore[attr-defined]
            try:
                remote = socket_address(sock.getpeername())
            except OSError:
                remote = None
            return remote, socket_address(sock.getsockname()), sock
        # What stream.extra() looks in, built once: anyio's socket streams
        # rebuild it, with a getpeername() call, on every access.
        attributes: Mapping[Any, Callable[[], Any]] = stream.extra_attributes
        remote = attributes.get(anyio.abc.SocketAttribute.remote_address)
        local = attributes.get(anyio.abc.SocketAttribute.local_address)
        raw = attributes.get(anyio.abc.SocketAttribute.raw_socket)
        return (
            None if remote is None else remote(),
            None if local is None else local(),
            None if raw is None else raw(),
        )
    except OSError:  # the socket is already gone
        return None, None, None


#: The attributes of anyio's socket streams (the property object), to tell
#: them from streams that provide their own.
_SOCKET_ATTRIBUTES = anyio.abc.SocketStream.extra_attributes


def socket_address(address: Any) -> Any:
    """A socket address as anyio reports it: IPv6 as ``(host, port)``,
    with ``%scope`` on the host when there is a scope id."""
    if isinstance(address, tuple) and len(address) == 4:
        host, port, _flowinfo, scope_id = address
        if scope_id:
            return f"{host.split('%')[0]}%{scope_id}", port
        return host, port
    return address


def close_socket(sock: socket.socket) -> None:
    """Close the socket under a plain trio socket stream, as the stream's
    ``aclose()`` would, minus its checkpoint (trio only).

    trio must hear of it first: a task still waiting for the socket then
    gets ``ClosedResourceError``, and trio drops the socket from its epoll
    set before the descriptor can be reused. Closing the stream afterwards
    does nothing.
    """
    import trio.lowlevel

    trio.lowlevel.notify_closing(sock)
    sock.close()
