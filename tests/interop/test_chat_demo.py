"""The browser chat demo in ``examples/chat``: two real browser pages talk
through it, and a client that stops reading does not hold up the others."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path
from types import ModuleType
from typing import Any

import anyio
import anyio.abc
import pytest
import trio

import trio_ws
from tests.interop.peers import (
    CHROMIUM,
    NODE_DIR,
    TIMEOUT,
    chromium_available,
    node_package,
    node_works,
    require,
)

CHAT = Path(__file__).resolve().parents[2] / "examples" / "chat" / "server.py"
DRIVER = str(NODE_DIR / "browser.js")

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, object]]:
    """The demo is a trio program."""
    return ("trio", {})


def load_chat() -> ModuleType:
    """Import examples/chat/server.py, which is a script, not a package."""
    spec = importlib.util.spec_from_file_location("chat_server", CHAT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def read_line(process: subprocess.Popen[str], timeout: float) -> str:
    """The next line the process prints, waiting at most ``timeout``."""
    lines: list[str] = []

    def read() -> None:
        assert process.stdout is not None
        lines.append(process.stdout.readline())

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout)
    return lines[0] if lines else ""


def test_two_browser_pages_chat() -> None:
    """A message typed in one page (fill, Enter) shows up in the other."""
    require(node_works(), "node (>= 18)")
    require(node_package("playwright-core"), "playwright-core in tests/interop/node/node_modules")
    require(chromium_available(), f"Chromium at {CHROMIUM}")
    server = subprocess.Popen(
        [sys.executable, str(CHAT), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        line = read_line(server, TIMEOUT)
        match = re.search(r"open (http://\S+)", line)
        assert match, line
        message = "hello from page one ✓ <b>not bold</b>"
        result = subprocess.run(
            ["node", DRIVER, "chat", match.group(1), message],
            capture_output=True,
            text=True,
            timeout=TIMEOUT * 2,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        seen = json.loads(result.stdout)
        assert seen["seen_by_other"] == f"guest-1: {message}"
        assert seen["seen_by_sender"] == f"guest-1: {message}"
        assert seen["input_after_send"] == ""
        assert not [line for line in seen["console"] if "error" in line], seen["console"]
    finally:
        server.send_signal(signal.SIGINT)
        try:
            _, err = server.communicate(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:  # pragma: no cover  # would be a bug
            server.kill()
            server.communicate()
            raise
    assert server.returncode == 0, err


def test_chat_serves_its_page_and_404s_the_rest() -> None:
    """One port: GET / is the page, other paths 404, /ws upgrades."""
    chat = load_chat()
    request = trio_ws.Request  # the hook only reads .resource and .headers
    page = chat.serve_page(None, request("/", trio_ws.Headers([("Host", "x")])))
    assert page.status_code == 200
    assert b'new WebSocket(scheme + location.host + "/ws")' in page.body
    missing = chat.serve_page(None, request("/nope", trio_ws.Headers([("Host", "x")])))
    assert missing.status_code == 404
    upgrade = request("/ws", trio_ws.Headers([("Host", "x"), ("Upgrade", "websocket")]))
    assert chat.serve_page(None, upgrade) is None


async def test_a_slow_client_does_not_block_the_others() -> None:
    """A client that stops reading is cut off with 1013 once it falls
    queue_size messages behind; meanwhile the others get every message."""
    chat = load_chat()
    room: Any = chat.ChatRoom(queue_size=8)
    count, size = 1500, 4000  # 6 MB: more than the kernel buffers hold
    with anyio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            server = await nursery.start(_serve, room)
            url = f"ws://127.0.0.1:{server.port}/ws"
            # The slow client: a small receive window, and it never reads.
            raw = trio.socket.socket()
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            await raw.connect(("127.0.0.1", server.port))
            slow = await trio_ws.wrap_client_stream(
                nursery, trio.SocketStream(raw), "127.0.0.1", "/ws", compression=None, max_queue=1
            )
            async with trio_ws.open_websocket_url(url, compression=None) as fast:
                got = 0
                for i in range(count):
                    await fast.send(f"{i:08d}" + "x" * (size - 8))
                    while got <= i:  # keep up with the broadcasts as we go
                        message = json.loads(await fast.recv())
                        if message["kind"] == "message":
                            assert message["text"].startswith(f"{got:08d}")
                            got += 1
                assert got == count
            # The slow client gets what fitted in the buffers, then 1013.
            with pytest.raises(trio_ws.ConnectionClosedError) as error:
                await drain(slow)
            assert error.value.rcvd is not None
            assert error.value.rcvd.code == 1013
            nursery.cancel_scope.cancel()


async def drain(ws: trio_ws.WebSocketConnection) -> None:
    """Receive until the connection closes; raise what ``recv()`` raises then."""
    while True:
        await ws.recv()


async def _serve(room: Any, *, task_status: anyio.abc.TaskStatus[trio_ws.WebSocketServer]) -> None:
    await trio_ws.serve_websocket(
        room.handler, "127.0.0.1", 0, compression=None, task_status=task_status
    )
