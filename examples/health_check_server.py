"""An echo server that also answers health checks, on the same port.

Run it with ``python examples/health_check_server.py [--host HOST] [--port PORT]``,
then try ``curl -i http://127.0.0.1:8765/healthz`` (``200 OK``), open
http://127.0.0.1:8765/ in a browser (a page that talks to the server over
WebSocket), and ``python examples/echo_client.py`` (the echo). Ctrl+C (or
SIGTERM) shuts it down.

What it shows: ``process_request`` sees every HTTP request that reaches the
port, upgrade or not, so it can answer plain HTTP itself:

- ``GET /healthz`` gets ``200 OK``, for a load balancer, a Kubernetes probe or
  a Docker ``HEALTHCHECK``: no second server and no second port.
- ``GET /`` from a browser gets a small page.
- A WebSocket upgrade, to any path, goes on to the echo handler.
- Any other plain request gets trio_ws's own ``426 Upgrade Required``, whose
  body says that the URL is for WebSocket clients.

Every plain HTTP response closes its connection (``Connection: close``);
health checkers open a new one for each check anyway.
"""

from __future__ import annotations

import argparse
import functools
import signal

import trio

import trio_ws
from trio_ws import Request, Response, make_response

PAGE = """<!doctype html>
<meta charset="utf-8">
<title>trio_ws echo</title>
<p>This port serves WebSocket connections (they echo what you send), and
<a href="/healthz">/healthz</a>.
<p id="log">
<script>
  const log = document.getElementById("log");
  const ws = new WebSocket(`ws://${location.host}/`);
  ws.onopen = () => ws.send("hello from the browser");
  ws.onmessage = (event) => log.append(`echo: ${event.data}`);
</script>
"""


def answer_http(ws: trio_ws.WebSocketConnection, request: Request) -> Response | None:
    """The ``process_request`` hook: a response answers with plain HTTP,
    None goes on with the WebSocket handshake."""
    if request.resource == "/healthz":
        return make_response(200, "OK\n")
    if request.resource == "/" and "Upgrade" not in request.headers:
        return make_response(200, PAGE, content_type="text/html; charset=utf-8")
    return None


async def echo(ws: trio_ws.WebSocketConnection) -> None:
    async for message in ws:
        await ws.send(message)


async def main(host: str, port: int) -> None:
    serve = functools.partial(trio_ws.serve_websocket, process_request=answer_http)
    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve, echo, host, port)
        for address in server.sockets_addresses():
            print(f"listening on {address[0]} port {address[1]}", flush=True)
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for _ in signals:
                break
        print("shutting down", flush=True)
        await server.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description="A WebSocket echo server that answers health checks on the same port."
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: %(default)s)"
    )
    parser.add_argument(
        "--port", type=int, default=8765, help="TCP port, 0 picks a free one (default: %(default)s)"
    )
    args = parser.parse_args()
    trio.run(main, args.host, args.port)
