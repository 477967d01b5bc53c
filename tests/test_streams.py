"""``peer_addresses`` reads a stream's addresses once, when a connection is
made: for anyio's socket streams straight from the socket, for the asyncio
protocol's stream from its transport, for anything else through
``extra_attributes``; every way gives what ``stream.extra()`` says."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import AsyncIterator
from typing import Any

import anyio
import anyio.abc
import pytest

from trio_ws._streams import peer_addresses, socket_address

pytestmark = pytest.mark.anyio

TIMEOUT = 10


@contextlib.asynccontextmanager
async def socket_pair(kind: str) -> AsyncIterator[tuple[Any, Any]]:
    """A connected (client, server) pair of anyio socket streams."""
    with anyio.fail_after(TIMEOUT):
        if kind == "unix":
            with tempfile.TemporaryDirectory() as directory:
                path = os.path.join(directory, "sock")
                unix_listener = await anyio.create_unix_listener(path)
                async with unix_listener:
                    unix_client = await anyio.connect_unix(path)
                    unix_server = await unix_listener.accept()
                    async with unix_client, unix_server:
                        yield unix_client, unix_server
            return
        host = "::1" if kind == "ipv6" else "127.0.0.1"
        multi = await anyio.create_tcp_listener(local_host=host)
        async with multi:
            [listener] = multi.listeners
            port = listener.extra(anyio.abc.SocketAttribute.local_port)
            client = await anyio.connect_tcp(host, port)
            server: Any = await listener.accept()  # type: ignore[attr-defined]
            async with client, server:
                yield client, server


def expected(stream: anyio.abc.SocketStream) -> tuple[Any, Any, Any]:
    return (
        stream.extra(anyio.abc.SocketAttribute.remote_address, None),
        stream.extra(anyio.abc.SocketAttribute.local_address),
        stream.extra(anyio.abc.SocketAttribute.raw_socket),
    )


class ViaAttributes(anyio.abc.ByteStream):
    """A stream of someone else's that only offers extra_attributes."""

    def __init__(self, inner: anyio.abc.SocketStream) -> None:
        self.inner = inner

    async def receive(self, max_bytes: int = 65536) -> bytes:
        return await self.inner.receive(max_bytes)

    async def send(self, item: bytes) -> None:
        await self.inner.send(item)

    async def send_eof(self) -> None:
        await self.inner.send_eof()

    async def aclose(self) -> None:
        await self.inner.aclose()

    @property
    def extra_attributes(self) -> Any:
        return self.inner.extra_attributes


@pytest.mark.parametrize("kind", ["ipv4", "ipv6", "unix"])
async def test_anyio_socket_streams_give_what_extra_gives(kind: str, request: Any) -> None:
    if kind == "ipv6":
        request.getfixturevalue("ipv6")
    async with socket_pair(kind) as (client, server):
        for stream in (client, server):
            # What the fast path relies on: anyio's streams keep the stock
            # attributes (if anyio changes that, they take the general path).
            assert type(stream).extra_attributes is anyio.abc.SocketStream.extra_attributes
            assert peer_addresses(stream) == expected(stream)
            assert peer_addresses(ViaAttributes(stream)) == expected(stream)
        remote, local, _ = peer_addresses(server)
        assert (remote, local) == peer_addresses(client)[1::-1]
        if kind == "ipv4":
            assert local[0] == "127.0.0.1"
            assert isinstance(local[1], int)


async def test_a_closed_socket_has_no_addresses() -> None:
    async with socket_pair("ipv4") as (client, _server):
        await client.aclose()
        assert peer_addresses(client) == (None, None, None)


def test_socket_address_is_anyio_s_form() -> None:
    assert socket_address(("::1", 80, 0, 0)) == ("::1", 80)
    assert socket_address(("fe80::1%eth0", 80, 0, 3)) == ("fe80::1%3", 80)
    assert socket_address(("127.0.0.1", 80)) == ("127.0.0.1", 80)
    assert socket_address("/tmp/sock") == "/tmp/sock"
    assert socket_address(None) is None
