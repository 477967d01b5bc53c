"""trio_ws in one file: a server and a client talking, in one trio program.

Run it with ``python examples/demo.py``. It starts an echo server on a free
port of 127.0.0.1, connects to it, exchanges text, binary and a fragmented
message, measures a ping, and closes properly on both sides.
"""

from __future__ import annotations

import argparse

import trio

import trio_ws


async def echo(ws: trio_ws.WebSocketConnection) -> None:
    print(f"server: connection from {ws.remote_address[0]}, path {ws.request.path}")
    async for message in ws:
        await ws.send(message)
    print(f"server: client left with code {ws.close_code}")


async def main() -> None:
    async with trio.open_nursery() as nursery:
        server = await nursery.start(trio_ws.serve_websocket, echo, "127.0.0.1", 0)
        url = f"ws://127.0.0.1:{server.port}/demo"
        print(f"server: listening on {url}")

        async with trio_ws.open_websocket_url(url) as ws:
            print(f"client: connected, compression: {ws.extension}")
            await ws.send("hello, trio_ws")
            print(f"client: got {await ws.recv()!r}")

            await ws.send(bytes(range(8)))
            print(f"client: got {await ws.recv()!r}")

            await ws.send(["one message ", "in three ", "frames"])
            print(f"client: got {await ws.recv()!r}")

            with trio.move_on_after(0.1):
                await ws.recv()  # nothing comes: the cancel scope is the timeout
            print("client: recv() timed out with a cancel scope, as planned")

            latency = await (await ws.ping())
            print(f"client: ping answered in {latency * 1000:.2f} ms")
        print(f"client: closed with code {ws.close_code}")
        nursery.cancel_scope.cancel()


if __name__ == "__main__":
    argparse.ArgumentParser(
        description="An echo server and a client talking, in one program; no options."
    ).parse_args()
    trio.run(main)
