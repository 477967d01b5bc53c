"""A browser chat: one port serves the page and its WebSocket.

Run ``python examples/chat/server.py [--host HOST] [--port PORT]`` and open
the URL it prints in two browser tabs: what you type in one shows up in
every tab. Ctrl+C (or SIGTERM) closes every connection with 1001.

What it shows:

- ``process_request`` answering plain HTTP on the WebSocket's port: ``GET /``
  gets ``index.html``, anything but an upgrade to ``/ws`` gets a 404.
- Broadcasting without letting one slow client hold up the others: each
  client has a bounded memory channel and a task of its own that drains it
  into ``ws.send()``. Broadcasting never waits (``send_nowait``); a client
  whose channel is full has fallen :data:`QUEUE_SIZE` messages behind and is
  disconnected with 1013 (try again later) rather than slowing everyone down.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import itertools
import json
import signal
from pathlib import Path

import trio

import trio_ws
from trio_ws import CloseCode, Request, Response, WebSocketConnection, make_response

PAGE = Path(__file__).with_name("index.html")
#: Messages a client may fall behind before it is disconnected.
QUEUE_SIZE = 64
#: Chat messages are short; a bigger one fails the connection with 1009.
MAX_MESSAGE = 4096


class ChatRoom:
    """Everyone connected, each with an outbox drained by a task of its own."""

    def __init__(self, *, queue_size: int = QUEUE_SIZE) -> None:
        self.queue_size = queue_size
        self.members: dict[WebSocketConnection, trio.MemorySendChannel[str]] = {}
        self._names = itertools.count(1)

    def broadcast(self, message: dict[str, str]) -> None:
        """Queue ``message`` for every member, without waiting for anyone."""
        data = json.dumps(message)
        for ws, outbox in list(self.members.items()):
            try:
                outbox.send_nowait(data)
            except trio.WouldBlock:
                # Too far behind: stop queueing; its sender task says goodbye.
                del self.members[ws]
                outbox.close()

    async def handler(self, ws: WebSocketConnection) -> None:
        """Run one member: read what it says, and send it what others say."""
        name = f"guest-{next(self._names)}"
        outbox, inbox = trio.open_memory_channel[str](self.queue_size)
        self.members[ws] = outbox
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._deliver, ws, inbox)
                self.broadcast({"kind": "notice", "text": f"{name} joined"})
                # Catch here, not around the nursery: trio would wrap the
                # exception in an ExceptionGroup on its way out.
                with contextlib.suppress(trio_ws.ConnectionClosed):
                    async for message in ws:
                        if isinstance(message, str) and message.strip():
                            self.broadcast({"kind": "message", "from": name, "text": message})
                nursery.cancel_scope.cancel()  # the client left
        finally:
            if self.members.pop(ws, None) is not None:
                outbox.close()
            self.broadcast({"kind": "notice", "text": f"{name} left"})

    async def _deliver(
        self, ws: WebSocketConnection, inbox: trio.MemoryReceiveChannel[str]
    ) -> None:
        # send() waits while the client's TCP window is full: only this task
        # waits, and the channel in front of it absorbs QUEUE_SIZE messages.
        async with inbox:
            try:
                async for data in inbox:
                    await ws.send(data)
            except trio_ws.ConnectionClosed:
                return  # the client left; the reading loop notices too
        # The room closed our outbox: we fell too far behind.
        await ws.aclose(CloseCode.TRY_AGAIN_LATER, "too slow; please reconnect")


def serve_page(ws: WebSocketConnection, request: Request) -> Response | None:
    """Answer plain HTTP on the WebSocket port: the page, or a 404."""
    if request.resource == "/ws" and request.headers.get("Upgrade", "").lower() == "websocket":
        return None  # go on with the upgrade
    if request.resource in ("/", "/index.html"):
        return make_response(200, PAGE.read_bytes(), content_type="text/html; charset=utf-8")
    return make_response(404, "Not found. The chat is at /\n")


async def main(host: str, port: int) -> None:
    room = ChatRoom()
    async with trio.open_nursery() as nursery:
        serve = functools.partial(
            trio_ws.serve_websocket, process_request=serve_page, max_size=MAX_MESSAGE
        )
        server = await nursery.start(serve, room.handler, host, port)
        print(f"chat server: open http://{_url_host(host)}:{server.port}/", flush=True)
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for _ in signals:
                break
        print("shutting down", flush=True)
        await server.aclose()


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="A chat room for browsers.")
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: %(default)s)"
    )
    parser.add_argument(
        "--port", type=int, default=8000, help="TCP port, 0 picks a free one (default: %(default)s)"
    )
    args = parser.parse_args()
    trio.run(main, args.host, args.port)
