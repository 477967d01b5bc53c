"""Log in to ``auth_server.py`` each way it accepts, and see the refusals.

Start ``python examples/auth_server.py`` first, then run
``python examples/auth_client.py [URL]`` (default ``ws://127.0.0.1:8765/``).

What it shows:

- Sending credentials from a client: a user and password in the URL become
  a Basic ``Authorization`` header; a token goes in the query string; a
  cookie is an ``additional_headers`` entry (a browser sends it by itself).
- What a refusal looks like: :class:`trio_ws.InvalidStatus`, whose
  ``response`` holds the status, the headers (``WWW-Authenticate`` on a
  401) and the start of the body.
"""

from __future__ import annotations

import argparse
import urllib.parse
from typing import Any

import trio

import trio_ws

COOKIE = {"Cookie": "session=8f14e45f; theme=dark"}


def with_credentials(url: str, user: str, password: str) -> str:
    """``ws://host/`` -> ``ws://user:password@host/``."""
    parts = urllib.parse.urlsplit(url)
    userinfo = f"{urllib.parse.quote(user)}:{urllib.parse.quote(password)}"
    return parts._replace(netloc=f"{userinfo}@{parts.netloc}").geturl()


def with_path(url: str, path: str) -> str:
    """Replace the path and query of ``url``: ``/admin``, ``/?token=...``."""
    return urllib.parse.urljoin(url, path)


async def attempt(title: str, url: str, **options: Any) -> None:
    """Connect, print the greeting or the refusal, and close."""
    try:
        async with trio_ws.open_websocket_url(url, **options) as ws:
            # recv() has no timeout argument: a cancel scope is the timeout.
            with trio.fail_after(10):
                greeting = await ws.recv()
            print(f"{title}:\n  accepted: {greeting!r}")
    except trio_ws.InvalidStatus as exc:
        response = exc.response
        print(f"{title}:\n  refused: HTTP {response.status_code} {response.reason_phrase}")
        if "WWW-Authenticate" in response.headers:
            print(f"  WWW-Authenticate: {response.headers['WWW-Authenticate']}")
        print(f"  {response.body.decode(errors='replace').strip()}")


async def main(url: str) -> None:
    await attempt("Basic auth, alice", with_credentials(url, "alice", "wonderland"))
    await attempt("token in the query string", with_path(url, "/?token=s3cr3t"))
    await attempt("session cookie, bob", url, additional_headers=COOKIE)
    await attempt("no credentials", url)
    await attempt("wrong password", with_credentials(url, "alice", "guess"))
    await attempt("bob asks for /admin", with_path(url, "/admin"), additional_headers=COOKIE)
    await attempt("alice asks for /admin", with_path(url, "/admin?token=s3cr3t"))
    # What a page of another site would send from bob's browser: his cookie,
    # and its own origin. The server's origins= list refuses it.
    await attempt(
        "bob's cookie, from a page of another site",
        url,
        additional_headers=COOKIE,
        origin="https://evil.example",
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description="Try each way into examples/auth_server.py, and a few refusals."
    )
    parser.add_argument(
        "url",
        nargs="?",
        default="ws://127.0.0.1:8765/",
        help="the auth_server.py to connect to (default: %(default)s)",
    )
    args = parser.parse_args()
    trio.run(main, args.url)
