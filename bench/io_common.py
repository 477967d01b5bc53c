"""What ``bench_io.py`` and its worker processes share: implementations,
payloads, the sink's bookkeeping, the control channel, process setup.

No event loop and no WebSocket library is imported here, so the
orchestrator stays light and each worker imports only its own library.
"""

from __future__ import annotations

import ctypes
import json
import os
import random
import resource
import signal
import sys
import threading
import time
from dataclasses import dataclass
from functools import cache
from typing import Any

KiB = 1024
MiB = 1024 * KiB

#: Every library's message size limit: above the largest message we send
#: (1 MiB, which is exactly some libraries' default limit).
MAX_SIZE = 4 * MiB

#: Distinct payloads per (kind, size); message ``i`` is ``payloads[i % n]``.
#: Binary payloads are random, so four are enough to catch reordering and
#: corruption. JSON payloads must not repeat within deflate's 32 KiB window,
#: or context takeover would compress them to nothing.
VARIANTS = {"bin": 4, "json": 64}

Payload = bytes | str


# -- implementations ---------------------------------------------------------


@dataclass(frozen=True)
class Impl:
    """One library on one event loop, as a server and as a client."""

    key: str  # command-line and JSON name
    label: str  # table column
    loop: str  # "trio" or "asyncio" (always with uvloop)
    module: str  # bench module with its server and client
    deflate: bool  # supports permessage-deflate
    raw: bool = False  # length-prefixed TCP, not WebSocket


IMPLS: tuple[Impl, ...] = (
    Impl("trio_ws-trio", "trio_ws", "trio", "io_libs", deflate=True),
    Impl("websockets-trio", "websockets", "trio", "io_libs", deflate=True),
    Impl("trio-websocket", "trio-websocket", "trio", "io_libs", deflate=False),
    Impl("raw-trio", "raw TCP", "trio", "io_raw", deflate=False, raw=True),
    Impl("trio_ws-asyncio", "trio_ws", "asyncio", "io_libs", deflate=True),
    Impl("websockets-asyncio", "websockets", "asyncio", "io_libs", deflate=True),
    Impl("aiohttp", "aiohttp", "asyncio", "io_libs", deflate=True),
    Impl("picows", "picows", "asyncio", "io_picows", deflate=False),
    Impl("raw-asyncio", "raw TCP", "asyncio", "io_raw", deflate=False, raw=True),
)
IMPL = {impl.key: impl for impl in IMPLS}

#: Distributions whose version goes into the report.
DISTRIBUTIONS = ("trio_ws", "trio", "anyio", "websockets", "trio-websocket", "wsproto")
DISTRIBUTIONS_ASYNCIO = ("aiohttp", "picows", "uvloop")


# -- payloads -------------------------------------------------------------------

_WORDS = (
    *("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel"),
    *("order", "trade", "quote", "cancel", "fill", "partial", "market", "limit"),
)
_NAMES = ("Ana", "Björn", "Chloé", "Dmitri", "Eun-ji", "François", "Grace", "Zoë")
_SYMBOLS = ("AAPL", "MSFT", "GOOG", "AMZN", "TSLA", "NVDA", "META", "JPM")


def json_message(size: int, seed: int) -> str:
    """A JSON document of at most ``size`` characters (a record less), as an API feed sends.

    An object with a sequence number and a list of records whose values vary
    (ids, prices, words), so that deflate sees realistic redundancy. A few
    names are not ASCII. Deterministic for a given ``(size, seed)``.
    """
    rng = random.Random(size * 1000 + seed)
    records: list[dict[str, Any]] = []
    document: dict[str, Any] = {"seq": seed, "channel": "trades", "records": records}
    length = len(_dumps(document))
    ts = 1_700_000_000_000 + seed * 1000
    while True:
        ts += rng.randint(1, 40)
        record = {
            "id": rng.randint(10**8, 10**9),
            "type": rng.choice(("trade", "quote", "order", "cancel")),
            "symbol": rng.choice(_SYMBOLS),
            "price": round(rng.uniform(5, 900), 2),
            "qty": rng.randint(1, 5_000),
            "ts": ts,
            "user": {"name": rng.choice(_NAMES), "id": rng.randint(1, 10**6)},
            "note": " ".join(rng.choices(_WORDS, k=rng.randint(1, 6))),
        }
        grown = length + len(_dumps(record)) + bool(records)  # and a comma
        if grown > size:
            return _dumps(document)
        records.append(record)
        length = grown


def _dumps(obj: object) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


@cache
def payloads(kind: str, size: int) -> tuple[Payload, ...]:
    """The messages of one stream: random bytes (``"bin"``) or JSON text."""
    if kind == "bin":
        rng = random.Random(size)
        return tuple(rng.randbytes(size) for _ in range(VARIANTS["bin"]))
    if kind == "json":
        return tuple(json_message(size, seed) for seed in range(VARIANTS["json"]))
    raise ValueError(f"unknown payload kind {kind!r}")


def end_marker(kind: str) -> Payload:
    """The empty message that ends a stream to ``/sink`` (no payload is empty)."""
    return "" if kind == "json" else b""


def sink_path(kind: str, size: int) -> str:
    return f"/sink?kind={kind}&size={size}"


def expected_ack(kind: str, size: int, count: int) -> str:
    """What the sink answers after ``count`` messages: count, length, errors."""
    messages = payloads(kind, size)
    total = sum(len(messages[i % len(messages)]) for i in range(count))
    return f"{count} {total} 0"


class Sink:
    """The server side of a one-way stream: counts and checks every message.

    ``feed()`` returns None, or the acknowledgement to send once the empty
    end marker arrives (``"count length errors"``); then it starts over.
    A message is an error unless it equals the one the client had to send
    (``==`` on bytes and str is a memcmp, cheap next to the I/O).
    """

    def __init__(self, path: str) -> None:
        query = dict(part.split("=", 1) for part in path.partition("?")[2].split("&") if part)
        self.expected = payloads(query.get("kind", "bin"), int(query.get("size", "0")))
        self.variants = len(self.expected)
        self.count = self.length = self.errors = 0

    def feed(self, message: Payload) -> str | None:
        if not message:
            ack = f"{self.count} {self.length} {self.errors}"
            self.count = self.length = self.errors = 0
            return ack
        if message != self.expected[self.count % self.variants]:
            self.errors += 1
        self.count += 1
        self.length += len(message)
        return None


def is_sink(path: str) -> bool:
    return path.startswith("/sink")


# -- control channel ------------------------------------------------------------
#
# The orchestrator talks to each worker over its stdin and stdout, one JSON
# object per line. A worker exits when its stdin closes, so it cannot outlive
# the orchestrator even if the orchestrator is killed.

_stdout_lock = threading.Lock()


def send_line(obj: dict[str, Any]) -> None:
    """Write one JSON line to the orchestrator (thread-safe)."""
    line = json.dumps(obj) + "\n"
    with _stdout_lock:
        sys.stdout.write(line)
        sys.stdout.flush()


class Stats:
    """What a server worker reports: WebSocket connections whose handler runs."""

    def __init__(self) -> None:
        self.open = 0
        self.total = 0

    def opened(self) -> None:
        self.open += 1
        self.total += 1

    def closed(self) -> None:
        self.open -= 1


# -- processes ------------------------------------------------------------------


def setup_worker(cpu: int | None, parent: int) -> None:
    """Die with the orchestrator, pin to ``cpu``, allow many sockets."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            pr_set_pdeathsig = 1
            libc.prctl(pr_set_pdeathsig, signal.SIGKILL)
        except (OSError, AttributeError):  # pragma: no cover  # not glibc
            pass
    if os.getppid() != parent:  # the orchestrator died before prctl()
        os._exit(1)
    # Ctrl+C is the orchestrator's business: it stops us in order.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    pin(cpu)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = 65536 if hard == resource.RLIM_INFINITY else hard
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, target), hard))


def pin(cpu: int | None) -> bool:
    """Pin this process to one CPU, if the platform can and the CPU is ours."""
    if cpu is None or not hasattr(os, "sched_setaffinity"):
        return False
    allowed = os.sched_getaffinity(0)
    if cpu not in allowed or len(allowed) < 2:
        return False
    os.sched_setaffinity(0, {cpu})
    return True


def cpus() -> list[int]:
    """The CPUs this process may run on, sorted."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))  # pragma: no cover  # not Linux


class CpuMeter:
    """CPU time used by this client process and by the server process over a
    timed section, in nanoseconds, every thread included (aiohttp compresses
    large messages in a thread pool).

    The client reads the server's ``/proc/<pid>/task/*/schedstat`` (time on
    CPU in nanoseconds) itself, right at the edges of the timed section, so
    neither connecting nor warming up is counted. Where /proc is missing the
    server's time reads as 0.
    """

    def __init__(self, server_pid: int | None) -> None:
        self.tasks = f"/proc/{server_pid}/task" if server_pid else None
        self.client = self.server = 0

    def _server_ns(self) -> int:
        if self.tasks is None:
            return 0
        total = 0
        try:
            for task in os.listdir(self.tasks):
                try:
                    with open(f"{self.tasks}/{task}/schedstat", encoding="ascii") as file:
                        total += int(file.read().split()[0])
                except FileNotFoundError:  # a thread that just ended
                    pass
        except (OSError, ValueError, IndexError):
            self.tasks = None
            return 0
        return total

    def start(self) -> None:
        self.server = self._server_ns()
        self.client = time.process_time_ns()

    def stop(self) -> dict[str, int]:
        client = time.process_time_ns() - self.client
        server = self._server_ns() - self.server if self.tasks else 0
        return {"client_cpu_ns": client, "server_cpu_ns": server}


def rss_kib(pid: int) -> int | None:
    """Resident set size of ``pid`` in KiB, from /proc/<pid>/status (VmRSS)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as file:
            for line in file:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None
