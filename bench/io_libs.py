"""Servers and client connectors for the coroutine-style WebSocket libraries:
trio_ws (on trio and on asyncio through anyio), websockets (trio and asyncio
flavours), trio-websocket and aiohttp.

Each server is written the way the library's documentation writes one:
an echo handler on ``/echo`` and a counting :class:`~io_common.Sink` on
``/sink?...``; each keeps the library's defaults except the message size
limit (``MAX_SIZE``) and, on the client, compression (offered only when a
scenario asks for it). websockets is told ``proxy=None`` so that it never
looks for a proxy: every connection goes straight to 127.0.0.1.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
from io_common import MAX_SIZE, Payload, Sink, Stats, is_sink
from io_drivers import Connect, Control, Endpoint, Ready, run

# -- trio_ws (trio and asyncio) ---------------------------------------------------


async def serve_trio_ws(stats: Stats, ready: Ready) -> None:
    import trio_ws

    async def handler(ws: trio_ws.WebSocketConnection) -> None:
        stats.opened()
        try:
            assert ws.request is not None
            path = ws.request.path
            if is_sink(path):
                sink = Sink(path)
                async for message in ws:
                    ack = sink.feed(message)
                    if ack is not None:
                        await ws.send(ack)
            else:
                async for message in ws:
                    await ws.send(message)
        finally:
            stats.closed()

    async with anyio.create_task_group() as task_group:
        server = await task_group.start(
            functools.partial(trio_ws.serve_websocket, handler, "127.0.0.1", 0, max_size=MAX_SIZE)
        )
        ready(server.port)


@asynccontextmanager
async def connectors_trio_ws() -> AsyncIterator[Connect]:
    import trio_ws

    @asynccontextmanager
    async def connect(url: str, deflate: bool) -> AsyncIterator[Endpoint]:
        async with trio_ws.open_websocket_url(
            url, compression="deflate" if deflate else None, max_size=MAX_SIZE
        ) as ws:
            yield Endpoint(ws.send, ws.recv)

    yield connect


# -- websockets, trio flavour -------------------------------------------------------


async def serve_websockets_trio(stats: Stats, ready: Ready) -> None:
    import trio
    from websockets.exceptions import ConnectionClosed
    from websockets.trio.server import ServerConnection, serve

    async def handler(ws: ServerConnection) -> None:
        stats.opened()
        try:
            await _websockets_handler(ws.request.path if ws.request else "/", ws)
        except ConnectionClosed:
            pass
        finally:
            stats.closed()

    async with trio.open_nursery() as nursery:
        server = await nursery.start(
            functools.partial(serve, handler, 0, host="127.0.0.1", max_size=MAX_SIZE)
        )
        ready(server.listeners[0].socket.getsockname()[1])


async def _websockets_handler(path: str, ws: Any) -> None:
    # The same code for both flavours: their connections have the same API.
    if is_sink(path):
        sink = Sink(path)
        async for message in ws:
            ack = sink.feed(message)
            if ack is not None:
                await ws.send(ack)
    else:
        async for message in ws:
            await ws.send(message)


@asynccontextmanager
async def connectors_websockets_trio() -> AsyncIterator[Connect]:
    from websockets.trio.client import connect as ws_connect

    @asynccontextmanager
    async def connect(url: str, deflate: bool) -> AsyncIterator[Endpoint]:
        async with ws_connect(
            url, compression="deflate" if deflate else None, max_size=MAX_SIZE, proxy=None
        ) as ws:
            yield Endpoint(ws.send, ws.recv)

    yield connect


# -- websockets, asyncio flavour ----------------------------------------------------


async def serve_websockets_asyncio(stats: Stats, ready: Ready) -> None:
    from websockets.asyncio.server import ServerConnection, serve
    from websockets.exceptions import ConnectionClosed

    async def handler(ws: ServerConnection) -> None:
        stats.opened()
        try:
            await _websockets_handler(ws.request.path if ws.request else "/", ws)
        except ConnectionClosed:
            pass
        finally:
            stats.closed()

    async with serve(handler, "127.0.0.1", 0, max_size=MAX_SIZE) as server:
        ready(next(iter(server.sockets)).getsockname()[1])
        await server.serve_forever()


@asynccontextmanager
async def connectors_websockets_asyncio() -> AsyncIterator[Connect]:
    from websockets.asyncio.client import connect as ws_connect

    @asynccontextmanager
    async def connect(url: str, deflate: bool) -> AsyncIterator[Endpoint]:
        async with ws_connect(
            url, compression="deflate" if deflate else None, max_size=MAX_SIZE, proxy=None
        ) as ws:
            yield Endpoint(ws.send, ws.recv)

    yield connect


# -- trio-websocket --------------------------------------------------------------------


async def serve_trio_websocket(stats: Stats, ready: Ready) -> None:
    import trio
    from trio_websocket import ConnectionClosed, WebSocketRequest, serve_websocket

    async def handler(request: WebSocketRequest) -> None:
        path = request.path
        ws = await request.accept()
        stats.opened()
        try:
            if is_sink(path):
                sink = Sink(path)
                while True:
                    ack = sink.feed(await ws.get_message())
                    if ack is not None:
                        await ws.send_message(ack)
            else:
                while True:
                    await ws.send_message(await ws.get_message())
        except ConnectionClosed:
            pass
        finally:
            stats.closed()

    async with trio.open_nursery() as nursery:
        server = await nursery.start(
            functools.partial(
                serve_websocket, handler, "127.0.0.1", 0, None, max_message_size=MAX_SIZE
            )
        )
        ready(server.port)


@asynccontextmanager
async def connectors_trio_websocket() -> AsyncIterator[Connect]:
    from trio_websocket import open_websocket_url

    @asynccontextmanager
    async def connect(url: str, deflate: bool) -> AsyncIterator[Endpoint]:
        if deflate:
            raise ValueError("trio-websocket has no permessage-deflate")
        async with open_websocket_url(url, max_message_size=MAX_SIZE) as ws:
            yield Endpoint(ws.send_message, ws.get_message)

    yield connect


# -- aiohttp (asyncio) ----------------------------------------------------------------


async def serve_aiohttp(stats: Stats, ready: Ready) -> None:
    import asyncio

    from aiohttp import WSMsgType, web

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=MAX_SIZE)
        await ws.prepare(request)
        stats.opened()
        try:
            sink = Sink(request.path_qs) if is_sink(request.path) else None
            async for msg in ws:
                if msg.type is WSMsgType.TEXT:
                    if sink is None:
                        await ws.send_str(msg.data)
                    elif (ack := sink.feed(msg.data)) is not None:
                        await ws.send_str(ack)
                elif msg.type is WSMsgType.BINARY:
                    if sink is None:
                        await ws.send_bytes(msg.data)
                    elif (ack := sink.feed(msg.data)) is not None:
                        await ws.send_str(ack)
        finally:
            stats.closed()
        return ws

    app = web.Application()
    app.router.add_get("/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        ready(runner.addresses[0][1])
        await asyncio.Event().wait()  # until cancelled
    finally:
        await runner.cleanup()


@asynccontextmanager
async def connectors_aiohttp() -> AsyncIterator[Connect]:
    import aiohttp

    # limit=0: WebSocket connections hold a connector slot (default 100).
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        @asynccontextmanager
        async def connect(url: str, deflate: bool) -> AsyncIterator[Endpoint]:
            async with session.ws_connect(
                url, max_msg_size=MAX_SIZE, compress=15 if deflate else 0
            ) as ws:

                async def send(message: Payload) -> None:
                    if isinstance(message, str):
                        await ws.send_str(message)
                    else:
                        await ws.send_bytes(message)

                async def recv() -> Payload:
                    msg = await ws.receive()
                    if msg.type is aiohttp.WSMsgType.BINARY or msg.type is aiohttp.WSMsgType.TEXT:
                        data: Payload = msg.data
                        return data
                    raise ConnectionError(f"aiohttp received {msg.type!r}")

                yield Endpoint(send, recv)

        yield connect


# -- registry ---------------------------------------------------------------------------

SERVERS: dict[str, Callable[[Stats, Ready], Awaitable[None]]] = {
    "trio_ws-trio": serve_trio_ws,
    "trio_ws-asyncio": serve_trio_ws,
    "websockets-trio": serve_websockets_trio,
    "websockets-asyncio": serve_websockets_asyncio,
    "trio-websocket": serve_trio_websocket,
    "aiohttp": serve_aiohttp,
}

CONNECTORS = {
    "trio_ws-trio": connectors_trio_ws,
    "trio_ws-asyncio": connectors_trio_ws,
    "websockets-trio": connectors_websockets_trio,
    "websockets-asyncio": connectors_websockets_asyncio,
    "trio-websocket": connectors_trio_websocket,
    "aiohttp": connectors_aiohttp,
}


async def serve(key: str, stats: Stats, ready: Ready) -> None:
    await SERVERS[key](stats, ready)


async def run_client(key: str, cmd: dict[str, Any], control: Control) -> dict[str, Any]:
    return await run(CONNECTORS[key], cmd, control)
