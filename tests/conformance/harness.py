"""trio_ws under test, in a background thread with a trio loop of its own.

The fuzzing peer runs in the calling thread (one ``trio.run`` per case), the
implementation in this one, so a peer timeout still fires if the
implementation misbehaves, and neither shares an event loop with the other.
Calls into the implementation's loop go through
:meth:`trio.lowlevel.TrioToken.run_sync_soon`, which is thread-safe and
never blocks; answers come back through :class:`threading.Event`.

- Server role: one ``serve_websocket`` per :class:`~.model.ImplConfig`
  (started on first use, port 0), running the echo handler of DESIGN.md.
- Client role: one ``open_websocket_url`` task per case, connecting to the
  peer's listening socket and echoing what it receives, as Autobahn's
  client mode does.

Log records of level WARNING and up from the ``trio_ws`` loggers are kept,
so a case can tell whether the implementation logged an error.
"""

from __future__ import annotations

import functools
import logging
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import trio

import trio_ws

from .model import ImplConfig

__all__ = ["ClientRun", "ImplHarness", "ServerHandle"]


class _Collector(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []
        self._lock = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        with self._lock:
            self.records.append(record)

    def take(self) -> list[logging.LogRecord]:
        with self._lock:
            records, self.records = self.records, []
        return records


@dataclass
class ServerHandle:
    config: ImplConfig
    ready: threading.Event = field(default_factory=threading.Event)
    port: int = 0
    server: trio_ws.WebSocketServer | None = None
    error: str | None = None

    def open_connections(self) -> int:
        return 0 if self.server is None else len(self.server.connections)


@dataclass
class ClientRun:
    """One client task: ``result`` says how it ended."""

    done: threading.Event = field(default_factory=threading.Event)
    result: str = "running"
    exception: BaseException | None = None


async def _echo(ws: trio_ws.WebSocketConnection) -> None:
    # DESIGN.md's echo handler, as users write it.
    async for message in ws:
        await ws.send(message)


async def _echo_one(ws: trio_ws.WebSocketConnection) -> None:
    await ws.send(await ws.recv())


_HANDLERS = {"echo": _echo, "close_after_one": _echo_one}


def _connection_options(config: ImplConfig) -> dict[str, Any]:
    # No keepalive pings: they would be events the cases do not expect.
    return {
        "max_size": config.max_size,
        "close_timeout": config.close_timeout,
        "ping_interval": None,
    }


class ImplHarness:
    """Start with :meth:`start`, stop with :meth:`stop` (or use ``with``)."""

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._nursery: trio.Nursery | None = None
        self._ready = threading.Event()
        self._servers: dict[ImplConfig, ServerHandle] = {}
        self._collector = _Collector()
        self._logger = logging.getLogger("trio_ws")
        self.crash: BaseException | None = None
        self.listener: socket.socket | None = None

    def __enter__(self) -> ImplHarness:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- lifetime -----------------------------------------------------------------------

    def start(self) -> None:
        self._logger.addHandler(self._collector)
        self._thread = threading.Thread(
            target=self._run, name="trio_ws conformance implementation", daemon=True
        )
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError(f"the implementation thread did not start: {self.crash!r}")
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        listener.setblocking(False)
        self.listener = listener

    def _run(self) -> None:
        try:
            trio.run(self._main)
        except BaseException as exc:  # reported by stop(), never lost
            self.crash = exc
            self._ready.set()

    async def _main(self) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            self._token = trio.lowlevel.current_trio_token()
            self._ready.set()
            await trio.sleep_forever()

    def stop(self) -> None:
        if self.listener is not None:
            self.listener.close()
            self.listener = None
        if self._token is not None and self._nursery is not None:
            try:
                self._token.run_sync_soon(self._nursery.cancel_scope.cancel)
            except trio.RunFinishedError:
                pass
        if self._thread is not None:
            self._thread.join(15)
            if self._thread.is_alive():
                raise RuntimeError("the implementation thread did not stop")
        self._logger.removeHandler(self._collector)
        if self.crash is not None:
            raise RuntimeError("the implementation's trio loop crashed") from self.crash

    def _soon(self, fn: Any, *args: Any) -> None:
        assert self._token is not None, "start() first"
        assert self._nursery is not None, "start() first"
        if self.crash is not None:
            raise RuntimeError("the implementation's trio loop crashed") from self.crash
        self._token.run_sync_soon(fn, *args)

    def take_logs(self) -> list[logging.LogRecord]:
        return self._collector.take()

    # -- server role --------------------------------------------------------------------

    def server(self, config: ImplConfig) -> ServerHandle:
        """The running server for ``config``, started on first use."""
        handle = self._servers.get(config)
        if handle is None:
            handle = self._servers[config] = ServerHandle(config)
            assert self._nursery is not None
            self._soon(self._nursery.start_soon, self._serve, handle)
        if not handle.ready.wait(10) or handle.error is not None:
            raise RuntimeError(f"the server for {config} did not start: {handle.error}")
        return handle

    async def _serve(self, handle: ServerHandle) -> None:
        assert self._nursery is not None
        config = handle.config
        serve = functools.partial(
            trio_ws.serve_websocket,
            _HANDLERS[config.mode],
            "127.0.0.1",
            0,
            **_connection_options(config),
        )
        try:
            server = await self._nursery.start(serve)
        except Exception as exc:  # reported to the caller of server()
            handle.error = repr(exc)
            handle.ready.set()
            return
        handle.server = server
        handle.port = server.port
        handle.ready.set()

    # -- client role --------------------------------------------------------------------

    def start_client(self, url: str, config: ImplConfig, timeout: float) -> ClientRun:
        """Start an echo client for ``url``; it gives up after ``timeout`` s."""
        run = ClientRun()
        assert self._nursery is not None
        self._soon(self._nursery.start_soon, self._client, url, config, timeout, run)
        return run

    async def _client(
        self, url: str, config: ImplConfig, give_up_after: float, run: ClientRun
    ) -> None:
        options = _connection_options(config)
        deflate = config.client_deflate
        options["compression"] = (
            None
            if deflate is None
            else trio_ws.DeflateConfig(
                server_no_context_takeover=deflate.server_no_context_takeover,
                client_no_context_takeover=deflate.client_no_context_takeover,
                server_max_window_bits=deflate.server_max_window_bits,
                client_max_window_bits=deflate.client_max_window_bits,
            )
        )
        try:
            with trio.move_on_after(give_up_after) as scope:
                async with trio_ws.open_websocket_url(url, **options) as ws:
                    await _HANDLERS[config.mode](ws)
            run.result = "hung" if scope.cancelled_caught else "ok"
        except trio_ws.ConnectionClosed as exc:
            run.result = "closed"
            run.exception = exc
        except Exception as exc:  # judged by the runner
            run.result = "error"
            run.exception = exc
        finally:
            run.done.set()


def wait_until(predicate: Any, timeout: float, step: float = 0.002) -> bool:
    """Poll ``predicate`` from a plain thread, up to ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            return bool(predicate())
        time.sleep(step)
    return True
