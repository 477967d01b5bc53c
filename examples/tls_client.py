"""A ``wss://`` client: which certificates to trust, and what a failure says.

Start ``python examples/tls_server.py`` first; it prints the command to run,
``python examples/tls_client.py wss://127.0.0.1:8443/ --cafile CA.pem``.

Three ways to trust the server:

- By default, the authorities your system trusts, as a browser does: right
  for a server with a real certificate (Let's Encrypt...). With the throwaway
  one of ``tls_server.py`` this fails, and the error says why.
- ``--cafile CA.pem``: also trust the authority in this file, here the
  throwaway one that ``tls_server.py`` wrote. Verification stays on.
- ``--insecure``: no verification at all. For testing only.

The host name in the URL must be one the certificate names: ``localhost``,
``127.0.0.1`` and ``::1`` for the throwaway one.
"""

from __future__ import annotations

import argparse
import ssl
import sys

import trio

import trio_ws


def client_context(cafile: str | None, insecure: bool) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=cafile)
    if insecure:
        # !!! FOR TESTING ONLY !!! With verification off, anybody on the
        # network path can pretend to be the server and read and change
        # everything you send: TLS then only protects against eavesdroppers
        # who do not bother. Never ship this; trust the server's CA instead
        # (--cafile). check_hostname must go off before verify_mode.
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


async def main(url: str, messages: list[str], context: ssl.SSLContext) -> None:
    try:
        async with trio_ws.open_websocket_url(url, ssl=context) as ws:
            print(f"connected to {url}")
            for message in messages:
                await ws.send(message)
                # recv() has no timeout argument: a cancel scope is the timeout.
                with trio.fail_after(10):
                    reply = await ws.recv()
                print(f"> {message}\n< {reply!r}")
    except ssl.SSLCertVerificationError as exc:
        sys.exit(
            f"certificate verification failed: {exc.verify_message}\n"
            "pass --cafile with the CA that tls_server.py printed (or, for testing "
            "only, --insecure)"
        )
    print(f"closed with code {ws.close_code}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Talk to a wss:// echo server.")
    parser.add_argument(
        "url",
        nargs="?",
        default="wss://127.0.0.1:8443/",
        help="a wss:// URL (default: %(default)s)",
    )
    parser.add_argument(
        "messages", nargs="*", metavar="MESSAGE", help="messages to send (default: one)"
    )
    trust = parser.add_mutually_exclusive_group()
    trust.add_argument("--cafile", help="also trust the certificate authority in this PEM file")
    trust.add_argument(
        "--insecure",
        action="store_true",
        help="do not verify the server's certificate (testing only!)",
    )
    args = parser.parse_args()
    if not args.url.lower().startswith("wss://"):
        parser.error(f"{args.url} is not a wss:// URL")
    if args.insecure:
        print("warning: --insecure: the server's certificate is NOT verified", file=sys.stderr)
    context = client_context(args.cafile, args.insecure)
    trio.run(main, args.url, args.messages or ["hello over TLS"], context)
