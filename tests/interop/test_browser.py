"""Interop with a real browser: headless Chromium's own ``WebSocket``.

Our server serves the test page itself, through ``process_request`` on the
port the WebSockets use, so the page and its sockets share an origin.
``node/browser.js`` opens the page with playwright-core and runs
``window.runPlan(plan)`` from ``node/page.js``; each connection's path picks
the server's behaviour (see :func:`handler`). The page reports what the
browser saw (``ws.extensions``, echoes compared byte for byte, SHA-256 of
messages, ``CloseEvent`` code/reason/wasClean); the server records its side.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.abc
import pytest

import trio_ws
from tests.interop.peers import (
    CHROMIUM,
    LONG_REASON,
    MAX_SIZE,
    NODE_DIR,
    TIMEOUT,
    chromium_available,
    describe,
    node_package,
    node_works,
    require,
    wait_until,
)
from trio_ws import Request, Response, WebSocketConnection, make_response

DRIVER = str(NODE_DIR / "browser.js")
PAGE = """<!doctype html>
<html lang="en">
<meta charset="utf-8">
<title>trio_ws interop</title>
<script src="/page.js"></script>
<p>trio_ws interop page</p>
</html>
"""
MiB = 2**20
SIZES = [0, 1, 125, 126, 65535, 65536, MiB + 1, 16 * MiB]

Plan = list[dict[str, Any]]


@pytest.fixture
def browser() -> None:
    """Require node, playwright-core and Chromium."""
    require(node_works(), "node (>= 18)")
    require(node_package("playwright-core"), "playwright-core in tests/interop/node/node_modules")
    require(chromium_available(), f"Chromium at {CHROMIUM}")


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, object]]:
    """The browser is another process: trio, our native backend, is enough."""
    return ("trio", {})


pytestmark = pytest.mark.anyio


def serve_page(ws: WebSocketConnection, request: Request) -> Response | None:
    """Answer plain HTTP requests on the WebSocket port: the page, its script."""
    if request.headers.get("Upgrade", "").lower() == "websocket":
        return None
    if request.resource == "/":
        return make_response(200, PAGE, content_type="text/html; charset=utf-8")
    if request.resource == "/page.js":
        script = (NODE_DIR / "page.js").read_bytes()
        return make_response(200, script, content_type="text/javascript; charset=utf-8")
    return make_response(404, "not found\n")


def reason_for(code: int) -> str:
    """The reason our server closes with: 123 bytes for 4000, the longest."""
    return LONG_REASON if code == 4000 else f"server closes with {code}"


class Server:
    """What the server side saw, by WebSocket path."""

    def __init__(self) -> None:
        self.received: dict[str, list[dict[str, object]]] = defaultdict(list)
        self.extensions: dict[str, bool] = {}
        self.subprotocols: dict[str, str | None] = {}
        self.closes: dict[str, tuple[str, int | None, str | None]] = {}
        self.latency: dict[str, float] = {}
        self.states: dict[str, trio_ws.State] = {}
        self.port = 0

    async def handler(self, ws: WebSocketConnection) -> None:
        """Dispatch on the path: ``/echo``, ``/fragments``, ``/close/<code>``,
        ``/fail``, ``/browser-closes``, ``/keepalive``; record by path and
        query."""
        path = ws.request.path  # with the query, which only tells connections apart
        self.extensions[path] = ws.extension is not None
        self.subprotocols[path] = ws.subprotocol
        try:
            resource = ws.request.resource
            if resource == "/echo":
                async for message in ws:
                    self.received[path].append(describe(message))
                    await ws.send(message)
            elif resource == "/fragments":
                await ws.send(["frag", "mënted ", "", "tëxt 🙂"])
                await ws.send(bytes([i % 256]) * 1000 for i in range(70))
                await ws.wait_closed()
            elif resource.startswith("/close/"):
                code = int(resource.rpartition("/")[2])
                await ws.send("closing")
                await ws.aclose(code, reason_for(code))
            elif resource == "/fail":
                await ws.recv()
                raise RuntimeError("the handler failed")  # -> 1011
            elif resource == "/keepalive":
                assert await ws.recv() == "report"
                self.latency[path] = ws.latency
                self.states[path] = ws.state
                await ws.send(f"latency {ws.latency:.6f}")
                await ws.wait_closed()
            elif resource == "/browser-closes":
                async for message in ws:
                    self.received[path].append(describe(message))
        except trio_ws.ConnectionClosed as exc:
            self.closes[path] = (type(exc).__name__, ws.close_code, ws.close_reason)
            raise
        self.closes.setdefault(path, ("returned", ws.close_code, ws.close_reason))


@asynccontextmanager
async def serving(**options: Any) -> AsyncIterator[Server]:
    server = Server()
    with anyio.fail_after(TIMEOUT):
        async with anyio.create_task_group() as tg:
            running = await tg.start(_serve, server, options)
            server.port = running.port
            yield server
            tg.cancel_scope.cancel()


async def _serve(
    server: Server,
    options: dict[str, Any],
    *,
    task_status: anyio.abc.TaskStatus[trio_ws.WebSocketServer],
) -> None:
    await trio_ws.serve_websocket(
        server.handler,
        "127.0.0.1",
        0,
        process_request=serve_page,
        max_size=MAX_SIZE,
        task_status=task_status,
        **options,
    )


async def run_browser(port: int, plan: Plan) -> list[dict[str, Any]]:
    """Open our page in Chromium and run ``plan`` there; return its report."""
    command = ["node", DRIVER, "plan", f"http://127.0.0.1:{port}/", json.dumps(plan)]
    with anyio.fail_after(TIMEOUT * 2):
        result = await anyio.run_process(command, check=False)
    assert result.returncode == 0, result.stderr.decode()
    report = json.loads(result.stdout)
    assert "HeadlessChrome" in report["user_agent"]
    for connection in report["connections"]:
        assert connection["error"] is None, (connection, report["console"])
    connections: list[dict[str, Any]] = report["connections"]
    return connections


@pytest.mark.usefixtures("browser")
async def test_browser_exchanges_messages_up_to_16_mib_with_deflate() -> None:
    """Text and binary (ArrayBuffer) from 0 B to 16 MiB each way, compressed;
    our fragmented messages arrive whole; a subprotocol is agreed."""
    echo_steps = [
        {"op": "echo", "kind": kind, "size": size} for kind in ("text", "binary") for size in SIZES
    ]
    plan: Plan = [
        {"path": "/echo", "steps": echo_steps},
        {"path": "/fragments", "steps": [{"op": "recv", "count": 2}]},
        {"path": "/echo?subprotocol", "protocols": ["chat.v2", "chat.v1"], "steps": []},
    ]
    async with serving(subprotocols=["chat.v1"]) as server:
        echo, fragments, subprotocol = await run_browser(server.port, plan)
    # permessage-deflate, as both sides report it.
    assert echo["extensions"].split(";")[0].strip() == "permessage-deflate"
    assert server.extensions == {"/echo": True, "/fragments": True, "/echo?subprotocol": True}
    # Subprotocols: the browser offered two, we picked ours, both agree.
    assert (echo["protocol"], subprotocol["protocol"]) == ("", "chat.v1")
    assert server.subprotocols["/echo?subprotocol"] == "chat.v1"
    # What the browser sent is what we received, and it got the same back.
    assert len(echo["sent"]) == len(echo_steps)
    assert server.received["/echo"] == echo["sent"]
    assert echo["messages"] == echo["sent"]
    assert [m["length"] for m in echo["sent"]] == [s["size"] for s in echo_steps]
    assert fragments["messages"] == [
        describe("fragmënted tëxt 🙂"),
        describe(b"".join(bytes([i % 256]) * 1000 for i in range(70))),
    ]
    assert echo["close"] == {"code": 1000, "reason": "plan done", "was_clean": True}


@pytest.mark.usefixtures("browser")
async def test_browser_sees_our_close_codes_and_reasons() -> None:
    """CloseEvent carries the code and reason our server sends (1000, 1001,
    4000, 1011 from a failing handler); ours carries the browser's."""
    plan: Plan = [
        {"path": f"/close/{code}", "steps": [{"op": "recv"}, {"op": "wait_close"}]}
        for code in (1000, 1001, 4000)
    ]
    plan += [
        {"path": "/fail", "steps": [{"op": "send_text", "text": "go"}, {"op": "wait_close"}]},
        {
            "path": "/browser-closes",
            "steps": [
                {"op": "send_text", "text": "bye soon"},
                {"op": "close", "code": 4001, "reason": "browser says bye ✓"},
            ],
        },
        {"path": "/browser-closes?no-code", "steps": [{"op": "close"}]},
    ]
    async with serving() as server:
        connections = await run_browser(server.port, plan)
        await wait_until(lambda: "/browser-closes?no-code" in server.closes)
    by_path = {connection["path"]: connection for connection in connections}
    for code in (1000, 1001, 4000):
        seen = by_path[f"/close/{code}"]
        assert seen["messages"] == [describe("closing")]
        assert seen["close"] == {"code": code, "reason": reason_for(code), "was_clean": True}
        # Chromium's answer echoes our code and reason.
        assert server.closes[f"/close/{code}"] == ("returned", code, reason_for(code))
    assert by_path["/fail"]["close"]["code"] == 1011
    assert by_path["/fail"]["close"]["was_clean"] is True
    assert by_path["/browser-closes"]["close"] == {
        "code": 4001,
        "reason": "browser says bye ✓",
        "was_clean": True,
    }
    assert server.received["/browser-closes"] == [describe("bye soon")]
    assert server.closes["/browser-closes"] == (
        "ConnectionClosedError",
        4001,
        "browser says bye ✓",
    )
    # close() without a code sends an empty close frame: 1005 on both sides.
    assert by_path["/browser-closes?no-code"]["close"] == {
        "code": 1005,
        "reason": "",
        "was_clean": True,
    }
    assert server.closes["/browser-closes?no-code"] == ("returned", 1005, "")


@pytest.mark.usefixtures("browser")
async def test_browser_answers_our_keepalive_pings() -> None:
    """With ping_interval 0.2 s, the page stays open 1 s: the browser's pongs
    give a latency and the connection stays open."""
    plan: Plan = [
        {
            "path": "/keepalive",
            "steps": [
                {"op": "sleep", "ms": 1000},
                {"op": "send_text", "text": "report"},
                {"op": "recv"},
                {"op": "close", "code": 1000, "reason": "done"},
            ],
        }
    ]
    async with serving(ping_interval=0.2, ping_timeout=2) as server:
        (keepalive,) = await run_browser(server.port, plan)
    assert server.latency["/keepalive"] > 0
    assert server.states["/keepalive"] is trio_ws.State.OPEN
    assert keepalive["close"] == {"code": 1000, "reason": "done", "was_clean": True}
    assert server.closes["/keepalive"] == ("returned", 1000, "done")


async def test_our_server_answers_plain_http_on_the_same_port() -> None:
    """process_request serves the page; anything else gets a 404, not an upgrade."""
    async with serving() as server:
        with anyio.fail_after(TIMEOUT):
            stream = await anyio.connect_tcp("127.0.0.1", server.port)
            async with stream:
                await stream.send(b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n")
                response = b""
                while True:
                    try:
                        response += await stream.receive()
                    except anyio.EndOfStream:
                        break
    assert response.startswith(b"HTTP/1.1 404 ")
