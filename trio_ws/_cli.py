"""``python -m trio_ws``: an interactive client, and ``serve``, an echo server.

The client sends each line read from standard input as a text message and
prints every message that arrives: text as is on standard output, binary as a
size and hex summary. Status lines (connected, pong, closed) go to standard
error, so that ``python -m trio_ws URL > replies.txt`` keeps only messages.

Standard input is read without blocking the event loop: from a pipe or a
socket through :class:`trio.lowlevel.FdStream` (cancellable, which matters
when the server closes first), otherwise (a terminal, a file, Windows) by
``os.read`` in a worker thread. The raw file descriptor is read, never
``sys.stdin``, so an abandoned thread holds no lock the interpreter needs at
exit.

Only the public API is used here: this module is also an example.
"""

from __future__ import annotations

import argparse
import codecs
import locale
import logging
import os
import signal
import ssl
import stat
import sys
from typing import TYPE_CHECKING, Any, NoReturn

import trio

import trio_ws
from trio_ws.protocol import Close

if TYPE_CHECKING:
    from collections.abc import Sequence
    from contextlib import AbstractAsyncContextManager

__all__ = ["main"]

PROG = "python -m trio_ws"

#: How long /ping waits for its pong before giving up, in seconds.
PING_WAIT = 10.0
#: Before closing, wait until no message came for this long, in seconds.
QUIET = 0.2
#: Binary messages show at most this many bytes in hex.
HEX_PREVIEW = 32

CLIENT_EPILOG = f"""\
commands (type them on a line of their own):
  /ping [text]             send a ping and print the round-trip time
  /close [code] [reason]   close the connection (code 1000 unless given)
  /help                    list these commands
  //text                   send the message "/text" (escape a leading slash)
  Ctrl+D                   close the connection cleanly and exit

Messages received are printed on standard output: text as is, binary as
"<N bytes: hex...>". Status lines (connected, pong, closed) go to standard
error. Before closing (/close, Ctrl+D, the end of piped input) the client
pings the server and waits for the pong and a moment of silence, so that
replies already on their way are printed.

The exit status is 0 after a normal close (1000 or 1001), 1 if the connection
failed or could not be opened, 2 for bad arguments.

examples:
  {PROG} serve                                   start an echo server on port 8765
  {PROG} ws://127.0.0.1:8765/                    then talk to it
  echo hello | {PROG} ws://127.0.0.1:8765/       send one message from a script
  {PROG} wss://example.com/chat --subprotocol chat.v1 --header "Authorization: Bearer T0KEN"
  {PROG} wss://localhost:8443/ --insecure        accept a self-signed certificate

To start an echo server instead, see: {PROG} serve --help
"""

SERVE_EPILOG = f"""\
Every message a client sends comes straight back. Connections and closes are
logged on standard error; the first lines on standard output are the
addresses the server listens on, as ws:// URLs. Ctrl+C (or SIGTERM) stops the
server, closing open connections with 1001 (going away).

examples:
  {PROG} serve                            ws://127.0.0.1:8765/
  {PROG} serve --port 0                   pick a free port and print it
  {PROG} serve --host '*' --port 9000     every address, IPv4 and IPv6
  {PROG} serve --certfile cert.pem --keyfile key.pem    wss:// with TLS
"""


# -- argument parsing -----------------------------------------------------------


def _client_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "Connect to a WebSocket server and talk to it: each line you type is\n"
            "sent as a text message, each message received is printed."
        ),
        epilog=CLIENT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("url", metavar="URL", help="a ws:// or wss:// URL to connect to")
    parser.add_argument(
        "--header",
        metavar="NAME:VALUE",
        action="append",
        default=[],
        help="add a header to the opening handshake request (repeatable)",
    )
    parser.add_argument(
        "--subprotocol",
        metavar="NAME",
        action="append",
        default=[],
        help="offer this subprotocol to the server (repeatable, in order of preference)",
    )
    parser.add_argument(
        "--no-compression",
        action="store_true",
        help="do not offer permessage-deflate compression",
    )
    parser.add_argument(
        "--insecure",
        action="store_true",
        help="wss:// only: do not verify the server's TLS certificate (testing only!)",
    )
    parser.add_argument(
        "--ping-interval",
        metavar="SECONDS",
        type=_seconds,
        default=20.0,
        help="send a keepalive ping this often; 0 turns keepalive off (default: 20)",
    )
    return parser


def _serve_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"{PROG} serve",
        description="Run a WebSocket echo server that logs every connection.",
        epilog=SERVE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--host",
        action="append",
        default=None,
        help=(
            "address to listen on; repeat it for several, '*' for every address "
            "(default: 127.0.0.1)"
        ),
    )
    parser.add_argument(
        "--port",
        type=int,
        default=8765,
        help="TCP port; 0 picks a free one (default: %(default)s)",
    )
    parser.add_argument("--certfile", help="serve wss:// with this certificate chain (PEM)")
    parser.add_argument("--keyfile", help="the private key of --certfile (PEM)")
    return parser


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def _parse_header(text: str) -> tuple[str, str]:
    name, colon, value = text.partition(":")
    if not colon or not name.strip():
        raise ValueError(f"--header {text!r} is not NAME:VALUE, e.g. 'Authorization: Bearer T'")
    return name.strip(), value.strip()


def _fail(message: str, status: int = 2) -> NoReturn:
    """Exit with a one-line error, no usage block and no traceback."""
    sys.stderr.write(f"{PROG}: error: {message}\n")
    raise SystemExit(status)


# -- formatting -------------------------------------------------------------------


def format_message(message: str | bytes) -> str:
    """Render a received message: text as is, binary as a size and hex summary."""
    if isinstance(message, str):
        return message
    preview = message[:HEX_PREVIEW].hex()
    more = "..." if len(message) > HEX_PREVIEW else ""
    noun = "byte" if len(message) == 1 else "bytes"
    return f"<{len(message)} {noun}: {preview}{more}>"


def describe_close(code: int, reason: str) -> str:
    """``1000 (OK), reason 'bye'``: a close code with its meaning."""
    text = f"code {Close(code)}"
    return f"{text}, reason {reason!r}" if reason else text


def _status(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _format_address(address: Any) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        host = str(address[0])
        return f"[{host}]:{address[1]}" if ":" in host else f"{host}:{address[1]}"
    return str(address)


# -- reading standard input -----------------------------------------------------------


class LineReader:
    """Read lines from a file descriptor without blocking the trio loop."""

    def __init__(self, fd: int = 0) -> None:
        self._fd = fd
        self._pipe: trio.lowlevel.FdStream | None = None
        if sys.platform != "win32":
            mode = os.fstat(fd).st_mode
            if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
                # A duplicate, so that closing the stream leaves fd 0 open;
                # FdStream restores blocking mode when it closes.
                self._pipe = trio.lowlevel.FdStream(os.dup(fd))
        encoding = (sys.stdin.encoding if sys.stdin else None) or locale.getpreferredencoding()
        self._decoder = codecs.getincrementaldecoder(encoding)(errors="replace")
        self._buffer = ""
        self._eof = False

    async def readline(self) -> str | None:
        """Return the next line without its line ending, or None at end of input.

        Cancellation:
            Safe: bytes already read stay buffered for the next call.
        """
        while "\n" not in self._buffer and not self._eof:
            chunk = await self._read()
            if chunk:
                self._buffer += self._decoder.decode(chunk)
            else:
                self._eof = True
                self._buffer += self._decoder.decode(b"", final=True)
        line, newline, rest = self._buffer.partition("\n")
        self._buffer = rest
        if not newline and not line:
            return None
        return line.removesuffix("\r")

    async def _read(self) -> bytes:
        if self._pipe is not None:
            return bytes(await self._pipe.receive_some(65536))
        # A terminal, a regular file or Windows: a thread. If we are cancelled
        # the thread is abandoned; it is a daemon and dies with the process.
        return await trio.to_thread.run_sync(os.read, self._fd, 65536, abandon_on_cancel=True)

    async def aclose(self) -> None:
        if self._pipe is not None:
            await self._pipe.aclose()


# -- the client -------------------------------------------------------------------------


HELP_TEXT = CLIENT_EPILOG.partition("\n\n")[0]


class Session:
    """One interactive session: the input loop and the printer of messages."""

    def __init__(self, ws: trio_ws.WebSocketConnection) -> None:
        self.ws = ws
        #: The exception recv() raised once the connection closed.
        self.closed: trio_ws.ConnectionClosed | None = None
        self._quiet: trio.CancelScope | None = None  # ends once no message came for QUIET s

    async def print_messages(self, done: trio.CancelScope) -> None:
        """Print messages until the connection closes, then stop the input loop."""
        while True:
            try:
                message = await self.ws.recv()
            except trio_ws.ConnectionClosed as exc:
                self.closed = exc
                done.cancel()
                return
            if self._quiet is not None:
                self._quiet.deadline = trio.current_time() + QUIET
            print(format_message(message), flush=True)

    async def run_commands(self, reader: LineReader) -> None:
        """Send lines and run commands until end of input or ``/close``."""
        while True:
            line = await reader.readline()
            if line is None:  # Ctrl+D, or the end of a pipe
                await self.drain()
                await self.ws.aclose()
                return
            try:
                if await self.run_line(line):
                    return
            except trio_ws.ConnectionClosed:
                return  # print_messages reports how it ended

    async def run_line(self, line: str) -> bool:
        """Handle one line; return True once the connection is closing."""
        if not line.startswith("/") or line.startswith("//"):
            await self.ws.send(line[1:] if line.startswith("//") else line)
            return False
        command, _, argument = line[1:].partition(" ")
        if command == "ping":
            await self.ping(argument)
        elif command == "close":
            code_text, _, reason = argument.strip().partition(" ")
            try:
                code = int(code_text) if code_text else 1000
                Close(code, reason).serialize()  # check it before draining
            except ValueError as exc:
                _status(f"cannot close like that: {exc}; try /close 1000 bye")
                return False
            await self.drain()
            await self.ws.aclose(code, reason)
            return True
        elif command == "help":
            _status(HELP_TEXT)
        else:
            _status(f"unknown command /{command}; /help lists them, //{command} sends it")
        return False

    async def drain(self) -> None:
        """Before closing, let replies already on their way arrive.

        Closing at once would lose them: a server stops sending as soon as it
        receives our close frame (RFC 6455 §5.5.1), and a script that pipes in
        ``hello`` wants to see the answer. So we wait for the pong of a last
        ping, then for a short silence, at most ``PING_WAIT`` seconds in all.
        """
        with trio.move_on_after(PING_WAIT):
            try:
                await (await self.ws.ping())
            except trio_ws.ConnectionClosed:
                return
            # Each message that arrives pushes the deadline back.
            with trio.move_on_after(QUIET) as self._quiet:
                await trio.sleep_forever()

    async def ping(self, payload: str) -> None:
        try:
            waiter = await self.ws.ping(payload or None)
        except ValueError as exc:
            _status(f"cannot ping: {exc}")
            return
        with trio.move_on_after(PING_WAIT):
            latency = await waiter
            _status(f"pong received in {latency * 1000:.2f} ms")
            return
        _status(f"no pong after {PING_WAIT:.0f} s")


async def talk(
    context: AbstractAsyncContextManager[trio_ws.WebSocketConnection], url: str, stdin_fd: int = 0
) -> int:
    """Run a session over ``context`` (from open_websocket_url) with lines read
    from ``stdin_fd``; return the exit status."""
    reader = LineReader(stdin_fd)
    try:
        async with context as ws:
            details = [f"compression: {'permessage-deflate' if ws.extension else 'none'}"]
            if ws.subprotocol is not None:
                details.insert(0, f"subprotocol: {ws.subprotocol}")
            _status(f"connected to {url} ({', '.join(details)})")
            if os.isatty(stdin_fd):
                _status("type a message and press Enter; /help for commands, Ctrl+D to quit")
            session = Session(ws)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(session.print_messages, nursery.cancel_scope)
                await session.run_commands(reader)
            closed = session.closed
    finally:
        await reader.aclose()
    if closed is None:  # pragma: no cover  # print_messages always records it
        return 1
    summary = f"connection closed with {describe_close(closed.code, closed.reason)}"
    if closed.rcvd is None:
        # No close frame from the server: say what happened instead, e.g.
        # "no close frame received or sent" for a lost TCP connection.
        summary += f": {closed}"
    _status(summary)
    return 0 if isinstance(closed, trio_ws.ConnectionClosedOK) else 1


def _client_options(args: argparse.Namespace) -> dict[str, Any]:
    options: dict[str, Any] = {
        "additional_headers": [_parse_header(text) for text in args.header],
        "subprotocols": args.subprotocol,
        "ping_interval": args.ping_interval or None,
    }
    if args.no_compression:
        options["compression"] = None
    if args.insecure and args.url.lower().startswith("wss:"):
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        options["ssl"] = context
    return options


def _connect_error(exc: Exception, url: str) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (
            f"could not connect to {url}: {exc.verify_message}; "
            "--insecure skips certificate verification"
        )
    if isinstance(exc, TimeoutError):
        return f"could not connect to {url}: timed out"
    if isinstance(exc, OSError):
        return f"could not connect to {url}: {_os_error_text(exc)}"
    return f"could not connect to {url}: {exc}"


def _os_error_text(exc: OSError) -> str:
    """The most specific text for ``exc``: anyio reports a failed connect as
    "All connection attempts failed" with the real errors in ``__cause__``."""
    if exc.strerror is None:
        cause = exc.__cause__
        causes = cause.exceptions if isinstance(cause, BaseExceptionGroup) else (cause,)
        for error in causes:
            if isinstance(error, OSError) and error.strerror:
                return error.strerror
    return exc.strerror or str(exc)


def run_client(argv: Sequence[str]) -> int:
    args = _client_parser().parse_args(argv)
    url: str = args.url
    try:
        options = _client_options(args)
        context = trio_ws.open_websocket_url(url, **options)
    except trio_ws.InvalidURI as exc:
        hint = f" (did you mean ws://{url}?)" if "://" not in url else ""
        _fail(f"{exc}{hint}")
    except (ValueError, TypeError) as exc:
        _fail(str(exc))
    try:
        return trio.run(talk, context, url)
    except (OSError, TimeoutError, trio_ws.InvalidHandshake) as exc:
        _fail(_connect_error(exc, url), status=1)
    except KeyboardInterrupt:
        pass
    except BaseExceptionGroup as group:
        # Ctrl+C while the nursery of talk() runs arrives wrapped.
        if group.split(KeyboardInterrupt)[1] is not None:
            raise
    _status("interrupted: closed the connection with code 1001 (going away)")
    return 130


# -- the echo server ------------------------------------------------------------------------

logger = logging.getLogger("trio_ws.cli")


def _first_offered(ws: trio_ws.WebSocketConnection, offered: Sequence[str]) -> str | None:
    """Accept whatever subprotocol the client prefers, so any client can test."""
    return offered[0] if offered else None


async def echo(ws: trio_ws.WebSocketConnection) -> None:
    """Send every message back; log the connection and how it ended."""
    name = str(ws.id)[:8]
    path = ws.request.path
    extra = f", subprotocol {ws.subprotocol}" if ws.subprotocol else ""
    logger.info(
        "%s: connection from %s, path %s%s", name, _format_address(ws.remote_address), path, extra
    )
    try:
        async for message in ws:
            await ws.send(message)
    except trio_ws.ConnectionClosed as exc:
        logger.info("%s: closed: %s", name, exc)
        return
    await ws.wait_closed()
    code, reason = ws.close_code or 1005, ws.close_reason or ""
    logger.info("%s: closed with %s", name, describe_close(code, reason))


def _url(address: Any, secure: bool) -> str:
    return f"{'wss' if secure else 'ws'}://{_format_address(address)}/"


async def _serve(
    hosts: list[str] | None, port: int, context: ssl.SSLContext | None
) -> OSError | None:
    """Serve until SIGINT or SIGTERM; return the error if we cannot listen."""
    hosts = hosts or ["127.0.0.1"]
    host: str | list[str] | None = hosts[0] if len(hosts) == 1 else hosts
    if host == "*":
        host = None
    async with trio.open_nursery() as nursery:
        try:
            server = await nursery.start(
                _serve_websocket, host, port, context, name="trio_ws echo server"
            )
        except OSError as exc:
            # Returned, not raised: out of the nursery it would become an
            # ExceptionGroup.
            return exc
        for address in server.sockets_addresses():
            print(f"listening on {_url(address, context is not None)}", flush=True)
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for _ in signals:
                break
        logger.info("shutting down")
        await server.aclose()
    return None


async def _serve_websocket(
    host: str | list[str] | None,
    port: int,
    context: ssl.SSLContext | None,
    *,
    task_status: trio.TaskStatus[trio_ws.WebSocketServer] = trio.TASK_STATUS_IGNORED,
) -> None:
    await trio_ws.serve_websocket(
        echo, host, port, ssl=context, select_subprotocol=_first_offered, task_status=task_status
    )


def run_serve(argv: Sequence[str]) -> int:
    args = _serve_parser().parse_args(argv)
    context: ssl.SSLContext | None = None
    if args.certfile is not None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            context.load_cert_chain(args.certfile, args.keyfile)
        except (OSError, ssl.SSLError) as exc:
            _fail(f"cannot load {args.certfile}: {exc}")
    elif args.keyfile is not None:
        _fail("--keyfile needs --certfile")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    error = trio.run(_serve, args.host, args.port, context)
    if error is not None:
        _fail(f"cannot listen on port {args.port}: {_os_error_text(error)}", status=1)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m trio_ws``; returns the exit status."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["serve"]:
        return run_serve(arguments[1:])
    return run_client(arguments)
