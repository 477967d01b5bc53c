"""Client workloads, written once on anyio for every coroutine-style library.

A library provides a *connector*: ``connect(url, deflate)`` is an async
context manager that opens a connection and yields an :class:`Endpoint`
(bound ``send`` and ``recv`` coroutines). The drivers below run the
scenarios with it on trio or asyncio, check every echo and every
acknowledgement, and return the elapsed time. picows, whose API is
callbacks, has drivers of its own in ``io_picows.py``.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from dataclasses import dataclass
from typing import Any

import anyio
from io_common import CpuMeter, Payload, end_marker, expected_ack, payloads, sink_path


@dataclass
class Endpoint:
    send: Callable[[Payload], Awaitable[None]]
    recv: Callable[[], Awaitable[Payload]]


Connect = Callable[[str, bool], AbstractAsyncContextManager[Endpoint]]
#: Opens what a library needs for the duration of one command (aiohttp's
#: ClientSession) and yields its connector.
ConnectorFactory = Callable[[], AbstractAsyncContextManager[Connect]]
#: A server calls it with its port once it listens.
Ready = Callable[[int], None]


class CheckFailed(Exception):
    """An echo or an acknowledgement was not what was sent: the run is void."""


class Control:
    """How a command talks to the orchestrator while it runs (``hold``)."""

    def report(self, obj: dict[str, Any]) -> None:
        raise NotImplementedError

    async def wait_line(self, expected: str) -> None:
        raise NotImplementedError


def url(cmd: dict[str, Any], path: str) -> str:
    return f"ws://127.0.0.1:{cmd['port']}{path}"


async def run(factory: ConnectorFactory, cmd: dict[str, Any], control: Control) -> dict[str, Any]:
    """Run one command with a deadline; return what to report."""
    with anyio.fail_after(cmd["timeout"]):
        async with factory() as connect:
            op = cmd["op"]
            if op == "echo":
                return await echo(connect, cmd)
            if op == "stream":
                return await stream(connect, cmd)
            if op == "many":
                return await many(connect, cmd)
            if op == "handshakes":
                return await handshakes(connect, cmd)
            if op == "hold":
                return await hold(connect, cmd, control)
            raise ValueError(f"unknown op {op!r}")


async def echo(connect: Connect, cmd: dict[str, Any]) -> dict[str, Any]:
    """Round trips on one connection, one message in flight."""
    messages = payloads(cmd["kind"], cmd["size"])
    variants = len(messages)
    count, warmup = cmd["count"], cmd["warmup"]
    async with connect(url(cmd, "/echo"), cmd["deflate"]) as endpoint:
        send, recv = endpoint.send, endpoint.recv
        for i in range(warmup):
            message = messages[i % variants]
            await send(message)
            if await recv() != message:
                raise CheckFailed(f"echo {i} (warm-up) differs")
        meter = CpuMeter(cmd.get("server_pid"))
        meter.start()
        start = time.perf_counter()
        for i in range(count):
            message = messages[i % variants]
            await send(message)
            if await recv() != message:
                raise CheckFailed(f"echo {i} differs")
        elapsed = time.perf_counter() - start
        cpu = meter.stop()
    return {"elapsed": elapsed, "count": count, **cpu}


async def _burst(endpoint: Endpoint, kind: str, size: int, count: int) -> None:
    messages = payloads(kind, size)
    variants = len(messages)
    send = endpoint.send
    for i in range(count):
        await send(messages[i % variants])
    await send(end_marker(kind))
    ack = await endpoint.recv()
    if isinstance(ack, bytes | bytearray):
        ack = bytes(ack).decode()
    if ack != expected_ack(kind, size, count):
        raise CheckFailed(f"sink answered {ack!r}, expected {expected_ack(kind, size, count)!r}")


async def stream(connect: Connect, cmd: dict[str, Any]) -> dict[str, Any]:
    """A one-way stream; the server checks, counts and acknowledges at the end."""
    kind, size = cmd["kind"], cmd["size"]
    async with connect(url(cmd, sink_path(kind, size)), cmd["deflate"]) as endpoint:
        if cmd["warmup"]:
            await _burst(endpoint, kind, size, cmd["warmup"])
        meter = CpuMeter(cmd.get("server_pid"))
        meter.start()
        start = time.perf_counter()
        await _burst(endpoint, kind, size, cmd["count"])
        elapsed = time.perf_counter() - start
        cpu = meter.stop()
    return {"elapsed": elapsed, "count": cmd["count"], **cpu}


class _Gate:
    """Set once ``count`` tasks have arrived."""

    def __init__(self, count: int) -> None:
        self.remaining = count
        self.event = anyio.Event()

    def arrive(self) -> None:
        self.remaining -= 1
        if self.remaining == 0:
            self.event.set()


async def _fleet(
    connect: Connect,
    cmd: dict[str, Any],
    work: Callable[[int, Endpoint, int], Awaitable[None]] | None,
    control: Control | None = None,
) -> tuple[float, dict[str, int]]:
    """Open ``conns`` connections, ``concurrency`` handshakes at a time (so as
    not to overflow listen backlogs); once all are open, run ``work`` on each
    at once for ``warmup`` rounds, then, once all are warm, again for
    ``rounds`` and time that (or, without ``work``, report to the
    orchestrator and wait for its word); then close them all.

    Each connection is opened and closed by a task of its own: trio's cancel
    scopes, which the libraries open in ``__aenter__``, must be left in the
    task that entered them.
    """
    conns = cmd["conns"]
    target = url(cmd, "/echo")
    limiter = anyio.Semaphore(cmd["concurrency"])
    opened, warm, finished = _Gate(conns), _Gate(conns), _Gate(conns)
    warm_up, go, release = anyio.Event(), anyio.Event(), anyio.Event()

    async def one(index: int) -> None:
        async with AsyncExitStack() as stack:
            async with limiter:
                endpoint = await stack.enter_async_context(connect(target, cmd["deflate"]))
            opened.arrive()
            if work is not None:
                await warm_up.wait()
                await work(index, endpoint, cmd["warmup"])
                warm.arrive()
            await go.wait()
            if work is not None:
                await work(index, endpoint, cmd["rounds"])
            finished.arrive()
            await release.wait()

    async with anyio.create_task_group() as task_group:
        for index in range(conns):
            task_group.start_soon(one, index)
        await opened.event.wait()
        if work is not None:
            warm_up.set()
            await warm.event.wait()
        meter = CpuMeter(cmd.get("server_pid"))
        meter.start()
        start = time.perf_counter()
        go.set()
        await finished.event.wait()
        elapsed = time.perf_counter() - start
        cpu = meter.stop()
        if control is not None:
            control.report({"held": conns})
            await control.wait_line("release")
        release.set()
    return elapsed, cpu


async def many(connect: Connect, cmd: dict[str, Any]) -> dict[str, Any]:
    """``conns`` connections, each doing ``rounds`` echo round trips at once
    (after ``warmup`` untimed ones)."""
    messages = payloads("bin", cmd["size"])

    async def work(index: int, endpoint: Endpoint, rounds: int) -> None:
        message = messages[index % len(messages)]
        send, recv = endpoint.send, endpoint.recv
        for _ in range(rounds):
            await send(message)
            if await recv() != message:
                raise CheckFailed(f"echo on connection {index} differs")

    elapsed, cpu = await _fleet(connect, cmd, work)
    return {"elapsed": elapsed, "count": cmd["rounds"] * cmd["conns"], **cpu}


async def handshakes(connect: Connect, cmd: dict[str, Any]) -> dict[str, Any]:
    """Open and close ``count`` connections, ``concurrency`` at a time."""
    target = url(cmd, "/echo")
    done = 0

    async def worker(share: int) -> None:
        nonlocal done
        for _ in range(share):
            async with connect(target, False):
                pass
            done += 1

    async def batch(count: int) -> float:
        concurrency = min(cmd["concurrency"], count)
        start = time.perf_counter()
        async with anyio.create_task_group() as task_group:
            for i in range(concurrency):
                task_group.start_soon(worker, count // concurrency + (i < count % concurrency))
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


async def hold(connect: Connect, cmd: dict[str, Any], control: Control) -> dict[str, Any]:
    """Open ``conns`` idle connections, say so, keep them until told to release."""
    await _fleet(connect, cmd, None, control)
    return {"elapsed": 0.0, "count": cmd["conns"]}
