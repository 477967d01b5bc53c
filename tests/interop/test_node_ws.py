"""Interop with Node's ``ws`` package, permessage-deflate on (threshold 0).

``node/peer.js`` plays ws's side from a JSON plan (see its header) and
reports what it observed as JSON: messages (type, length, SHA-256), pings
received, pong round trips, the close event (code, reason, wasClean). As a
client it runs once per test; as a server one process serves the module,
each connection taking its plan and an id from the URL's query string.

Our side runs on both anyio backends, on real TCP over 127.0.0.1. Our
deflate settings mirror ws's threshold 0: ``DeflateConfig(min_size=0)``.
"""

from __future__ import annotations

import json
import ssl
import subprocess
import threading
import urllib.parse
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import anyio.streams.stapled
import pytest
import trustme

import trio_ws
from tests.interop.peers import (
    LONG_PING,
    LONG_REASON,
    MAX_SIZE,
    NODE_DIR,
    SIZES,
    TIMEOUT,
    describe,
    node_package,
    node_works,
    payload,
    require,
    wait_until,
)
from trio_ws import DeflateConfig, WebSocketConnection

PEER = str(NODE_DIR / "peer.js")
DEFLATE = DeflateConfig(min_size=0)  # ws's threshold: 0
COMPRESSIONS = [pytest.param(DEFLATE, id="deflate"), pytest.param(None, id="no-deflate")]
CLOSE_CODES = [1000, 1001, 4000]
#: What ws may close with: those, and an empty close frame (None), which
#: both sides report as 1005 with no reason.
PEER_CLOSE_CODES = [*CLOSE_CODES, None]
KEEPALIVE_TIMEOUT = "sent 1011 (internal error) keepalive ping timeout; no close frame received"
Plan = list[dict[str, Any]]
Results = dict[str, Any]

pytestmark = pytest.mark.anyio

# The 0 B - 16 MiB matrix runs once, on trio: test_websockets.py runs it on
# asyncio, and the data path does not depend on the backend.
trio_only = pytest.mark.parametrize("anyio_backend", [pytest.param(("trio", {}), id="trio")])


@pytest.fixture(scope="module", autouse=True)
def _node_ws_peer() -> None:
    require(node_works(), "node (>= 18)")
    require(node_package("ws"), "the ws package in tests/interop/node/node_modules")


def expected_messages(*pairs: tuple[str, int]) -> list[dict[str, object]]:
    return [describe(payload(kind, size)) for kind, size in pairs]


def close_step(code: int | None) -> tuple[dict[str, Any], int, str]:
    """The plan step for ws to close with ``code`` (None: an empty close
    frame), and the code and reason each side should then report."""
    if code is None:
        return {"op": "close"}, 1005, ""
    reason = LONG_REASON if code == 4000 else f"ws closes with {code}"
    return {"op": "close", "code": code, "reason": reason}, code, reason


def check_clean(results: Results) -> None:
    assert results["error"] is None, results["error"]


# -- ws as the client, against our server -------------------------------------------


async def run_node_client(
    url: str, plan: Plan, *, deflate: bool = True, options: Sequence[str] = ()
) -> Results:
    """Run peer.js as a client through ``plan``; return what it observed."""
    command = ["node", PEER, "client", url, json.dumps(plan), *options]
    if not deflate:
        command.append("--no-deflate")
    with anyio.fail_after(TIMEOUT):
        result = await anyio.run_process(command, check=False)
    assert result.returncode == 0, result.stderr.decode()
    results: Results = json.loads(result.stdout)
    return results


@asynccontextmanager
async def serving(
    handler: Callable[[WebSocketConnection], Awaitable[None]], **options: Any
) -> AsyncIterator[str]:
    """Run our server with ``handler``; yield its URL. A failed assertion in
    the handler fails the test (instead of only closing with 1011)."""
    errors: list[BaseException] = []

    async def checked(ws: WebSocketConnection) -> None:
        try:
            await handler(ws)
        except trio_ws.ConnectionClosed:
            raise
        except Exception as exc:
            errors.append(exc)
            raise

    options.setdefault("max_size", MAX_SIZE)
    options.setdefault("compression", DEFLATE)
    with anyio.fail_after(TIMEOUT):
        async with anyio.create_task_group() as tg:
            server = await tg.start(_serve, checked, options)
            yield f"ws://127.0.0.1:{server.port}/interop"
            tg.cancel_scope.cancel()
    if errors:
        raise errors[0]


async def _serve(
    handler: Callable[[WebSocketConnection], Awaitable[None]],
    options: dict[str, Any],
    *,
    task_status: anyio.abc.TaskStatus[trio_ws.WebSocketServer],
) -> None:
    await trio_ws.serve_websocket(handler, "127.0.0.1", 0, task_status=task_status, **options)


@trio_only
@pytest.mark.parametrize("compression", COMPRESSIONS)
async def test_ws_client_messages_at_every_size(compression: DeflateConfig | None) -> None:
    """ws sends text and binary, 0 B to 16 MiB; we check and echo each."""
    pairs = [(kind, size) for kind in ("text", "binary") for size in SIZES]
    received: list[dict[str, object]] = []
    extensions: list[bool] = []

    async def echo(ws: WebSocketConnection) -> None:
        extensions.append(ws.extension is not None)
        async for message in ws:
            received.append(describe(message))
            await ws.send(message)

    plan: Plan = []
    for kind, size in pairs:
        plan += [{"op": "send", "kind": kind, "size": size}, {"op": "recv"}]
    async with serving(echo, compression=compression) as url:
        results = await run_node_client(url, plan)
    check_clean(results)
    assert received == expected_messages(*pairs)
    assert results["messages"] == expected_messages(*pairs)
    assert extensions == [compression is not None]
    if compression is None:
        assert results["extensions"] == ""
    else:
        assert results["extensions"].split(";")[0] == "permessage-deflate"
    assert results["close"] == {"code": 1000, "reason": "plan done", "was_clean": True}


async def test_ws_client_fragmented_messages_both_ways() -> None:
    """ws's fragments (text cut inside characters) arrive as one message;
    ours, sent from iterables, arrive whole at ws."""
    received: list[str | bytes] = []

    async def handler(ws: WebSocketConnection) -> None:
        received.append(await ws.recv())
        received.append(await ws.recv())
        text = payload("text", 1000)
        assert isinstance(text, str)
        await ws.send([text[:100], text[100:101], "", text[101:]])
        data = payload("binary", 100_000)
        await ws.send(data[i : i + 30_000] for i in range(0, len(data), 30_000))
        await ws.wait_closed()

    plan: Plan = [
        {"op": "send", "kind": "text", "size": 1000, "fragments": 7},
        {"op": "send", "kind": "binary", "size": 100_000, "fragments": 5},
        {"op": "recv", "count": 2},
    ]
    async with serving(handler) as url:
        results = await run_node_client(url, plan)
    check_clean(results)
    assert received == [payload("text", 1000), payload("binary", 100_000)]
    assert results["messages"] == expected_messages(("text", 1000), ("binary", 100_000))


async def test_ws_client_pings_both_ways() -> None:
    """ws's pings get our pongs; ours, explicit and keepalive, get ws's."""
    latencies: list[float] = []

    async def handler(ws: WebSocketConnection) -> None:
        latencies.append(await (await ws.ping(LONG_PING.upper())))
        ws.latency = 0.0
        await wait_until(lambda: ws.latency > 0)  # a keepalive pong, every 50 ms
        latencies.append(ws.latency)
        await ws.send("pinged")
        assert await ws.recv() == payload("text", 4)

    plan: Plan = [
        {"op": "ping", "data": LONG_PING},
        {"op": "recv"},
        {"op": "ping", "data": "from ws 2"},
        {"op": "send", "kind": "text", "size": 4},
    ]
    async with serving(handler, ping_interval=0.05) as url:
        results = await run_node_client(url, plan)
    check_clean(results)
    assert len(results["pong_latencies_ms"]) == 2
    assert all(latency > 0 for latency in results["pong_latencies_ms"])
    assert results["pings_received"] >= 2  # ours, then keepalives
    assert len(latencies) == 2
    assert all(latency > 0 for latency in latencies)


@pytest.mark.parametrize("code", CLOSE_CODES)
async def test_our_server_closes_ws_client(code: int) -> None:
    """Our aclose(code, reason) reaches ws as a clean close event."""
    reason = LONG_REASON if code == 4000 else f"trio_ws closes with {code}"
    seen: list[int | None] = []

    async def handler(ws: WebSocketConnection) -> None:
        await ws.send("hello")
        await ws.aclose(code, reason)
        seen.append(ws.close_code)

    async with serving(handler) as url:
        results = await run_node_client(url, [{"op": "recv"}, {"op": "wait_close"}])
    check_clean(results)
    assert results["close"] == {"code": code, "reason": reason, "was_clean": True}
    assert seen == [code]  # ws echoes the code


@pytest.mark.parametrize("code", PEER_CLOSE_CODES)
async def test_ws_client_closes_our_server(code: int | None) -> None:
    """ws's close(code, reason) reaches us; ``async for`` ends quietly only for
    1000, 1001 and an empty close frame (1005); ws sees our echo."""
    step, expected_code, reason = close_step(code)
    errors: list[trio_ws.ConnectionClosed] = []
    messages: list[str | bytes] = []

    async def handler(ws: WebSocketConnection) -> None:
        try:
            async for message in ws:
                messages.append(message)
            await ws.recv()
        except trio_ws.ConnectionClosed as exc:
            errors.append(exc)
        assert (ws.close_code, ws.close_reason) == (expected_code, reason)

    plan: Plan = [{"op": "send", "kind": "text", "size": 10}, step]
    async with serving(handler) as url:
        results = await run_node_client(url, plan)
    check_clean(results)
    assert messages == [payload("text", 10)]
    assert results["close"] == {"code": expected_code, "reason": reason, "was_clean": True}
    (error,) = errors
    assert isinstance(
        error,
        trio_ws.ConnectionClosedOK if expected_code < 4000 else trio_ws.ConnectionClosedError,
    )
    assert error.rcvd is not None
    assert (error.rcvd.code, error.rcvd.reason) == (expected_code, reason)


async def test_ws_client_terminates() -> None:
    """ws drops the TCP connection: we see 1006, no close frame."""
    errors: list[trio_ws.ConnectionClosed] = []

    async def handler(ws: WebSocketConnection) -> None:
        try:
            await ws.recv()
            await ws.recv()
        except trio_ws.ConnectionClosed as exc:
            errors.append(exc)

    plan: Plan = [{"op": "send", "kind": "binary", "size": 10}, {"op": "terminate"}]
    async with serving(handler) as url:
        results = await run_node_client(url, plan)
        await wait_until(lambda: bool(errors))
    check_clean(results)
    assert results["close"]["code"] == 1006
    (error,) = errors
    assert isinstance(error, trio_ws.ConnectionClosedError)
    assert str(error) == "no close frame received or sent"
    assert error.code == 1006


async def test_our_server_keepalive_times_out_on_paused_ws_client() -> None:
    """ws stops reading: our keepalive fails the connection with 1011, which
    ws reads once it resumes."""
    errors: list[trio_ws.ConnectionClosed] = []

    async def handler(ws: WebSocketConnection) -> None:
        try:
            await ws.recv()
        except trio_ws.ConnectionClosed as exc:
            errors.append(exc)

    plan: Plan = [
        {"op": "pause"},
        {"op": "sleep", "ms": 1200},  # our timeout fires at ~0.3 s
        {"op": "resume"},
        {"op": "wait_close"},
    ]
    async with serving(handler, ping_interval=0.1, ping_timeout=0.2) as url:
        results = await run_node_client(url, plan)
    check_clean(results)
    assert results["close"]["code"] == 1011
    assert results["close"]["reason"] == "keepalive ping timeout"
    (error,) = errors
    assert str(error) == KEEPALIVE_TIMEOUT


async def test_our_server_drops_tcp_under_ws_client() -> None:
    """We close the TCP stream under an open connection: ws reports 1006."""
    multi = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    listener = _single(multi)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    outcome: list[trio_ws.ConnectionClosed] = []

    async def accept_and_drop(task_status: anyio.abc.TaskStatus[None]) -> None:
        task_status.started()
        stream = await listener.accept()
        async with anyio.create_task_group() as tg:
            ws = await trio_ws.wrap_server_stream(tg, stream)
            await ws.send("before the drop")
            await ws.recv()  # ws's go-ahead: it has our message
            await stream.aclose()
            try:
                await ws.recv()
            except trio_ws.ConnectionClosed as exc:
                outcome.append(exc)

    plan: Plan = [
        {"op": "recv"},
        {"op": "send", "kind": "text", "size": 3},
        {"op": "wait_close"},
    ]
    with anyio.fail_after(TIMEOUT):
        async with listener, anyio.create_task_group() as tg:
            await tg.start(accept_and_drop)
            results = await run_node_client(f"ws://127.0.0.1:{port}/", plan)
    check_clean(results)
    assert results["close"] == {"code": 1006, "reason": "", "was_clean": False}
    assert results["messages"] == [describe("before the drop")]
    (error,) = outcome
    assert isinstance(error, trio_ws.ConnectionClosedError)
    assert error.rcvd is None


def _single(listener: anyio.abc.Listener[Any]) -> anyio.abc.SocketListener:
    if isinstance(listener, anyio.streams.stapled.MultiListener):
        (listener,) = listener.listeners
    assert isinstance(listener, anyio.abc.SocketListener)
    return listener


async def test_ws_client_over_tls(tmp_path: Path) -> None:
    """wss://: ws trusts our certificate, messages cross compressed, and the
    closing handshake ends cleanly on both sides."""
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    received: list[dict[str, object]] = []
    closes: list[tuple[int | None, str | None]] = []

    async def echo(ws: WebSocketConnection) -> None:
        async for message in ws:
            received.append(describe(message))
            await ws.send(message)
        closes.append((ws.close_code, ws.close_reason))

    plan: Plan = [
        {"op": "send", "kind": "text", "size": 100_000},
        {"op": "send", "kind": "binary", "size": 100_000},
        {"op": "recv", "count": 2},
        {"op": "close", "code": 1000, "reason": "bye over TLS"},
    ]
    async with serving(echo, ssl=context) as url:
        url = url.replace("ws://", "wss://", 1)
        results = await run_node_client(url, plan, options=[f"--ca={ca_file}"])
    check_clean(results)
    pairs = [("text", 100_000), ("binary", 100_000)]
    assert received == expected_messages(*pairs)
    assert results["messages"] == expected_messages(*pairs)
    assert results["extensions"].split(";")[0] == "permessage-deflate"
    assert results["close"] == {"code": 1000, "reason": "bye over TLS", "was_clean": True}
    assert closes == [(1000, "bye over TLS")]


async def test_ws_client_sends_invalid_utf8() -> None:
    """A text message that is not UTF-8 fails the connection with 1007."""
    errors: list[trio_ws.ConnectionClosed] = []

    async def handler(ws: WebSocketConnection) -> None:
        try:
            await ws.recv()
        except trio_ws.ConnectionClosed as exc:
            errors.append(exc)

    plan: Plan = [{"op": "send_raw_text", "hex": "48c3a96c6c6fedbfbf"}, {"op": "wait_close"}]
    async with serving(handler) as url:
        results = await run_node_client(url, plan)
    check_clean(results)
    assert results["close"]["code"] == 1007
    (error,) = errors
    assert isinstance(error, trio_ws.ConnectionClosedError)
    assert error.sent is not None
    assert error.sent.code == 1007


async def test_max_size_enforced_both_ways_with_ws() -> None:
    """Over max_size, each side fails the connection with 1009."""
    errors: list[trio_ws.ConnectionClosed] = []

    async def handler(ws: WebSocketConnection) -> None:
        try:
            assert await ws.recv() == payload("binary", 1024)
            await ws.recv()
        except trio_ws.ConnectionClosed as exc:
            errors.append(exc)

    plan: Plan = [
        {"op": "send", "kind": "binary", "size": 1024},
        {"op": "send", "kind": "binary", "size": 1025},
        {"op": "wait_close"},
    ]
    async with serving(handler, max_size=1024) as url:
        results = await run_node_client(url, plan)
    check_clean(results)
    assert results["close"]["code"] == 1009
    (error,) = errors
    assert error.sent is not None
    assert error.sent.code == 1009

    async def sender(ws: WebSocketConnection) -> None:
        await ws.send(b"x" * 1025)
        try:
            await ws.recv()
        except trio_ws.ConnectionClosed as exc:
            errors.append(exc)

    errors.clear()
    async with serving(sender) as url:
        command = ["node", PEER, "client", url, json.dumps([{"op": "wait_close"}])]
        with anyio.fail_after(TIMEOUT):
            result = await anyio.run_process([*command, "--max-payload=1024"], check=False)
    results = json.loads(result.stdout)
    assert "Max payload size exceeded" in results["error"]  # ws's own error event
    # ws sends 1009 and then drops the TCP connection without waiting for our
    # answer, so its close event reports 1006 (not clean).
    assert results["close"] == {"code": 1006, "reason": "", "was_clean": False}
    (error,) = errors
    assert error.rcvd is not None
    assert error.rcvd.code == 1009


# -- ws as the server, for our client ------------------------------------------------


class NodeServer:
    """peer.js in server mode, shared by the module's tests."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            ["node", PEER, "server"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._results: dict[str, Results] = {}
        self._lock = threading.Lock()
        self._port: list[int] = []
        self._started = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if not self._started.wait(TIMEOUT) or not self._port:
            self.close()
            pytest.fail(f"peer.js server did not start: {self.stderr()}")
        self.port = self._port[0]

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            record = json.loads(line)
            if "port" in record:
                self._port.append(record["port"])
                self._started.set()
            else:
                with self._lock:
                    self._results[record["id"]] = record["results"]
        self._started.set()

    def url(self, plan: Plan, connection_id: str) -> str:
        query = urllib.parse.urlencode({"plan": json.dumps(plan), "id": connection_id})
        return f"ws://127.0.0.1:{self.port}/interop?{query}"

    async def results(self, connection_id: str) -> Results:
        """What the connection ``connection_id`` observed, once it closed."""
        with anyio.fail_after(TIMEOUT):
            while True:
                with self._lock:
                    if connection_id in self._results:
                        return self._results.pop(connection_id)
                await anyio.sleep(0.01)

    def stderr(self) -> str:
        if self.process.poll() is None or self.process.stderr is None:
            return ""
        return self.process.stderr.read()

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(TIMEOUT)
        except subprocess.TimeoutExpired:  # pragma: no cover  # would be a bug in peer.js
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()
        if self.process.stderr is not None:
            self.process.stderr.close()
        self._reader.join(TIMEOUT)


@pytest.fixture(scope="module")
def node_server(_node_ws_peer: None) -> Iterator[NodeServer]:
    server = NodeServer()
    yield server
    server.close()
    assert server.process.returncode == 0


def new_id() -> str:
    return uuid.uuid4().hex


@trio_only
@pytest.mark.parametrize("compression", COMPRESSIONS)
async def test_our_client_messages_at_every_size(
    node_server: NodeServer, compression: DeflateConfig | None
) -> None:
    """We send text and binary, 0 B to 16 MiB; ws checks and echoes each."""
    pairs = [(kind, size) for kind in ("text", "binary") for size in SIZES]
    connection_id = new_id()
    url = node_server.url([{"op": "echo", "count": len(pairs)}], connection_id)
    with anyio.fail_after(TIMEOUT):
        async with trio_ws.open_websocket_url(
            url, compression=compression, max_size=MAX_SIZE
        ) as ws:
            assert (ws.extension is not None) is (compression is not None)
            for kind, size in pairs:
                message = payload(kind, size)
                await ws.send(message)
                assert await ws.recv() == message, (kind, size)
        results = await node_server.results(connection_id)
    check_clean(results)
    assert results["messages"] == expected_messages(*pairs)
    expected = "permessage-deflate" if compression is not None else ""
    assert results["extensions"].split(";")[0] == expected
    assert results["close"] == {"code": 1000, "reason": "", "was_clean": True}


async def test_our_client_fragmented_messages_both_ways(node_server: NodeServer) -> None:
    """ws's fragments arrive as one message; ours reach ws whole."""
    connection_id = new_id()
    plan: Plan = [
        {"op": "send", "kind": "text", "size": 1000, "fragments": 7},
        {"op": "send", "kind": "binary", "size": 100_000, "fragments": 5},
        {"op": "recv", "count": 2},
    ]
    text = payload("text", 1000)
    data = payload("binary", 100_000)
    assert isinstance(text, str)
    assert isinstance(data, bytes)
    with anyio.fail_after(TIMEOUT):
        async with trio_ws.open_websocket_url(
            node_server.url(plan, connection_id), compression=DEFLATE
        ) as ws:
            assert await ws.recv() == text
            assert await ws.recv() == data
            await ws.send([text[:1], "", text[1:500], text[500:]])
            await ws.send(data[i : i + 30_000] for i in range(0, len(data), 30_000))
        results = await node_server.results(connection_id)
    check_clean(results)
    assert results["messages"] == expected_messages(("text", 1000), ("binary", 100_000))


async def test_our_client_pings_both_ways(node_server: NodeServer) -> None:
    """ws's pings get our pongs; ours, explicit and keepalive, get ws's."""
    connection_id = new_id()
    plan: Plan = [{"op": "ping", "data": LONG_PING}, {"op": "recv"}]
    with anyio.fail_after(TIMEOUT):
        async with trio_ws.open_websocket_url(
            node_server.url(plan, connection_id), ping_interval=0.05
        ) as ws:
            latency = await (await ws.ping(LONG_PING.upper()))
            ws.latency = 0.0
            await wait_until(lambda: ws.latency > 0)  # a keepalive pong
            await ws.send(b"done")
        results = await node_server.results(connection_id)
    check_clean(results)
    assert latency > 0
    assert results["pings_received"] >= 2
    (ws_latency,) = results["pong_latencies_ms"]
    assert ws_latency > 0


@pytest.mark.parametrize("code", PEER_CLOSE_CODES)
async def test_ws_server_closes_our_client(node_server: NodeServer, code: int | None) -> None:
    """ws's close(code, reason) reaches our client; ws sees our echo."""
    connection_id = new_id()
    step, expected_code, reason = close_step(code)
    with anyio.fail_after(TIMEOUT):
        async with trio_ws.open_websocket_url(node_server.url([step], connection_id)) as ws:
            expected = (
                trio_ws.ConnectionClosedOK
                if expected_code < 4000
                else trio_ws.ConnectionClosedError
            )
            with pytest.raises(expected) as error:
                await ws.recv()
            assert error.value.rcvd is not None
            assert (error.value.rcvd.code, error.value.rcvd.reason) == (expected_code, reason)
            assert (ws.close_code, ws.close_reason) == (expected_code, reason)
        results = await node_server.results(connection_id)
    check_clean(results)
    assert results["close"] == {"code": expected_code, "reason": reason, "was_clean": True}


@pytest.mark.parametrize("code", CLOSE_CODES)
async def test_our_client_closes_ws_server(node_server: NodeServer, code: int) -> None:
    """Our aclose(code, reason) reaches ws as a clean close event."""
    connection_id = new_id()
    reason = LONG_REASON if code == 4000 else f"trio_ws closes with {code}"
    with anyio.fail_after(TIMEOUT):
        async with trio_ws.open_websocket_url(
            node_server.url([{"op": "wait_close"}], connection_id)
        ) as ws:
            await ws.aclose(code, reason)
            assert ws.close_code == code
        results = await node_server.results(connection_id)
    check_clean(results)
    assert results["close"] == {"code": code, "reason": reason, "was_clean": True}


async def test_ws_server_terminates_under_our_client(node_server: NodeServer) -> None:
    """ws drops the TCP connection: our client sees 1006, no close frame."""
    connection_id = new_id()
    plan: Plan = [{"op": "send", "kind": "text", "size": 5}, {"op": "terminate"}]
    with anyio.fail_after(TIMEOUT):
        async with trio_ws.open_websocket_url(node_server.url(plan, connection_id)) as ws:
            assert await ws.recv() == payload("text", 5)
            with pytest.raises(trio_ws.ConnectionClosedError) as error:
                await ws.recv()
            assert str(error.value) == "no close frame received or sent"
            assert ws.close_code == 1006
        results = await node_server.results(connection_id)
    check_clean(results)
    assert results["close"]["code"] == 1006


async def test_our_client_keepalive_times_out_on_paused_ws_server(
    node_server: NodeServer,
) -> None:
    """ws stops reading: our client's keepalive fails with 1011, which ws
    reads once it resumes."""
    connection_id = new_id()
    plan: Plan = [
        {"op": "pause"},
        {"op": "sleep", "ms": 1200},  # our timeout fires at ~0.3 s
        {"op": "resume"},
        {"op": "wait_close"},
    ]
    with anyio.fail_after(TIMEOUT):
        async with trio_ws.open_websocket_url(
            node_server.url(plan, connection_id), ping_interval=0.1, ping_timeout=0.2
        ) as ws:
            with pytest.raises(trio_ws.ConnectionClosedError) as error:
                await ws.recv()
            assert str(error.value) == KEEPALIVE_TIMEOUT
        results = await node_server.results(connection_id)
    check_clean(results)
    assert results["close"]["code"] == 1011
    assert results["close"]["reason"] == "keepalive ping timeout"


async def test_our_client_drops_tcp_under_ws_server(node_server: NodeServer) -> None:
    """We close the TCP stream under an open connection: ws reports 1006."""
    connection_id = new_id()
    plan: Plan = [{"op": "echo"}, {"op": "wait_close"}]
    url = urllib.parse.urlsplit(node_server.url(plan, connection_id))
    host = f"127.0.0.1:{node_server.port}"
    with anyio.fail_after(TIMEOUT):
        stream = await anyio.connect_tcp("127.0.0.1", node_server.port)
        async with anyio.create_task_group() as tg:
            ws = await trio_ws.wrap_client_stream(tg, stream, host, f"{url.path}?{url.query}")
            await ws.send("before the drop")
            assert await ws.recv() == "before the drop"  # ws has it
            await stream.aclose()
            with pytest.raises(trio_ws.ConnectionClosedError):
                await ws.recv()
        results = await node_server.results(connection_id)
    check_clean(results)
    assert results["messages"] == [describe("before the drop")]
    assert results["close"] == {"code": 1006, "reason": "", "was_clean": False}
