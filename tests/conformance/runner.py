"""Run cases against the implementation and report, case by case."""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from collections.abc import Callable, Iterable

import trio

from trio_ws.exceptions import InvalidHandshake

from .harness import ImplHarness, wait_until
from .model import Case, Observation, Outcome, Result, Role, judge
from .peer import run_against_client, run_against_server, scaled

__all__ = ["format_report", "run_case", "run_cases"]


def run_case(harness: ImplHarness, case: Case, role: Role) -> Result:
    """Play ``case`` against the implementation in ``role``; judge it."""
    harness.take_logs()  # whatever an earlier case left behind is not ours
    run = _run_server_case if role == "server" else _run_client_case
    obs = run(harness, case)
    for record in harness.take_logs():
        level = "FAILED: " if record.levelno >= logging.ERROR else ""
        message = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            message += f" ({type(exc).__name__}: {exc})"
        obs.impl_notes.append(f"{level}trio_ws logged {record.levelname}: {message}")
    return judge(case, role, obs)


def _run_server_case(harness: ImplHarness, case: Case) -> Observation:
    handle = harness.server(dataclasses.replace(case.impl, client_deflate=None))
    obs = trio.run(run_against_server, handle.port, case)
    # The server must let go of the connection once TCP is closed.
    if not wait_until(lambda: handle.open_connections() == 0, scaled(3.0)):
        obs.impl_notes.append("FAILED: the server still holds the connection 3 s after the case")
    return obs


def _run_client_case(harness: ImplHarness, case: Case) -> Observation:
    assert harness.listener is not None
    port = harness.listener.getsockname()[1]
    url = f"ws://127.0.0.1:{port}/conformance/{case.id}"
    client = harness.start_client(url, case.impl, scaled(case.timeout) + 5)
    obs = trio.run(run_against_client, harness.listener, case)
    if not client.done.wait(scaled(3.0) + (case.impl.close_timeout or 0)):
        obs.impl_notes.append("FAILED: the client task did not finish 3 s after the case")
        client.done.wait(scaled(case.timeout) + 6)  # bounded: the task gives up by itself
    exc = client.exception
    if client.result == "hung":
        obs.impl_notes.append("FAILED: the client task hung until its own timeout")
    elif case.refuse_handshake:
        if not isinstance(exc, InvalidHandshake):
            obs.impl_notes.append(
                f"FAILED: the client accepted a bad handshake response (ended with {exc!r})"
            )
    elif client.result == "error":
        obs.impl_notes.append(f"FAILED: the client raised {type(exc).__name__}: {exc}")
    elif exc is not None:
        obs.impl_notes.append(f"client ended with {type(exc).__name__}: {exc}")
    return obs


def run_cases(
    harness: ImplHarness,
    cases: Iterable[Case],
    roles: Iterable[Role],
    progress: Callable[[Result], None] | None = None,
) -> list[Result]:
    results: list[Result] = []
    for role in roles:
        for case in cases:
            if role not in case.roles:
                continue
            result = run_case(harness, case, role)
            results.append(result)
            if progress is not None:
                progress(result)
    return results


CATEGORY_NAMES = {
    1: "Framing",
    2: "Pings/Pongs",
    3: "Reserved bits",
    4: "Opcodes",
    5: "Fragmentation",
    6: "UTF-8 handling",
    7: "Close handling",
    9: "Limits/performance",
    10: "Auto-fragmentation",
    12: "permessage-deflate payloads",
    13: "permessage-deflate parameters",
}


def format_report(results: list[Result]) -> str:
    """A table per role: counts per category; then every case that is not OK."""
    lines: list[str] = []
    order = list(Outcome)
    for role in ("server", "client"):
        mine = [r for r in results if r.role == role]
        if not mine:
            continue
        lines.append(f"\n== trio_ws as {role.upper()} ==")
        header = f"{'category':<36}" + "".join(f"{o.label:>15}" for o in order) + f"{'total':>8}"
        lines.append(header)
        lines.append("-" * len(header))
        totals: Counter[Outcome] = Counter()
        for category in sorted({r.case.category for r in mine}):
            counts = Counter(r.outcome for r in mine if r.case.category == category)
            totals.update(counts)
            name = f"{category} {CATEGORY_NAMES.get(category, '')}"
            lines.append(
                f"{name:<36}"
                + "".join(f"{counts[o]:>15}" for o in order)
                + f"{sum(counts.values()):>8}"
            )
        lines.append("-" * len(header))
        lines.append(
            f"{'all':<36}" + "".join(f"{totals[o]:>15}" for o in order) + f"{len(mine):>8}"
        )
    not_ok = [r for r in results if r.outcome is not Outcome.OK]
    if not_ok:
        lines.append("\n== details of every case that is not OK ==")
        for result in sorted(not_ok, key=lambda r: (-r.outcome, r.role, _key(r.case.id))):
            lines.append(result.describe())
    return "\n".join(lines)


def _key(case_id: str) -> tuple[int, ...]:
    return tuple(int(part) for part in case_id.split("."))
