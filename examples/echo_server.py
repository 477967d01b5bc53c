"""An echo server: every message a client sends comes straight back.

Run it with ``python examples/echo_server.py [--host HOST] [--port PORT]``,
then talk to it with ``python examples/echo_client.py``. Ctrl+C (or SIGTERM)
shuts it down gracefully: open connections are closed with 1001 (going away).
"""

from __future__ import annotations

import argparse
import signal

import trio

import trio_ws


async def echo(ws: trio_ws.WebSocketConnection) -> None:
    """Send each message back; the loop ends when the client closes."""
    async for message in ws:
        await ws.send(message)


async def main(host: str | None, port: int) -> None:
    async with trio.open_nursery() as nursery:
        server = await nursery.start(trio_ws.serve_websocket, echo, host, port)
        for address in server.sockets_addresses():
            print(f"listening on {address[0]} port {address[1]}", flush=True)
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for _ in signals:
                break
        print("shutting down", flush=True)
        await server.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="A WebSocket echo server.")
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: %(default)s)"
    )
    parser.add_argument(
        "--port", type=int, default=8765, help="TCP port, 0 picks a free one (default: %(default)s)"
    )
    args = parser.parse_args()
    trio.run(main, args.host, args.port)
