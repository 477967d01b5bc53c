"""An echo client: send a few messages to a server and print the replies.

Start ``python examples/echo_server.py`` first, then run
``python examples/echo_client.py [URL] [MESSAGE ...]``.
"""

from __future__ import annotations

import argparse

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
    parser = argparse.ArgumentParser(description="Send messages to a WebSocket echo server.")
    parser.add_argument(
        "url",
        nargs="?",
        default="ws://127.0.0.1:8765/",
        help="the server to talk to (default: %(default)s)",
    )
    parser.add_argument(
        "messages", nargs="*", metavar="MESSAGE", help="messages to send (default: a few)"
    )
    args = parser.parse_args()
    trio.run(main, args.url, args.messages or ["hello", "grüße", "👋"])
