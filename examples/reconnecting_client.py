"""A client that stays connected: it reconnects whenever the connection is lost.

Start ``python examples/echo_server.py``, then run
``python examples/reconnecting_client.py [URL]`` (default
``ws://127.0.0.1:8765/``). It sends a numbered message every second and
prints the echo. Stop the server (Ctrl+C) and start it again: the client
notices, retries with backoff (each retry is logged), reconnects, and goes on
counting. ``--seconds`` and ``--max-connections`` make it stop by itself.

What it shows:

- ``async with open_reconnecting_websocket(url) as connections: async for
  ws in connections:`` yields a fresh open connection each time the previous
  one is gone. Failed attempts (connection refused, timeouts, 5xx) are
  retried after a random delay that grows from 1 s up to 60 s; a 4xx answer
  or a bad URL raises instead.
- Catching :class:`trio_ws.ConnectionClosed` inside the loop, so that a lost
  connection means "reconnect", not "crash".
- Picking up where the last connection left off: a new connection starts
  from nothing, and messages are not queued for you while there is none.
  Here the message numbers go on from one connection to the next, and a
  message that got no echo is sent again. Anything else a connection needs
  (a login, subscriptions) goes at the top of the loop, so that every
  connection gets it.
"""

from __future__ import annotations

import argparse
import logging
import math

import trio

import trio_ws


class Progress:
    """What survives from one connection to the next."""

    def __init__(self) -> None:
        #: The number of the next message. It goes up when the echo comes
        #: back, so a message lost with its connection is sent again.
        self.next_message = 1


async def talk(ws: trio_ws.WebSocketConnection, progress: Progress, interval: float) -> None:
    """Send a numbered message every ``interval`` seconds and print the echo,
    until the connection ends: then ``send()`` or ``recv()`` raises
    :class:`trio_ws.ConnectionClosed`."""
    while True:
        await ws.send(f"message {progress.next_message}")
        # Waits as long as it takes: if the server vanishes without a word,
        # the keepalive pings notice (within 40 s by default) and recv() raises.
        print(f"< {await ws.recv()!r}", flush=True)
        progress.next_message += 1
        await trio.sleep(interval)


async def main(url: str, interval: float, max_connections: int | None, seconds: float) -> None:
    progress = Progress()
    with trio.move_on_after(seconds) as time_limit:
        async with trio_ws.open_reconnecting_websocket(url) as connections:
            async for ws in connections:
                number = connections.connections_opened
                print(f"connection {number}: connected to {url}", flush=True)
                try:
                    await talk(ws, progress, interval)
                except trio_ws.ConnectionClosedOK as exc:
                    print(f"connection {number}: closed by the server ({exc})", flush=True)
                except trio_ws.ConnectionClosedError as exc:
                    print(f"connection {number}: lost ({exc})", flush=True)
                if max_connections is not None and number >= max_connections:
                    print(f"stopping after connection {number}", flush=True)
                    break
    if time_limit.cancelled_caught:
        print(f"stopping after {seconds:g} s", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description="Stay connected to a WebSocket echo server, reconnecting when needed."
    )
    parser.add_argument(
        "url",
        nargs="?",
        default="ws://127.0.0.1:8765/",
        help="the server to stay connected to (default: %(default)s)",
    )
    parser.add_argument(
        "--interval",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="time between two messages (default: %(default)s)",
    )
    parser.add_argument(
        "--max-connections",
        type=int,
        metavar="N",
        help="stop when the N-th connection ends (default: never)",
    )
    parser.add_argument(
        "--seconds",
        type=float,
        default=math.inf,
        metavar="SECONDS",
        help="stop after this long (default: never)",
    )
    args = parser.parse_args()
    # Show the reconnection attempts, which trio_ws logs at the INFO level.
    logging.basicConfig(format="%(name)s: %(message)s")
    logging.getLogger("trio_ws.client").setLevel(logging.INFO)
    try:
        trio.run(main, args.url, args.interval, args.max_connections, args.seconds)
    except KeyboardInterrupt:
        print("interrupted")
