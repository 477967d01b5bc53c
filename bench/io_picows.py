"""picows (Cython, asyncio on uvloop): server and client, in its callback style.

picows is the fastest WebSocket implementation available here, so it is
also the *common peer*: every other server is measured against the picows
client and every other client against the picows server (see bench_io.py).
Its client therefore runs each scenario natively, the next message sent
from the callback that received the previous one, with no future or task
per message, so that it adds as little as possible to the other side's
numbers. Its messages are the same as everyone's and every echo and
acknowledgement is checked.

picows has no permessage-deflate. For the memory scenario with compression
on, its client offers the extension in a raw header and never sends a
message, which is all an idle connection needs.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from io_common import (
    MAX_SIZE,
    CpuMeter,
    Payload,
    Sink,
    Stats,
    end_marker,
    expected_ack,
    is_sink,
    payloads,
    sink_path,
)
from io_drivers import CheckFailed, Control, Ready
from picows import (
    WSCloseCode,
    WSFrame,
    WSListener,
    WSMsgType,
    WSTransport,
    WSUpgradeRequest,
    ws_connect,
    ws_create_server,
)

DEFLATE_OFFER = {"Sec-WebSocket-Extensions": "permessage-deflate; client_max_window_bits"}


def _wire(message: Payload) -> tuple[WSMsgType, bytes]:
    if isinstance(message, str):
        return WSMsgType.TEXT, message.encode()
    return WSMsgType.BINARY, message


class _Peer(WSListener):
    """One connection, server or client: whole messages go to ``on_message``."""

    def __init__(self) -> None:
        super().__init__()
        self.transport: WSTransport | None = None
        self.on_message: Callable[[Payload], None] = self._unexpected
        self.fragments: list[bytes] = []
        self.fragmented_text = False
        self.writable: asyncio.Event | None = None

    def _unexpected(self, message: Payload) -> None:
        raise CheckFailed(f"unexpected message {message!r:.60}")

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        msg_type = frame.msg_type
        if frame.fin:
            if msg_type is WSMsgType.BINARY:
                self.on_message(frame.get_payload_as_bytes())
                return
            if msg_type is WSMsgType.TEXT:
                self.on_message(frame.get_payload_as_utf8_text())
                return
        if msg_type is WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code(), frame.get_close_message())
            transport.disconnect()
        elif msg_type in (WSMsgType.BINARY, WSMsgType.TEXT, WSMsgType.CONTINUATION):
            # A fragmented message: none of the benchmarked libraries sends
            # one, but a peer may.
            if msg_type is not WSMsgType.CONTINUATION:
                self.fragmented_text = msg_type is WSMsgType.TEXT
            self.fragments.append(frame.get_payload_as_bytes())
            if frame.fin:
                data = b"".join(self.fragments)
                self.fragments = []
                self.on_message(data.decode() if self.fragmented_text else data)

    def pause_writing(self) -> None:
        if self.writable is None:
            self.writable = asyncio.Event()
        self.writable.clear()

    def resume_writing(self) -> None:
        if self.writable is not None:
            self.writable.set()

    def send(self, message: Payload) -> None:
        assert self.transport is not None
        msg_type, data = _wire(message)
        self.transport.send(msg_type, data)


# -- server ---------------------------------------------------------------------------


class _ServerPeer(_Peer):
    def __init__(self, path: str, stats: Stats) -> None:
        super().__init__()
        self.stats = stats
        self.sink = Sink(path) if is_sink(path) else None
        self.on_message = self._echo if self.sink is None else self._count

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        self.stats.opened()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.stats.closed()

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if self.sink is None and frame.fin and frame.msg_type in _DATA:
            # Echo straight from picows' buffer; send() copies it.
            transport.send(frame.msg_type, frame.get_payload_as_memoryview())
        else:
            super().on_ws_frame(transport, frame)

    def _echo(self, message: Payload) -> None:
        self.send(message)

    def _count(self, message: Payload) -> None:
        assert self.sink is not None
        ack = self.sink.feed(message)
        if ack is not None:
            self.send(ack)


_DATA = (WSMsgType.BINARY, WSMsgType.TEXT)


async def serve(key: str, stats: Stats, ready: Ready) -> None:
    def factory(request: WSUpgradeRequest) -> _ServerPeer:
        return _ServerPeer(request.path.decode(), stats)

    server = await ws_create_server(factory, "127.0.0.1", 0, max_frame_size=MAX_SIZE)
    async with server:
        ready(server.sockets[0].getsockname()[1])
        await server.serve_forever()


# -- client ---------------------------------------------------------------------------


async def _connect(port: int, path: str, deflate: bool = False) -> tuple[WSTransport, _Peer]:
    transport, peer = await ws_connect(
        _Peer,
        f"ws://127.0.0.1:{port}{path}",
        max_frame_size=MAX_SIZE,
        extra_headers=DEFLATE_OFFER if deflate else None,
    )
    assert isinstance(peer, _Peer)
    return transport, peer


async def _close(transport: WSTransport) -> None:
    transport.send_close(WSCloseCode.OK)
    await transport.wait_disconnected()


def _ping_pong(peer: _Peer, messages: tuple[Payload, ...], count: int) -> asyncio.Future[None]:
    """Send ``count`` messages one at a time, each when the previous one's echo
    arrived and was checked; the future completes with the last echo."""
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    variants = len(messages)
    index = 0

    def on_message(reply: Payload) -> None:
        nonlocal index
        if reply != messages[index % variants]:
            if not done.done():
                done.set_exception(CheckFailed(f"echo {index} differs"))
            return
        index += 1
        if index == count:
            done.set_result(None)
        else:
            peer.send(messages[index % variants])

    peer.on_message = on_message
    if count:
        peer.send(messages[0])
    else:
        done.set_result(None)
    return done


async def _echo(cmd: dict[str, Any]) -> dict[str, Any]:
    messages = payloads(cmd["kind"], cmd["size"])
    transport, peer = await _connect(cmd["port"], "/echo")
    await _ping_pong(peer, messages, cmd["warmup"])
    meter = CpuMeter(cmd.get("server_pid"))
    meter.start()
    start = time.perf_counter()
    await _ping_pong(peer, messages, cmd["count"])
    elapsed = time.perf_counter() - start
    cpu = meter.stop()
    await _close(transport)
    return {"elapsed": elapsed, "count": cmd["count"], **cpu}


async def _burst(peer: _Peer, kind: str, size: int, count: int) -> None:
    messages = [_wire(m) for m in payloads(kind, size)]
    variants = len(messages)
    ack: asyncio.Future[Payload] = asyncio.get_running_loop().create_future()
    peer.on_message = ack.set_result
    assert peer.transport is not None
    send = peer.transport.send
    for i in range(count):
        writable = peer.writable
        if writable is not None and not writable.is_set():
            await writable.wait()
        send(*messages[i % variants])
    peer.send(end_marker(kind))
    answer = await ack
    if answer != expected_ack(kind, size, count):
        raise CheckFailed(f"sink answered {answer!r}, expected {expected_ack(kind, size, count)!r}")


async def _stream(cmd: dict[str, Any]) -> dict[str, Any]:
    kind, size = cmd["kind"], cmd["size"]
    transport, peer = await _connect(cmd["port"], sink_path(kind, size))
    if cmd["warmup"]:
        await _burst(peer, kind, size, cmd["warmup"])
    meter = CpuMeter(cmd.get("server_pid"))
    meter.start()
    start = time.perf_counter()
    await _burst(peer, kind, size, cmd["count"])
    elapsed = time.perf_counter() - start
    cpu = meter.stop()
    await _close(transport)
    return {"elapsed": elapsed, "count": cmd["count"], **cpu}


async def _open_all(cmd: dict[str, Any]) -> list[tuple[WSTransport, _Peer]]:
    limiter = asyncio.Semaphore(cmd["concurrency"])

    async def one() -> tuple[WSTransport, _Peer]:
        async with limiter:
            return await _connect(cmd["port"], "/echo", cmd["deflate"])

    return list(await asyncio.gather(*(one() for _ in range(cmd["conns"]))))


async def _many(cmd: dict[str, Any]) -> dict[str, Any]:
    connections = await _open_all(cmd)
    messages = payloads("bin", cmd["size"])
    try:
        if cmd["warmup"]:
            await asyncio.gather(
                *(
                    _ping_pong(peer, (messages[i % len(messages)],), cmd["warmup"])
                    for i, (_, peer) in enumerate(connections)
                )
            )
        meter = CpuMeter(cmd.get("server_pid"))
        meter.start()
        start = time.perf_counter()
        await asyncio.gather(
            *(
                _ping_pong(peer, (messages[i % len(messages)],), cmd["rounds"])
                for i, (_, peer) in enumerate(connections)
            )
        )
        elapsed = time.perf_counter() - start
        cpu = meter.stop()
    finally:
        await asyncio.gather(*(_close(transport) for transport, _ in connections))
    return {"elapsed": elapsed, "count": cmd["rounds"] * cmd["conns"], **cpu}


async def _handshakes(cmd: dict[str, Any]) -> dict[str, Any]:
    done = 0

    async def worker(share: int) -> None:
        nonlocal done
        for _ in range(share):
            transport, _ = await _connect(cmd["port"], "/echo")
            await _close(transport)
            done += 1

    async def batch(count: int) -> float:
        concurrency = min(cmd["concurrency"], count)
        start = time.perf_counter()
        await asyncio.gather(
            *(worker(count // concurrency + (i < count % concurrency)) for i in range(concurrency))
        )
        return time.perf_counter() - start

    if cmd["warmup"]:
        await batch(cmd["warmup"])
    done = 0
    meter = CpuMeter(cmd.get("server_pid"))
    meter.start()
    elapsed = await batch(cmd["count"])
    cpu = meter.stop()
    if done != cmd["count"]:
        raise CheckFailed(f"{done} handshakes, expected {cmd['count']}")
    return {"elapsed": elapsed, "count": done, **cpu}


async def _hold(cmd: dict[str, Any], control: Control) -> dict[str, Any]:
    connections = await _open_all(cmd)
    try:
        control.report({"held": len(connections)})
        await control.wait_line("release")
    finally:
        await asyncio.gather(*(_close(transport) for transport, _ in connections))
    return {"elapsed": 0.0, "count": cmd["conns"]}


async def run_client(key: str, cmd: dict[str, Any], control: Control) -> dict[str, Any]:
    async with asyncio.timeout(cmd["timeout"]):
        op = cmd["op"]
        if op == "echo":
            return await _echo(cmd)
        if op == "stream":
            return await _stream(cmd)
        if op == "many":
            return await _many(cmd)
        if op == "handshakes":
            return await _handshakes(cmd)
        if op == "hold":
            return await _hold(cmd, control)
        raise ValueError(f"unknown op {op!r}")
