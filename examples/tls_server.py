"""An echo server over TLS: ``wss://``.

Run it with ``python examples/tls_server.py [--host HOST] [--port PORT]``. It
prints its URL, and the ``tls_client.py`` command that talks to it.

Where the certificate comes from:

- ``--certfile cert.pem --keyfile key.pem``: yours, for instance from Let's
  Encrypt (``fullchain.pem`` and ``privkey.pem``). Clients verify it as usual.
- Without them, for trying things out: the server makes a throwaway
  certificate authority and a certificate for ``localhost``, ``127.0.0.1``
  and ``::1`` with `trustme <https://trustme.readthedocs.io>`_ (``pip install
  trustme``), and writes the authority's certificate to a file whose path it
  prints: that is what clients must trust, with ``tls_client.py --cafile``.
  The private keys stay in memory; everything is gone when the server stops.
  Never use this in production.

Ctrl+C (or SIGTERM) shuts it down, closing connections with 1001.
"""

from __future__ import annotations

import argparse
import functools
import signal
import ssl
import sys
import tempfile
from pathlib import Path

import trio

import trio_ws


async def echo(ws: trio_ws.WebSocketConnection) -> None:
    async for message in ws:
        await ws.send(message)


def throwaway_context(ca_path: Path) -> ssl.SSLContext:
    """A server context with a certificate from a new CA written to ``ca_path``."""
    try:
        import trustme
    except ImportError:
        sys.exit(
            "trustme is not installed: 'pip install trustme' to make a throwaway "
            "certificate, or pass --certfile and --keyfile"
        )
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(ca_path))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1", "::1").configure_cert(context)
    return context


async def main(host: str, port: int, context: ssl.SSLContext, ca_path: Path | None) -> None:
    serve = functools.partial(trio_ws.serve_websocket, ssl=context)
    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve, echo, host, port)
        for address in server.sockets_addresses():
            print(f"listening on {address[0]} port {address[1]} (TLS)", flush=True)
        url = f"wss://{_url_host(host)}:{server.port}/"
        if ca_path is not None:
            print("throwaway certificate for localhost, 127.0.0.1 and ::1 (testing only)")
            print(f"CA certificate: {ca_path}", flush=True)
            print(f"try: python examples/tls_client.py {url} --cafile {ca_path}", flush=True)
        else:
            print(f"try: python examples/tls_client.py {url}", flush=True)
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for _ in signals:
                break
        print("shutting down", flush=True)
        await server.aclose()


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description="A wss:// echo server; without --certfile it makes a throwaway "
        "certificate (needs trustme)."
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: %(default)s)"
    )
    parser.add_argument(
        "--port", type=int, default=8443, help="TCP port, 0 picks a free one (default: %(default)s)"
    )
    parser.add_argument("--certfile", help="the server's certificate chain (PEM)")
    parser.add_argument("--keyfile", help="the private key of --certfile (PEM)")
    args = parser.parse_args()
    if args.keyfile is not None and args.certfile is None:
        parser.error("--keyfile needs --certfile")

    if args.certfile is not None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            context.load_cert_chain(args.certfile, args.keyfile)
        except OSError as exc:  # ssl.SSLError is an OSError too
            parser.error(f"cannot load {args.certfile}: {exc}")
        trio.run(main, args.host, args.port, context, None)
    else:
        # The CA file lives as long as the server: clients read it meanwhile.
        with tempfile.TemporaryDirectory(prefix="trio_ws-tls-example-") as directory:
            ca_path = Path(directory) / "ca.pem"
            trio.run(main, args.host, args.port, throwaway_context(ca_path), ca_path)
