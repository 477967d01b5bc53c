"""End-to-end WebSocket benchmark: trio_ws against the other libraries and raw TCP.

Run from the repository root, with the ``bench`` extra installed (picows
included: it is the common peer; a library that is missing or fails to
start turns its cells into FAIL and the exit status into 1)::

    python bench/bench_io.py                     # full run, 5-6 minutes on 2 cores
    python bench/bench_io.py --quick             # smoke run, about 25 s
    python bench/bench_io.py --only A-echo       # cases whose name contains this
    python bench/bench_io.py --json out.json --markdown docs/performance.md

What runs: every implementation as a server and as a client, each in a
process of its own pinned to one core (servers on the first CPU, clients on
the second), talking over 127.0.0.1:

- trio: trio_ws, websockets (its trio flavour), trio-websocket, raw TCP;
- asyncio on uvloop: trio_ws (through anyio), websockets, aiohttp, picows,
  raw TCP.

"raw TCP" is the limit: the same messages, length-prefixed, over plain
sockets (``io_raw.py``). Each scenario runs three ways: the same library on
both ends; each server against one common fast client; each client against
one common fast server, so that server and client costs show separately.
The common peer is picows (Cython, the fastest here; ``io_picows.py``), raw
TCP on asyncio for the raw servers and clients, and aiohttp with
permessage-deflate (picows has none; aiohttp was the fastest with it here).

Scenarios (``CASES``):

- A: echo round trips on one connection, one message in flight, 16 B,
  1 KiB, 64 KiB binary.
- B: one-way stream client -> server, 16 B to 1 MiB: the server checks and
  counts every message and acknowledges the total after an empty end
  marker; messages/s and MB/s.
- C: 1,000 connections open at once, each doing echo round trips at the
  same time (timed once all are open and warm); and the server's RSS per
  idle connection (VmRSS from /proc/<pid>/status before and after opening
  1,000 connections, in a fresh server process), compression off and on.
- D: handshakes per second, 50 at a time: connect, upgrade, close.
- E: permessage-deflate on (each library's defaults), realistic JSON text
  messages (``io_common.json_message``): echo and one-way stream.

Method: all cells of a case are measured once per trial, trials
interleaved (rotated order), each with a warm-up on the same connection
first; the tables show the median rate and the spread ((max - min) /
median) of the noisiest cell. Every echo, acknowledgement and handshake
count is checked, so a broken run fails instead of posting a fast number.
Alongside the rates, each process's CPU time per message is measured
(``io_common.CpuMeter``): on a 2-core VM a round trip's wall time is
dominated by waking the other process, and CPU time shows each side's cost.
Every wait has a deadline; worker processes die with the orchestrator
(stdin EOF, PR_SET_PDEATHSIG) and are stopped on exit, Ctrl+C included.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from types import FrameType
from typing import IO, Any, ClassVar

from io_common import IMPL, IMPLS, Impl, KiB, MiB, cpus, rss_kib
from io_model import COMMON, Case, CaseResult, Cell, MemoryResult
from io_report import (
    environment,
    load_average,
    print_report,
    read_json,
    source_text,
    write_json,
    write_markdown,
)

ROOT = Path(__file__).resolve().parent.parent
WORKER = Path(__file__).with_name("io_worker.py")

#: Seconds a worker gets to start, to answer a stats request, to stop.
START_TIMEOUT = 60.0
STATS_TIMEOUT = 10.0


# -- cases ------------------------------------------------------------------------------

# Counts: the slowest cell of each case needs about 0.5 s on the 2-core dev VM.
CASES: tuple[Case, ...] = (
    Case("A-echo-16B", "A echo 16 B", "echo", "rt/s", 16, count=1500, warmup=100),
    Case("A-echo-1KiB", "A echo 1 KiB", "echo", "rt/s", KiB, count=1500, warmup=100),
    Case("A-echo-64KiB", "A echo 64 KiB", "echo", "rt/s", 64 * KiB, count=300, warmup=20),
    Case("B-stream-16B", "B stream 16 B", "stream", "msg/s", 16, count=20000, warmup=1000),
    Case("B-stream-1KiB", "B stream 1 KiB", "stream", "msg/s", KiB, count=15000, warmup=1000),
    Case("B-stream-64KiB", "B stream 64 KiB", "stream", "msg/s", 64 * KiB, count=2000, warmup=50),
    # Enough messages to fill the socket buffers many times over.
    Case("B-stream-1MiB", "B stream 1 MiB", "stream", "msg/s", MiB, count=400, warmup=16),
    # conns=1 stands for --conns (1000); each connection does 2 untimed round
    # trips (first-use costs: buffers, epoll registrations) before the timed 10.
    Case("C-many-16B", "C 1000 conns echo 16 B", "many", "rt/s", conns=1, rounds=10, warmup=2),
    Case("D-handshakes", "D handshakes, 50 at once", "handshakes", "hs/s", count=500, warmup=50),
    Case(
        "E-echo-json-1KiB",
        "E deflate echo JSON 1 KiB",
        "echo",
        "rt/s",
        KiB,
        "json",
        count=800,
        warmup=50,
        deflate=True,
    ),
    Case(
        "E-stream-json-1KiB",
        "E deflate stream JSON 1 KiB",
        "stream",
        "msg/s",
        KiB,
        "json",
        count=5000,
        warmup=200,
        deflate=True,
    ),
    Case(
        "E-stream-json-16KiB",
        "E deflate stream JSON 16 KiB",
        "stream",
        "msg/s",
        16 * KiB,
        "json",
        count=400,
        warmup=20,
        deflate=True,
    ),
)
MEMORY_KEY = "C-memory"


# -- workers ----------------------------------------------------------------------------


class WorkerError(Exception):
    """A worker failed, timed out or died; the cell it served is void."""


class Worker:
    """One server or client process and its JSON-lines channel."""

    running: ClassVar[set[Worker]] = set()
    serial: ClassVar[itertools.count[int]] = itertools.count()

    #: The trio_ws snapshot every worker imports (see ``snapshot``), if any.
    source: ClassVar[Path | None] = None

    def __init__(self, impl: Impl, role: str, cpu: int | None, logs: Path) -> None:
        self.impl, self.role = impl, role
        self.log_path = logs / f"{role}-{impl.key}-{next(Worker.serial)}.log"
        env = dict(os.environ)
        # Import this checkout's trio_ws even when it is not installed.
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        command = [sys.executable, str(WORKER), "--role", role, "--impl", impl.key]
        command += ["--parent", str(os.getpid())]
        if cpu is not None:
            command += ["--cpu", str(cpu)]
        if Worker.source is not None:
            command += ["--source", str(Worker.source)]
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                cwd=ROOT,
                env=env,
                # Ctrl+C reaches only us; we stop the workers in order.
                start_new_session=True,
            )
        Worker.running.add(self)
        self.lines: queue.Queue[str | None] = queue.Queue()
        assert self.proc.stdout is not None
        threading.Thread(target=self._read, args=(self.proc.stdout,), daemon=True).start()
        self.port = 0
        self.pid = self.proc.pid

    def __repr__(self) -> str:
        return f"<{self.role} {self.impl.key} pid={self.pid}>"

    def _read(self, stdout: IO[bytes]) -> None:
        for raw in stdout:
            self.lines.put(raw.decode(errors="replace"))
        self.lines.put(None)

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def read(self, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise WorkerError(f"{self}: no answer within {timeout:.0f} s") from None
            if line is None:
                code = self.proc.wait(timeout=5)
                raise WorkerError(f"{self} exited with {code}:\n{self.log_tail()}")
            try:
                message = json.loads(line)
            except ValueError:
                continue  # a stray print from a library
            if isinstance(message, dict):
                return message

    def send(self, message: dict[str, Any] | str) -> None:
        line = message if isinstance(message, str) else json.dumps(message)
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(line.encode() + b"\n")
            self.proc.stdin.flush()
        except OSError as exc:
            raise WorkerError(f"{self}: cannot write: {exc}") from exc

    def wait_ready(self) -> None:
        message = self.read(START_TIMEOUT)
        if not message.get("ready"):
            raise WorkerError(f"{self}: unexpected {message}")
        self.port = int(message.get("port", 0))

    def request(self, command: dict[str, Any], timeout: float) -> dict[str, Any]:
        self.send(command)
        reply = self.read(timeout)
        if not reply.get("ok"):
            raise WorkerError(f"{self}: {reply.get('error', reply)}")
        return reply

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        Worker.running.discard(self)
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.close()
                self.proc.wait(timeout=2)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.terminate()
                try:
                    self.proc.wait(timeout=2)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass

    @classmethod
    def stop_all(cls) -> None:
        for worker in list(cls.running):
            worker.stop()


class Pool:
    """The long-lived workers: one server and one client per implementation."""

    def __init__(self, logs: Path, server_cpu: int | None, client_cpu: int | None) -> None:
        self.logs = logs
        self.server_cpu, self.client_cpu = server_cpu, client_cpu
        self.workers: dict[tuple[str, str], Worker] = {}
        self.broken: dict[tuple[str, str], str] = {}

    def start(self, needed: Iterable[tuple[str, str]]) -> None:
        """Start the workers not yet running, all at once, and wait for them."""
        fresh = []
        for role, key in needed:
            if (role, key) in self.workers or (role, key) in self.broken:
                continue
            cpu = self.server_cpu if role == "server" else self.client_cpu
            worker = Worker(IMPL[key], role, cpu, self.logs)
            self.workers[role, key] = worker
            fresh.append(worker)
        for worker in fresh:
            try:
                worker.wait_ready()
            except WorkerError as exc:
                self.discard(worker, str(exc))

    def get(self, role: str, key: str) -> Worker | None:
        return self.workers.get((role, key))

    def discard(self, worker: Worker, reason: str) -> None:
        worker.stop()
        self.workers.pop((worker.role, worker.impl.key), None)
        self.broken[worker.role, worker.impl.key] = reason.splitlines()[-1][:200]
        print(f"  ! {worker.role} {worker.impl.key} unavailable: {reason[-500:]}", flush=True)

    def restart(self, worker: Worker) -> None:
        """Replace a worker that timed out: its state is unknown."""
        worker.stop()
        del self.workers[worker.role, worker.impl.key]
        self.start([(worker.role, worker.impl.key)])


# -- measuring ---------------------------------------------------------------------------


def cells_of(case: Case, impls: Sequence[Impl]) -> list[tuple[str, str]]:
    """Pairs (server, client): same library, server vs common, common vs client."""
    pairs: list[tuple[str, str]] = []
    for impl in impls:
        if not case.runs(impl):
            continue
        common = case.common(impl)
        for pair in ((impl.key, impl.key), (impl.key, common), (common, impl.key)):
            if pair not in pairs and IMPL[common] in impls:
                pairs.append(pair)
    return pairs


def command_timeout(case: Case) -> float:
    # Generous: the slowest cell needs ~0.5 s at full scale, 1,000 connections a few s.
    return 60.0 + (30.0 if case.conns else 0.0)


def run_case(case: Case, impls: Sequence[Impl], pool: Pool, trials: int) -> CaseResult:
    pairs = cells_of(case, impls)
    pool.start({("server", s) for s, _ in pairs} | {("client", c) for _, c in pairs})
    result = CaseResult(case, {pair: Cell(*pair) for pair in pairs})
    started = time.monotonic()
    timeout = command_timeout(case)
    for trial in range(trials):
        # Rotate the order so that no cell always runs first or last.
        shift = trial * len(pairs) // trials
        for server_key, client_key in pairs[shift:] + pairs[:shift]:
            cell = result.cells[server_key, client_key]
            if cell.error is not None:
                continue
            server, client = pool.get("server", server_key), pool.get("client", client_key)
            if server is None or client is None:
                missing = server_key if server is None else client_key
                cell.error = f"{missing}: {pool.broken.get(('server', missing), 'unavailable')}"
                continue
            command = case.command() | {
                "port": server.port,
                "server_pid": server.pid,
                "timeout": timeout,
            }
            try:
                reply = client.request(command, timeout + 15)
            except WorkerError as exc:
                cell.error = str(exc).splitlines()[-1][:300]
                print(f"  ! {case.key} {server_key} <- {client_key}: {cell.error}", flush=True)
                for worker in (server, client):
                    if not worker.alive() or "no answer" in str(exc):
                        pool.restart(worker)
                continue
            count, elapsed = reply["count"], reply["elapsed"]
            cell.trials.append(
                {
                    "rate": count / elapsed,
                    "elapsed": elapsed,
                    "count": count,
                    "server_cpu_us": reply.get("server_cpu_ns", 0) / count / 1e3,
                    "client_cpu_us": reply.get("client_cpu_ns", 0) / count / 1e3,
                }
            )
    result.seconds = time.monotonic() - started
    return result


def measure_memory(
    impls: Sequence[Impl], pool: Pool, conns: int, trials: int
) -> list[MemoryResult]:
    """Server RSS per idle connection, each measurement in a fresh server."""
    plan = [(impl, False) for impl in impls] + [(impl, True) for impl in impls if impl.deflate]
    results = {(impl.key, deflate): MemoryResult(impl.key, deflate) for impl, deflate in plan}
    clients = {COMMON["raw"] if impl.raw else COMMON["ws"] for impl, _ in plan}
    pool.start(("client", key) for key in clients)
    for trial in range(trials):
        shift = trial * len(plan) // trials
        for impl, deflate in plan[shift:] + plan[:shift]:
            result = results[impl.key, deflate]
            if result.error is not None:
                continue
            client = pool.get("client", COMMON["raw"] if impl.raw else COMMON["ws"])
            if client is None:
                result.error = "common client unavailable"
                continue
            try:
                result.kib_per_conn.append(_rss_per_connection(impl, deflate, client, pool, conns))
            except WorkerError as exc:
                result.error = str(exc).splitlines()[-1][:300]
                print(f"  ! memory {impl.key} deflate={deflate}: {result.error}", flush=True)
                if not client.alive() or "no answer" in str(exc):
                    pool.restart(client)
    return list(results.values())


def _rss_per_connection(impl: Impl, deflate: bool, client: Worker, pool: Pool, conns: int) -> float:
    server = Worker(impl, "server", pool.server_cpu, pool.logs)
    try:
        server.wait_ready()
        # Warm up with a few connections, so that imports and caches that
        # the first connection fills are not counted per connection.
        _hold(client, server, 10, deflate, lambda: None)
        _wait_open(server, 0)
        time.sleep(0.2)
        before = rss_kib(server.pid)
        after: list[int | None] = []

        def measure() -> None:
            _wait_open(server, conns)
            time.sleep(0.3)  # let the handlers reach their first recv()
            after.append(rss_kib(server.pid))

        _hold(client, server, conns, deflate, measure)
        if before is None or not after or after[0] is None:
            raise WorkerError("cannot read VmRSS from /proc")
        return (after[0] - before) / conns
    finally:
        server.stop()


def _hold(
    client: Worker, server: Worker, conns: int, deflate: bool, measure: Callable[[], None]
) -> None:
    timeout = 60.0
    command = {"op": "hold", "conns": conns, "concurrency": 50, "deflate": deflate}
    client.send(command | {"port": server.port, "timeout": timeout})
    message = client.read(timeout + 5)
    if message.get("held") != conns:
        raise WorkerError(f"{client}: {message.get('error', message)}")
    try:
        measure()
    finally:
        client.send("release")
        reply = client.read(timeout + 5)
    if not reply.get("ok"):
        raise WorkerError(f"{client}: {reply.get('error', reply)}")


def _wait_open(server: Worker, count: int) -> None:
    """Wait until ``count`` handlers run on the server (bounded)."""
    deadline = time.monotonic() + 30
    while True:
        server.send({"op": "stats"})
        stats = server.read(STATS_TIMEOUT)
        if stats.get("open") == count:
            return
        if time.monotonic() > deadline:
            raise WorkerError(f"{server}: {stats.get('open')} connections open, expected {count}")
        time.sleep(0.05)


# -- main ---------------------------------------------------------------------------------


def snapshot(logs: Path) -> Path:
    """Copy trio_ws's sources (and built accelerator) for the workers to import.

    The working tree may change while the benchmark runs; with a copy, every
    worker, including those started for the memory measurement at the end,
    runs the code the run's header names.
    """
    target = logs / "src"
    shutil.copytree(
        ROOT / "trio_ws", target / "trio_ws", ignore=shutil.ignore_patterns("__pycache__")
    )
    return target


def report_again(path: Path, markdown: str | None) -> int:
    results, memory, run = read_json(path)
    known = {key for result in results for cell in result.cells for key in cell}
    known |= {m.impl for m in memory}
    impls = [impl for impl in IMPLS if impl.key in known]
    verdicts = print_report(results, memory, impls, run)
    if markdown:
        write_markdown(Path(markdown), results, memory, impls, run, verdicts)
        print(f"Wrote {markdown}")
    return 0


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def select_impls(names: str) -> list[Impl]:
    if not names:
        return list(IMPLS)
    wanted = set(names.split(",")) | set(COMMON.values())
    wanted |= {"raw-trio", "websockets-trio", "websockets-asyncio"}  # the references
    unknown = wanted - set(IMPL)
    if unknown:
        raise SystemExit(f"unknown implementation(s): {', '.join(sorted(unknown))}")
    return [impl for impl in IMPLS if impl.key in wanted]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny counts, 1 trial")
    parser.add_argument("--trials", type=int, default=None, help="interleaved trials (5)")
    parser.add_argument("--scale", type=float, default=None, help="multiply message counts")
    parser.add_argument("--conns", type=int, default=None, help="connections in C (1000)")
    parser.add_argument(
        "--only",
        default="",
        help=f"cases whose name contains this, or one of several, comma-separated "
        f"({MEMORY_KEY} for memory)",
    )
    parser.add_argument("--impls", default="", help="comma-separated implementations")
    parser.add_argument("--json", metavar="PATH", help="also write every trial as JSON")
    parser.add_argument("--markdown", metavar="PATH", help="write the results as Markdown")
    parser.add_argument("--keep-logs", action="store_true", help="keep the workers' stderr")
    parser.add_argument(
        "--from-json",
        metavar="PATH",
        help="run nothing: report (and write --markdown) from an earlier --json",
    )
    args = parser.parse_args(argv)
    if args.from_json:
        return report_again(Path(args.from_json), args.markdown)

    trials = args.trials or (1 if args.quick else 5)
    args.scale = scale = args.scale or (0.05 if args.quick else 1.0)
    args.conns = conns = args.conns or (100 if args.quick else 1000)
    impls = select_impls(args.impls)
    wanted = [part.strip() for part in args.only.lower().split(",")]
    cases = [
        case.scaled(scale, conns)
        for case in CASES
        if any(only in case.key.lower() or only in case.title.lower() for only in wanted)
    ]
    args.with_memory = any(
        only in MEMORY_KEY.lower() or only in "c memory per idle connection" for only in wanted
    )
    if not cases and not args.with_memory:
        parser.error(f"no case name contains {args.only!r}")

    available = cpus()
    server_cpu, client_cpu = (available[0], available[1]) if len(available) >= 2 else (None, None)
    logs = Path(tempfile.mkdtemp(prefix="bench_io-"))
    Worker.source = snapshot(logs)
    env = environment(server_cpu, client_cpu, ROOT, Worker.source / "trio_ws")
    print(f"{env['cpu']}, {env['cores']} cores; Python {env['python']}; {env['platform']}")
    print(f"servers on CPU {server_cpu}, clients on CPU {client_cpu}", end="")
    print(f"; load average {env['load_average_at_start'] or 0:.1f}")
    print(f"trio_ws source: {source_text(env['trio_ws_source'])}")
    print(
        ", ".join(f"{name} {ver}" for name, ver in env["versions"].items() if ver) + "\n",
        flush=True,
    )
    print(f"{trials} interleaved trial(s), median shown; message counts x{scale:g}", flush=True)

    # Stop in order on Ctrl+C even when started in the background, where
    # the shell leaves SIGINT ignored; SIGTERM and SIGHUP likewise.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)
    try:
        return _run(args, cases, impls, logs, (server_cpu, client_cpu), env, trials)
    except KeyboardInterrupt:
        print("\ninterrupted; workers stopped", file=sys.stderr)
        return 130
    except Exception:
        args.keep_logs = True
        print(f"worker logs kept in {logs}", file=sys.stderr)
        raise
    finally:
        Worker.stop_all()
        if not args.keep_logs and logs.exists():
            shutil.rmtree(logs, ignore_errors=True)


def _run(
    args: argparse.Namespace,
    cases: Sequence[Case],
    impls: Sequence[Impl],
    logs: Path,
    cpus_used: tuple[int | None, int | None],
    env: dict[str, Any],
    trials: int,
) -> int:
    memory_trials = 1 if args.quick else min(trials, 3)
    pool = Pool(logs, *cpus_used)
    results: list[CaseResult] = []
    memory: list[MemoryResult] = []
    started = time.monotonic()
    try:
        for case in cases:
            result = run_case(case, impls, pool, trials)
            results.append(result)
            failed = sum(1 for cell in result.cells.values() if cell.error)
            note = f", {failed} failed" if failed else ""
            print(
                f"  {case.title:<30} {len(result.cells)} cells in {result.seconds:4.0f} s{note}",
                flush=True,
            )
        if args.with_memory:
            t0 = time.monotonic()
            memory = measure_memory(impls, pool, args.conns, memory_trials)
            print(f"  {'C memory per idle connection':<30} in {time.monotonic() - t0:4.0f} s")
    finally:
        Worker.stop_all()
    elapsed = time.monotonic() - started
    run = {
        "environment": env,
        "trials": trials,
        "memory_trials": memory_trials,
        "scale": args.scale,
        "conns": args.conns,
        "common": COMMON,
        "seconds": elapsed,
        "load_average_at_end": load_average(),
    }
    verdicts = print_report(results, memory, impls, run)
    if args.json:
        write_json(Path(args.json), results, memory, run, verdicts)
        print(f"Wrote {args.json}")
    if args.markdown:
        write_markdown(Path(args.markdown), results, memory, impls, run, verdicts)
        print(f"Wrote {args.markdown}")
    failures = [
        cell for result in results for cell in result.cells.values() if cell.error is not None
    ] + [m for m in memory if m.error is not None]
    if failures:
        args.keep_logs = True
        print(f"{len(failures)} cell(s) failed; worker logs kept in {logs}")
    elif args.keep_logs:
        print(f"worker logs in {logs}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
