"""One server or one client of ``bench_io.py``, in a process of its own.

Started by the orchestrator, never by hand::

    python bench/io_worker.py --role server --impl trio_ws-trio --cpu 0 --parent PID

It pins itself to ``--cpu``, dies with its parent (``PR_SET_PDEATHSIG``, and
when its stdin closes), and speaks JSON lines on stdin/stdout:

- a server prints ``{"ready": true, "port": N, "pid": N}`` once it listens,
  then answers ``{"op": "stats"}`` with ``{"open": N, "total": N}`` (the
  WebSocket connections whose handler runs) from a thread of its own;
- a client prints ``{"ready": true, "pid": N}``, then runs one command per
  line (see ``io_drivers.py``), each in a fresh event loop, and answers
  ``{"ok": true, "elapsed": s, "count": n}`` or ``{"ok": false, "error": ...}``.
  ``hold`` also prints ``{"held": n}`` and waits for a ``release`` line.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import importlib.util
import json
import os
import queue
import sys
import threading
import traceback
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, cast

import anyio
import anyio.to_thread
from io_common import IMPL, Impl, Stats, send_line, setup_worker
from io_drivers import Control, Ready


class _Module(Protocol):
    serve: Callable[[str, Stats, Ready], Awaitable[None]]
    run_client: Callable[[str, dict[str, Any], Control], Awaitable[dict[str, Any]]]


def run_loop(impl: Impl, func: Callable[..., Awaitable[Any]], *args: Any) -> Any:
    """Run ``func`` on the implementation's event loop: trio, or asyncio on uvloop."""
    if impl.loop == "trio":
        return anyio.run(func, *args, backend="trio")
    return anyio.run(func, *args, backend="asyncio", backend_options={"use_uvloop": True})


def serve(impl: Impl, module: _Module) -> None:
    stats = Stats()

    def control() -> None:
        for line in sys.stdin:
            request = json.loads(line)
            if request.get("op") == "stats":
                send_line({"open": stats.open, "total": stats.total})
        os._exit(0)  # the orchestrator is gone or done with us

    threading.Thread(target=control, name="control", daemon=True).start()

    def ready(port: int) -> None:
        send_line({"ready": True, "port": port, "pid": os.getpid()})

    run_loop(impl, module.serve, impl.key, stats, ready)


class _ClientControl(Control):
    def __init__(self, lines: queue.Queue[str | None], timeout: float) -> None:
        self.lines = lines
        self.timeout = timeout

    def report(self, obj: dict[str, Any]) -> None:
        send_line(obj)

    async def wait_line(self, expected: str) -> None:
        # A thread that gives up by itself: the wait stays bounded and no
        # reader is left behind to steal the next command.
        get = functools.partial(self.lines.get, timeout=self.timeout)
        try:
            line = await anyio.to_thread.run_sync(get)
        except queue.Empty:
            raise TimeoutError(f"no {expected!r} from the orchestrator") from None
        if line is None or line.strip() != expected:
            raise RuntimeError(f"expected {expected!r}, got {line!r}")


def client(impl: Impl, module: _Module) -> None:
    lines: queue.Queue[str | None] = queue.Queue()

    def reader() -> None:
        for line in sys.stdin:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=reader, name="stdin", daemon=True).start()
    send_line({"ready": True, "pid": os.getpid()})
    while True:
        line = lines.get()
        if line is None:
            return
        cmd = json.loads(line)
        try:
            control = _ClientControl(lines, cmd["timeout"])
            result = run_loop(impl, module.run_client, impl.key, cmd, control)
        except Exception as exc:
            error = "".join(traceback.format_exception(exc))
            send_line({"ok": False, "error": error[-3000:]})
        else:
            send_line({"ok": True, **result})


def load_trio_ws(source: str) -> None:
    """Import trio_ws from the snapshot in ``source``, whatever else is on the
    path (an editable install's finder included): every worker of one run
    then runs the same code while the working tree changes."""
    package = os.path.join(source, "trio_ws")
    spec = importlib.util.spec_from_file_location(
        "trio_ws", os.path.join(package, "__init__.py"), submodule_search_locations=[package]
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["trio_ws"] = module
    spec.loader.exec_module(module)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--role", choices=("server", "client"), required=True)
    parser.add_argument("--impl", choices=sorted(IMPL), required=True)
    parser.add_argument("--cpu", type=int, default=None)
    parser.add_argument("--parent", type=int, required=True)
    parser.add_argument("--source", default=None, help="directory holding a trio_ws snapshot")
    args = parser.parse_args(argv)
    setup_worker(args.cpu, args.parent)
    if args.source:
        load_trio_ws(args.source)
    impl = IMPL[args.impl]
    module = cast("_Module", importlib.import_module(impl.module))
    if args.role == "server":
        serve(impl, module)
    else:
        client(impl, module)
    return 0


if __name__ == "__main__":
    sys.exit(main())
