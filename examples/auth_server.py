"""A server that lets only known users in, and greets each by name.

Run it with ``python examples/auth_server.py [--host HOST] [--port PORT]``,
then ``python examples/auth_client.py`` tries every way in, and a few ways
that are refused. Ctrl+C (or SIGTERM) stops it.

What it shows:

- Authenticating in ``process_request``, during the opening handshake: a
  client without valid credentials gets a plain HTTP refusal and the handler
  never runs. Three ways to say who you are, tried in this order:
  HTTP Basic auth (``ws://alice:wonderland@host:port/``), a token in the
  query string (``?token=s3cr3t``), a ``session`` cookie (what a browser
  sends after a login on your site).
- 401 with ``WWW-Authenticate: Basic realm=...`` when credentials are
  missing or wrong: "who are you?". 403 when we know who you are and the
  answer is still no: ``/admin`` is for admins only, and ``origins=`` refuses
  connections opened by a web page of another site, which would otherwise
  ride on the user's cookie (cross-site WebSocket hijacking).
- Passing what the hook learned to the handler with a connection subclass,
  ``create_connection=AuthConnection``: the hook and the handler receive the
  same object, so the hook sets ``ws.user`` and the handler reads it, typed,
  and it goes away with the connection. A dict keyed by connection would do
  the same with more work: a lookup that can miss, and an entry to delete
  when the connection ends, or it leaks.

The users, passwords and tokens are hard-coded for the example; in real life
they come from a database (store password hashes, not passwords), or tokens
are signed and short-lived, made for the connection by your HTTP API. Use
``wss://`` (see ``tls_server.py``) for anything that leaves your machine:
these credentials travel in clear text over ``ws://``.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import functools
import hmac
import signal
import urllib.parse

import trio

import trio_ws
from trio_ws import Request, Response, make_response

PASSWORDS = {"alice": "wonderland"}  # Basic auth; store hashes in real life!
TOKENS = {"s3cr3t": "alice"}  # ?token=...
SESSIONS = {"8f14e45f": "bob"}  # session cookie -> user, filled in at login
ADMINS = {"alice"}  # who may open /admin
#: Browsers always send an Origin header; only pages of our own site may
#: connect. None lets in clients that send no Origin (not browsers).
ORIGINS = [None, "http://localhost:8000"]
REALM = 'Basic realm="trio_ws example", charset="UTF-8"'


class AuthConnection(trio_ws.WebSocketConnection):
    """A connection that remembers who opened it and how."""

    user = ""  # set by authenticate() before the handler runs
    method = ""


def basic_user(request: Request) -> str | None:
    """The user whose Basic credentials are valid, or None."""
    scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, _, password = decoded.partition(":")
    expected = PASSWORDS.get(user)
    # compare_digest takes as long for a wrong first letter as for a wrong
    # last one: timing does not tell an attacker how close a guess was.
    if expected is None or not hmac.compare_digest(password.encode(), expected.encode()):
        return None
    return user


def token_user(request: Request) -> str | None:
    token = urllib.parse.parse_qs(request.query).get("token", [""])[0]
    return TOKENS.get(token)


def cookie_user(request: Request) -> str | None:
    return SESSIONS.get(request.cookies.get("session", ""))


def identify(request: Request) -> tuple[str, str] | None:
    """Who the request comes from and how they proved it, or None."""
    for method, find_user in [
        ("Basic auth", basic_user),
        ("a token", token_user),
        ("a session cookie", cookie_user),
    ]:
        user = find_user(request)
        if user is not None:
            return user, method
    return None


def authenticate(ws: AuthConnection, request: Request) -> Response | None:
    """The ``process_request`` hook: return None to go on with the handshake."""
    identity = identify(request)
    if identity is None:
        print(f"refused {request.resource}: no valid credentials (401)", flush=True)
        return make_response(
            401, "Missing or invalid credentials.\n", headers={"WWW-Authenticate": REALM}
        )
    ws.user, ws.method = identity
    if request.resource == "/admin" and ws.user not in ADMINS:
        print(f"refused {request.resource} to {ws.user}: not an admin (403)", flush=True)
        return make_response(403, f"Sorry {ws.user}, /admin is for admins.\n")
    return None


async def greet(ws: AuthConnection) -> None:
    """Greet the user, then echo their messages, signed: ``ws.user`` is there
    for the whole connection."""
    print(f"{ws.user} connected to {ws.request.resource} ({ws.method})", flush=True)
    await ws.send(f"Hello, {ws.user}! You logged in with {ws.method}.")
    async for message in ws:
        await ws.send(f"{ws.user} said {message!r}")


async def main(host: str, port: int) -> None:
    serve = functools.partial(
        trio_ws.serve_websocket,
        process_request=authenticate,
        create_connection=AuthConnection,
        origins=ORIGINS,
    )
    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve, greet, host, port)
        for address in server.sockets_addresses():
            print(f"listening on {address[0]} port {address[1]}", flush=True)
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for _ in signals:
                break
        print("shutting down", flush=True)
        await server.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="A WebSocket server that authenticates clients.")
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: %(default)s)"
    )
    parser.add_argument(
        "--port", type=int, default=8765, help="TCP port, 0 picks a free one (default: %(default)s)"
    )
    args = parser.parse_args()
    trio.run(main, args.host, args.port)
