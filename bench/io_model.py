"""``bench_io.py``'s data model: cases, cells and their trials, memory results."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field, replace
from typing import Any

from io_common import IMPL, Impl

#: The common fast peer of each family (see bench_io's docstring).
COMMON = {"ws": "picows", "raw": "raw-asyncio", "deflate": "aiohttp"}
#: The references of the targets, per event loop.
RAW = {"trio": "raw-trio", "asyncio": "raw-asyncio"}
WEBSOCKETS = {"trio": "websockets-trio", "asyncio": "websockets-asyncio"}
TRIO_WS = {"trio": "trio_ws-trio", "asyncio": "trio_ws-asyncio"}


@dataclass(frozen=True)
class Case:
    """One scenario at one size: what every cell's client is told to do."""

    key: str
    title: str
    op: str  # echo, stream, many, handshakes
    unit: str  # what the rate counts
    size: int = 16
    kind: str = "bin"
    count: int = 0
    warmup: int = 0
    conns: int = 0
    rounds: int = 0
    concurrency: int = 50
    deflate: bool = False

    def runs(self, impl: Impl) -> bool:
        return impl.deflate or not self.deflate

    def common(self, impl: Impl) -> str:
        if self.deflate:
            return COMMON["deflate"]
        return COMMON["raw"] if impl.raw else COMMON["ws"]

    def scaled(self, scale: float, conns: int) -> Case:
        def at_least(value: int, low: int) -> int:
            return max(low, round(value * scale)) if value else 0

        return replace(
            self,
            count=at_least(self.count, 4),
            warmup=at_least(self.warmup, 2),
            conns=conns if self.conns else 0,
            rounds=at_least(self.rounds, 2),
        )

    def command(self) -> dict[str, Any]:
        return {
            "op": self.op,
            "size": self.size,
            "kind": self.kind,
            "count": self.count,
            "warmup": self.warmup,
            "conns": self.conns,
            "rounds": self.rounds,
            "concurrency": self.concurrency,
            "deflate": self.deflate,
        }


@dataclass
class Cell:
    """One (server, client) pair in one case: its trials, or why it failed."""

    server: str
    client: str
    trials: list[dict[str, float]] = field(default_factory=list)
    error: str | None = None

    def rates(self) -> list[float]:
        return [trial["rate"] for trial in self.trials]

    def median(self) -> float | None:
        return statistics.median(self.rates()) if self.trials and not self.error else None

    def spread(self) -> float | None:
        rates = self.rates()
        if len(rates) < 2 or self.error:
            return None
        return (max(rates) - min(rates)) / statistics.median(rates)

    def cpu_us(self, side: str) -> float | None:
        """Median CPU time of ``side`` (server or client) per unit, in µs."""
        if not self.trials or self.error:
            return None
        return statistics.median(trial[f"{side}_cpu_us"] for trial in self.trials)


@dataclass
class CaseResult:
    case: Case
    cells: dict[tuple[str, str], Cell]
    seconds: float = 0.0

    def view(self, view: str, key: str) -> Cell | None:
        """The cell of ``key`` as a pair, as the server, or as the client."""
        impl = IMPL[key]
        if not self.case.runs(impl):
            return None
        common = self.case.common(impl)
        pair = {"pair": (key, key), "server": (key, common), "client": (common, key)}[view]
        return self.cells.get(pair)

    def rate(self, view: str, key: str) -> float | None:
        cell = self.view(view, key)
        return None if cell is None else cell.median()

    def cpu_rate(self, view: str, key: str) -> float | None:
        """The rate the two processes' CPU time alone would allow, a figure
        steadier than wall-clock rates on a noisy machine: with one message
        in flight (echo) the two sides take turns, so their times add up;
        otherwise they work at once and the busier one sets the pace."""
        cell = self.view(view, key)
        if cell is None:
            return None
        server, client = cell.cpu_us("server"), cell.cpu_us("client")
        if server is None or client is None:
            return None
        busy = server + client if self.case.op == "echo" else max(server, client)
        return 1e6 / busy if busy > 0 else None


@dataclass
class MemoryResult:
    impl: str
    deflate: bool
    kib_per_conn: list[float] = field(default_factory=list)
    error: str | None = None

    def median(self) -> float | None:
        if not self.kib_per_conn or self.error:
            return None
        return statistics.median(self.kib_per_conn)
