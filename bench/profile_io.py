"""Profile one side of one ``bench_io.py`` case with py-spy.

Runs the case between the implementation under test and the common fast
peer (picows; raw TCP on asyncio for raw; aiohttp with deflate), in the same
pinned worker processes as the benchmark, while ``py-spy record`` samples
the side under test. Writes py-spy's collapsed stacks and prints where the
on-CPU time goes: the functions that were running (self) and the functions
on the stack (inclusive), as a share of all samples::

    pip install py-spy
    python bench/profile_io.py --impl trio_ws-trio --side server --case A-echo-16B
    python bench/profile_io.py --impl trio_ws-trio --side client --case B-stream-16B

The collapsed stacks (``--out``) feed any flame graph tool, for instance
``flamegraph.pl`` or https://www.speedscope.app.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from bench_io import CASES, ROOT, Pool, Worker, WorkerError, snapshot
from io_common import IMPL, cpus
from io_report import source_state, source_text

#: Leaf frames of a thread waiting for I/O, which py-spy cannot always tell
#: from work: left out of the shares. The last two are the worker's threads
#: that wait for the orchestrator's next line.
IDLE = (
    "EpollIOManager.get_events ",
    "EpollIOManager._epoll_wait ",
    "EpollSelector.select ",
    "serve.<locals>.control (io_worker.py",
    "client.<locals>.reader (io_worker.py",
)


def summarize(path: Path, top: int, focus: str) -> str:
    """Self and inclusive shares of the busy samples in py-spy's raw output.

    Samples waiting in epoll are dropped. Time in C code (uvloop, zlib,
    system calls) is charged to the Python frame that called it.
    """
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = idle = 0
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        samples = int(count)
        frames = stack.split(";")
        if frames[-1].startswith(IDLE):
            idle += samples
            continue
        total += samples
        own[frames[-1]] += samples
        for frame in set(frames):
            inclusive[frame] += samples
    if not total:
        return "no samples (is the side under test idle, or py-spy not allowed to attach?)"
    lines = [f"{total} busy samples ({idle} more waiting in epoll, left out)"]
    for title, counter in (("self", own), ("inclusive", inclusive)):
        lines.append(f"\n-- {title} --")
        shown = 0
        for frame, samples in counter.most_common():
            if focus and focus not in frame and title == "inclusive":
                continue
            lines.append(f"{samples / total:6.1%}  {frame}")
            shown += 1
            if shown == top:
                break
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--impl", default="trio_ws-trio", choices=sorted(IMPL))
    parser.add_argument("--side", choices=("server", "client"), default="server")
    parser.add_argument("--case", default="A-echo-16B", choices=[c.key for c in CASES])
    parser.add_argument("--seconds", type=float, default=10.0, help="sampling time")
    parser.add_argument("--rate", type=int, default=500, help="samples per second")
    parser.add_argument("--top", type=int, default=25, help="lines per summary")
    parser.add_argument(
        "--focus", default="", help="inclusive list: only frames containing this (e.g. trio_ws)"
    )
    parser.add_argument("--out", type=Path, default=None, help="collapsed stacks file")
    parser.add_argument(
        "--lines", action="store_true", help="keep line numbers instead of whole functions"
    )
    parser.add_argument(
        "--nonblocking",
        action="store_true",
        help="do not pause the process to sample it (less overhead, but torn stacks)",
    )
    args = parser.parse_args(argv)
    py_spy = shutil.which("py-spy")
    if py_spy is None:
        parser.error("py-spy is not installed (pip install py-spy)")

    case = next(c for c in CASES if c.key == args.case).scaled(1.0, 1000)
    impl = IMPL[args.impl]
    common = case.common(impl)
    server_key, client_key = (impl.key, common) if args.side == "server" else (common, impl.key)
    out = args.out or Path(tempfile.gettempdir()) / f"profile-{impl.key}-{args.side}-{case.key}.txt"
    available = cpus()
    logs = Path(tempfile.mkdtemp(prefix="profile_io-"))
    pool = Pool(logs, *((available[0], available[1]) if len(available) >= 2 else (None, None)))
    Worker.source = snapshot(logs)
    print(f"trio_ws source: {source_text(source_state(ROOT, Worker.source / 'trio_ws'))}")
    try:
        pool.start([("server", server_key), ("client", client_key)])
        server, client = pool.get("server", server_key), pool.get("client", client_key)
        if server is None or client is None:
            print(f"cannot start the workers: {pool.broken}", file=sys.stderr)
            return 1
        command = case.command() | {"port": server.port, "server_pid": server.pid, "timeout": 60}
        client.request(command, 75)  # warm up
        target = server if args.side == "server" else client
        spy = subprocess.Popen(
            [
                *(py_spy, "record", "--pid", str(target.pid), "--rate", str(args.rate)),
                *("--duration", str(int(args.seconds)), "--format", "raw"),
                *(() if args.lines else ("--function",)),
                *(("--nonblocking",) if args.nonblocking else ()),
                *("--output", str(out)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        time.sleep(0.5)  # let py-spy attach
        runs, rate = 0, 0.0
        while spy.poll() is None:
            reply = client.request(command, 75)
            runs += 1
            rate += reply["count"] / reply["elapsed"]
        _, errors = spy.communicate(timeout=30)
        if spy.returncode != 0 or not out.exists():
            print(errors.decode(errors="replace"), file=sys.stderr)
            return 1
        print(
            f"{case.title}: {impl.key} as the {args.side}, against {common};"
            f" {runs} runs, mean {rate / max(runs, 1):.0f} {case.unit} while sampled"
        )
        print(summarize(out, args.top, args.focus))
        print(f"\ncollapsed stacks in {out}")
    except WorkerError as exc:
        print(exc, file=sys.stderr)
        return 1
    finally:
        Worker.stop_all()
        shutil.rmtree(logs, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
