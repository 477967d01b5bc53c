"""An echo client: send a few messages to a server and print the replies.

Start ``python examples/echo_server.py`` first, then run
``python examples/echo_client.py [URL] [MESSAGE ...]``.
"""

from __future__ import annotations

import sys

import trio

import trio_ws


async def main(url: str, messages: list[str]) -> None:
    async with trio_ws.open_websocket_url(url) as ws:
        for message in messages:
            await ws.send(message)
            # recv() has no timeout argument: a cancel scope is the timeout.
            with trio.fail_after(10):
                reply = await ws.recv()
            print(f"> {message}\n< {reply!r}")
        latency = await (await ws.ping())
        print(f"round trip: {latency * 1000:.2f} ms")
    print(f"closed with code {ws.close_code}")


if __name__ == "__main__":
    url = sys.argv[1] if len(sys.argv) > 1 else "ws://127.0.0.1:8765/"
    messages = sys.argv[2:] or ["hello", "grüße", "👋"]
    trio.run(main, url, messages)
