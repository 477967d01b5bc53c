"""``bench_io.py``'s reports: tables, ratios, targets, JSON and Markdown."""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from io_common import DISTRIBUTIONS, DISTRIBUTIONS_ASYNCIO, Impl, payloads
from io_model import RAW, TRIO_WS, WEBSOCKETS, Case, CaseResult, Cell, MemoryResult

#: Ratios this close under a target are "near": within run-to-run noise.
NOISE = 0.05
MARKER = "<!-- end of generated results: text below this line is kept on regeneration -->"


@dataclass
class Verdict:
    name: str
    value: float | None
    target: float
    detail: str
    lower_is_better: bool = False
    kib: bool = False  # the value is KiB, not a ratio
    cpu_value: float | None = None  # the same ratio from CPU time (CaseResult.cpu_rate)

    @property
    def shown(self) -> str:
        if self.value is None:
            return "n/a"
        return f"{self.value:.1f} KiB" if self.kib else fmt_ratio(self.value)

    @property
    def status(self) -> str:
        if self.value is None:
            return "n/a"
        if self.lower_is_better:
            if self.value <= self.target:
                return "ok"
            return "near" if self.value <= self.target * (1 + NOISE) else "MISS"
        if self.value >= self.target:
            return "ok"
        return "near" if self.value >= self.target * (1 - NOISE) else "MISS"


# -- environment ------------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as file:
            for line in file:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def source_state(root: Path, package: Path | None = None) -> dict[str, Any]:
    """Which trio_ws code ran: the git commit, files changed since, and a
    digest of the package's sources (``package``: the snapshot the workers
    import; by default the working tree's)."""
    package = package or root / "trio_ws"
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(path.relative_to(package).as_posix().encode() + b"\0" + path.read_bytes())
    state: dict[str, Any] = {"digest": digest.hexdigest()[:12], "commit": None, "changed": []}
    try:
        git = ["git", "-C", str(root)]
        head = subprocess.run(
            [*git, "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        status = subprocess.run(
            [*git, "status", "--porcelain", "--", "trio_ws"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return state
    if head.returncode == 0:
        state["commit"] = head.stdout.strip()
        state["changed"] = [line[3:] for line in status.stdout.splitlines()]
    return state


def load_average() -> float | None:
    """The 1-minute load average: other work on the machine skews the rates."""
    try:
        return os.getloadavg()[0]
    except (OSError, AttributeError):
        return None


def environment(
    server_cpu: int | None, client_cpu: int | None, root: Path, package: Path | None = None
) -> dict[str, Any]:
    return {
        "load_average_at_start": load_average(),
        "trio_ws_source": source_state(root, package),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "server_cpu": server_cpu,
        "client_cpu": client_cpu,
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "versions": {name: _version(name) for name in DISTRIBUTIONS + DISTRIBUTIONS_ASYNCIO},
    }


def _load(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def source_text(source: dict[str, Any]) -> str:
    text = f"commit {source['commit']}" if source["commit"] else "not a git checkout"
    if source["changed"]:
        text += f" with uncommitted changes to {', '.join(source['changed'])}"
    return text + f" (sources digest {source['digest']})"


# -- numbers ----------------------------------------------------------------------------


def fmt_rate(value: float | None) -> str:
    if value is None:
        return "n/a"
    if value >= 1e6:
        return f"{value / 1e6:.2f}M"
    if value >= 1e4:
        return f"{value / 1e3:.1f}k"
    if value >= 1e3:
        return f"{value / 1e3:.2f}k"
    return f"{value:.0f}"


def fmt_us(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.0f}" if value >= 100 else f"{value:.1f}"


def fmt_ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def fmt_spread(value: float | None) -> str:
    return "" if value is None else f"{value:.0%}"


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def worst_spread(result: CaseResult) -> float | None:
    spreads = [s for cell in result.cells.values() if (s := cell.spread()) is not None]
    return max(spreads) if spreads else None


VIEWS = (
    ("pair", "Same library on both ends"),
    ("server", "Each server against the common client"),
    ("client", "Each client against the common server"),
)


# -- tables ------------------------------------------------------------------------------


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[list[str]]
    notes: list[str] = field(default_factory=list)
    #: Column groups above the header, in the text form: (label, first, last).
    groups: list[tuple[str, int, int]] = field(default_factory=list)

    def text(self) -> str:
        columns = [column.split(" (")[0] if self.groups else column for column in self.columns]
        everything = [columns, *self.rows]
        widths = [max(len(row[i]) for row in everything) for i in range(len(self.columns))]
        lines = [f"== {self.title} =="]
        if self.groups:
            line = " " * widths[0]
            for label, first, last in self.groups:
                span = sum(widths[first : last + 1]) + 2 * (last - first)
                line += "  " + f"{label} ".ljust(span, "-")
            lines.append(line)
        for number, row in enumerate(everything):
            cells = [row[0].ljust(widths[0])]
            cells += [c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)]
            lines.append("  ".join(cells).rstrip())
            if number == 0:
                lines.append("  ".join("-" * w for w in widths))
        lines += [f"  {note}" for note in self.notes]
        return "\n".join(lines)

    def markdown(self) -> str:
        lines = [f"### {self.title}", ""]
        lines.append("| " + " | ".join(self.columns) + " |")
        lines.append("|" + "|".join([":---"] + ["---:"] * (len(self.columns) - 1)) + "|")
        lines += ["| " + " | ".join(cell or " " for cell in row) + " |" for row in self.rows]
        if self.notes:
            lines += [""] + [f"{note}  " for note in self.notes]
        return "\n".join(lines)


def _impl_columns(impls: Sequence[Impl]) -> list[str]:
    return [f"{impl.label} ({'uvloop' if impl.loop == 'asyncio' else impl.loop})" for impl in impls]


def _impl_groups(impls: Sequence[Impl]) -> list[tuple[str, int, int]]:
    """Column groups by event loop, the first column being the row label."""
    groups: list[tuple[str, int, int]] = []
    for index, impl in enumerate(impls, start=1):
        label = "trio" if impl.loop == "trio" else "asyncio + uvloop"
        if groups and groups[-1][0] == label:
            groups[-1] = (label, groups[-1][1], index)
        else:
            groups.append((label, index, index))
    return groups


def rate_table(
    results: Sequence[CaseResult], impls: Sequence[Impl], view: str, title: str
) -> Table:
    rows = []
    for result in results:
        case = result.case
        cells = [result.view(view, impl.key) for impl in impls]
        rows.append(
            [f"{case.title} ({case.unit})"]
            + [
                _cell_text(cell) if cell is not None else ("" if case.runs(impl) else "n/a")
                for cell, impl in zip(cells, impls, strict=True)
            ]
            + [fmt_spread(worst_spread(result))]
        )
        if case.op == "stream":
            size = _payload_bytes(case)
            rates = [None if cell is None else cell.median() for cell in cells]
            rows.append(
                [f"{case.title} (MB/s)"]
                + ["" if rate is None else f"{rate * size / 1e6:.0f}" for rate in rates]
                + [""]
            )
    return Table(
        title,
        ["case", *_impl_columns(impls), "spread"],
        rows,
        groups=_impl_groups(impls),
        notes=[
            "n/a: not supported (trio-websocket and picows have no permessage-deflate); "
            "FAIL: the cell failed (see the messages above).",
            "spread: (max - min) / median of the noisiest cell in the row.",
        ],
    )


def _payload_bytes(case: Case) -> float:
    if case.kind == "json":
        messages = payloads(case.kind, case.size)
        return statistics.mean(len(m.encode() if isinstance(m, str) else m) for m in messages)
    return case.size


def _cell_text(cell: Cell) -> str:
    if cell.error is not None:
        return "FAIL"
    return fmt_rate(cell.median())


def cpu_table(results: Sequence[CaseResult], impls: Sequence[Impl], side: str) -> Table:
    view = side  # the server's CPU against the common client, and the reverse
    other = "client" if side == "server" else "server"
    rows = []
    for result in results:
        row = [f"{result.case.title} (µs/{result.case.unit.split('/')[0]})"]
        for impl in impls:
            cell = result.view(view, impl.key)
            if cell is None:
                row.append("")
            else:
                row.append("FAIL" if cell.error else fmt_us(cell.cpu_us(side)))
        rows.append(row)
    return Table(
        f"{side.capitalize()} CPU time per unit, µs (each {side} against the common {other})",
        ["case", *_impl_columns(impls)],
        rows,
        ["All threads of the process, kernel time included; lower is better."],
        _impl_groups(impls),
    )


def ratio_table(results: Sequence[CaseResult], view: str, title: str) -> Table:
    rows = []
    for result in results:
        row = [result.case.title]
        for loop in ("trio", "asyncio"):
            mine = result.rate(view, TRIO_WS[loop])
            row.append(fmt_ratio(ratio(mine, result.rate(view, RAW[loop]))))
            row.append(fmt_ratio(ratio(mine, result.rate(view, WEBSOCKETS[loop]))))
        rows.append(row)
    notes = [
        "Median rate of trio_ws / median rate of the reference, same run: > 1, trio_ws is faster."
    ]
    if view != "pair":
        notes.append(
            "raw TCP's common peer is raw TCP on asyncio, the WebSocket libraries' is picows"
            " (aiohttp with deflate): the raw ratios compare across different peers."
        )
    return Table(
        title,
        ["case", "trio: x raw", "trio: x websockets", "asyncio: x raw", "asyncio: x websockets"],
        rows,
        notes,
    )


def memory_table(
    memory: Sequence[MemoryResult], impls: Sequence[Impl], run: dict[str, Any]
) -> Table:
    by_key = {(m.impl, m.deflate): m for m in memory}
    rows = []
    for deflate in (False, True):
        row = [f"RSS per idle connection, KiB ({'deflate' if deflate else 'no compression'})"]
        for impl in impls:
            result = by_key.get((impl.key, deflate))
            if result is None:
                row.append("n/a" if deflate and not impl.deflate else "")
            elif result.error is not None:
                row.append("FAIL")
            else:
                value = result.median()
                row.append("n/a" if value is None else f"{value:.1f}")
        rows.append(row)
    return Table(
        "C: server memory per idle connection",
        ["", *_impl_columns(impls)],
        rows,
        groups=_impl_groups(impls),
        notes=[
            f"VmRSS of a fresh server process before and after {run['conns']} idle connections"
            f" (after a 10-connection warm-up), divided by {run['conns']};"
            f" median of {run['memory_trials']} trial(s). Library defaults (keepalive pings,"
            " queues) except the message size limit; with deflate, each library's default"
            " parameters as negotiated with a client offering"
            " 'permessage-deflate; client_max_window_bits'.",
        ],
    )


# -- targets ------------------------------------------------------------------------------


def verdicts(results: Sequence[CaseResult], memory: Sequence[MemoryResult]) -> list[Verdict]:
    """The targets of issue 6, from the same-library-on-both-ends view of one run."""
    by_key = {result.case.key: result for result in results}
    mem = {(m.impl, m.deflate): m.median() for m in memory}
    out: list[Verdict] = []

    def add(name: str, key: str, mine: str, ref: str, target: float) -> None:
        if key not in by_key:
            return
        result = by_key[key]
        a, b = result.rate("pair", mine), result.rate("pair", ref)
        detail = f"{fmt_rate(a)} vs {fmt_rate(b)} {result.case.unit}"
        cpu = ratio(result.cpu_rate("pair", mine), result.cpu_rate("pair", ref))
        out.append(Verdict(name, ratio(a, b), target, detail, cpu_value=cpu))

    trio, raw, ws = TRIO_WS["trio"], RAW["trio"], WEBSOCKETS["trio"]
    for key in ("A-echo-16B", "A-echo-1KiB", "A-echo-64KiB", "C-many-16B"):
        if key in by_key:
            add(f"trio: {by_key[key].case.title} >= 0.8x raw trio", key, trio, raw, 0.8)
    for key in ("B-stream-16B", "B-stream-1KiB"):
        if key in by_key:
            add(f"trio: {by_key[key].case.title} >= 3x websockets trio", key, trio, ws, 3.0)
    for key in ("B-stream-64KiB", "B-stream-1MiB"):
        if key in by_key:
            add(f"trio: {by_key[key].case.title} >= 0.8x raw trio", key, trio, raw, 0.8)
    add("trio: D handshakes >= 2x websockets trio", "D-handshakes", trio, ws, 2.0)
    if (trio, False) in mem:
        value = mem[trio, False]
        out.append(
            Verdict(
                "trio: RSS per idle connection <= 16 KiB (no compression)",
                value,
                16.0,
                "trio_ws on trio, against the picows client",
                lower_is_better=True,
                kib=True,
            )
        )
    mine, ref = TRIO_WS["asyncio"], WEBSOCKETS["asyncio"]
    for result in results:
        add(f"asyncio: {result.case.title} >= websockets asyncio", result.case.key, mine, ref, 1.0)
    for deflate in (False, True):
        if (mine, deflate) in mem and (ref, deflate) in mem:
            a, b = mem[mine, deflate], mem[ref, deflate]
            what = "deflate" if deflate else "no compression"
            out.append(
                Verdict(
                    f"asyncio: RSS per idle connection ({what}) <= websockets asyncio",
                    ratio(a, b),
                    1.0,
                    f"{fmt_us(a)} vs {fmt_us(b)} KiB per connection",
                    lower_is_better=True,
                )
            )
    return out


def verdict_table(verdicts: Sequence[Verdict]) -> Table:
    rows = [[v.name, v.shown, v.detail, v.status, fmt_ratio(v.cpu_value)] for v in verdicts]
    return Table(
        "Targets (same library on both ends, one run)",
        ["target", "measured", "detail", "verdict", "by CPU time"],
        rows,
        [
            f"near: missed by less than {NOISE:.0%}, within run-to-run noise.",
            "by CPU time: the same ratio computed from the CPU time each process spent per"
            " unit (echo: server + client; otherwise the busier side), a cross-check that"
            " the scheduling noise of a shared machine does not move.",
        ],
    )


# -- output --------------------------------------------------------------------------------


def tables(
    results: Sequence[CaseResult],
    memory: Sequence[MemoryResult],
    impls: Sequence[Impl],
    run: dict[str, Any],
    found: Sequence[Verdict],
) -> list[Table]:
    out: list[Table] = []
    if results:
        for view, title in VIEWS:
            out.append(rate_table(results, impls, view, f"{title}: median rate"))
        out.append(cpu_table(results, impls, "server"))
        out.append(cpu_table(results, impls, "client"))
    if memory:
        out.append(memory_table(memory, impls, run))
    if results:
        for view, title in VIEWS:
            out.append(ratio_table(results, view, f"trio_ws ratios, {title.lower()}"))
    if found:
        out.append(verdict_table(found))
    return out


def print_report(
    results: Sequence[CaseResult],
    memory: Sequence[MemoryResult],
    impls: Sequence[Impl],
    run: dict[str, Any],
) -> list[Verdict]:
    found = verdicts(results, memory)
    print()
    for table in tables(results, memory, impls, run, found):
        print(table.text())
        print()
    missed = sum(1 for v in found if v.status == "MISS")
    near = sum(1 for v in found if v.status == "near")
    print(f"{len(found)} targets: {missed} missed, {near} near; run took {run['seconds']:.0f} s.")
    return found


def write_json(
    path: Path,
    results: Sequence[CaseResult],
    memory: Sequence[MemoryResult],
    run: dict[str, Any],
    found: Sequence[Verdict],
) -> None:
    document = {
        **run,
        "cases": [
            {
                "case": asdict(result.case),
                "seconds": result.seconds,
                "cells": [
                    {
                        "server": cell.server,
                        "client": cell.client,
                        "median_rate": cell.median(),
                        "spread": cell.spread(),
                        "server_cpu_us": cell.cpu_us("server"),
                        "client_cpu_us": cell.cpu_us("client"),
                        "error": cell.error,
                        "trials": cell.trials,
                    }
                    for cell in result.cells.values()
                ],
            }
            for result in results
        ],
        "memory": [asdict(m) | {"median_kib_per_conn": m.median()} for m in memory],
        "targets": [asdict(v) | {"status": v.status} for v in found],
    }
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")


def read_json(path: Path) -> tuple[list[CaseResult], list[MemoryResult], dict[str, Any]]:
    """Load what :func:`write_json` wrote, to report it again."""
    document = json.loads(path.read_text(encoding="utf-8"))
    results = []
    for entry in document.pop("cases"):
        case = Case(**entry["case"])
        cells = {
            (cell["server"], cell["client"]): Cell(
                cell["server"], cell["client"], cell["trials"], cell["error"]
            )
            for cell in entry["cells"]
        }
        results.append(CaseResult(case, cells, entry["seconds"]))
    memory = [
        MemoryResult(m["impl"], m["deflate"], m["kib_per_conn"], m["error"])
        for m in document.pop("memory")
    ]
    document.pop("targets", None)
    return results, memory, document


def write_markdown(
    path: Path,
    results: Sequence[CaseResult],
    memory: Sequence[MemoryResult],
    impls: Sequence[Impl],
    run: dict[str, Any],
    found: Sequence[Verdict],
) -> None:
    """Write the results, keeping whatever follows :data:`MARKER` in ``path``."""
    env = run["environment"]
    tail = ""
    if path.exists():
        old = path.read_text(encoding="utf-8")
        if MARKER in old:
            tail = old.split(MARKER, 1)[1]
    versions = ", ".join(f"{name} {ver}" for name, ver in env["versions"].items() if ver)
    head = [
        "# Performance",
        "",
        "<!-- Generated by `python bench/bench_io.py --markdown docs/performance.md`;"
        " edit below the marker at the end of the results. -->",
        "",
        "End-to-end numbers from `bench/bench_io.py`: every library as a server and as a"
        " client, each in a process of its own pinned to one core, over 127.0.0.1. See the"
        " docstring of `bench/bench_io.py` for the method; the sans-IO core has its own"
        " micro-benchmark, `bench/bench_core.py`.",
        "",
        "## Machine",
        "",
        f"- Date: {env['date']}",
        f"- CPU: {env['cpu']}, {env['cores']} cores; servers pinned to CPU {env['server_cpu']},"
        f" clients to CPU {env['client_cpu']}",
        f"- Python {env['python']} ({env['implementation']}), {env['platform']}",
        f"- Libraries: {versions}",
        f"- trio_ws source: {source_text(env['trio_ws_source'])};"
        " every worker imports a copy taken at the start",
        f"- Load average (1 min) before the run {_load(env.get('load_average_at_start'))}, after it"
        f" {_load(run.get('load_average_at_end'))}: anything well above 0 means other work shared"
        " the two cores, and the wall-clock rates (not the CPU times) suffer",
        f"- Run: {run['trials']} interleaved trials (memory: {run['memory_trials']}),"
        f" message counts x{run['scale']:g}, {run['conns']} connections in C,"
        f" {run['seconds']:.0f} s in all",
        f"- Common peers: {run['common']['ws']} (WebSocket), {run['common']['raw']} (raw TCP),"
        f" {run['common']['deflate']} (permessage-deflate)",
        "",
        "## Results",
        "",
        "Rates are medians over the trials: round trips (rt), messages (msg) or handshakes"
        " (hs) per second; higher is better.",
        "",
    ]
    body = [table.markdown() + "\n" for table in tables(results, memory, impls, run, found)]
    text = "\n".join(head) + "\n" + "\n".join(body) + "\n" + MARKER + (tail or "\n")
    path.write_text(text, encoding="utf-8")


__all__ = [
    "environment",
    "load_average",
    "print_report",
    "read_json",
    "source_text",
    "write_json",
    "write_markdown",
]
