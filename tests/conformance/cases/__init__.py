"""The case tables, one module per group of categories, and helpers to write them.

Case ids follow the Autobahn|Testsuite's numbering where a case plays the
same scenario (1.1.1 is a 0-byte text message there as here); sections the
public suite does not have get numbers after its last one. Every case is
written here from the scenario's description, not copied.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ..model import (
    ROLES,
    Action,
    Case,
    DeflateOffer,
    Event,
    Expect,
    F,
    ImplConfig,
    Role,
    Send,
    SendMessage,
)

__all__ = [
    "DEFAULT",
    "Options",
    "all_cases",
    "binary",
    "case",
    "echo",
    "echo_of",
    "fail",
    "msg",
    "pong",
    "send",
    "text",
]


def text(data: str | bytes) -> Event:
    return ("text", data.encode() if isinstance(data, str) else data)


def binary(data: bytes) -> Event:
    return ("binary", data)


def pong(data: bytes | str = b"") -> Event:
    return ("pong", data.encode() if isinstance(data, str) else data)


def msg(data: str | bytes, *, chop: int | None = None, fragment: int | None = None) -> SendMessage:
    """Send ``data`` as a text message (str) or a binary one (bytes)."""
    if isinstance(data, str):
        return SendMessage(data.encode(), chop=chop, fragment=fragment)
    return SendMessage(data, binary=True, chop=chop, fragment=fragment)


def echo_of(data: str | bytes) -> Event:
    return text(data) if isinstance(data, str) else binary(data)


def send(*frames: F, chop: int | str | None = None, delay: float = 0.0) -> Send:
    """Write ``frames``: all at once, ``chop="frame"`` one per write, or in
    ``chop``-byte writes."""
    assert chop is None or chop == "frame" or isinstance(chop, int)
    return Send(tuple(frames), chop=chop, delay=delay)


DEFAULT_IMPL = ImplConfig()


@dataclass(frozen=True, slots=True)
class Options:
    """The parts of a :class:`Case` most tables leave at their defaults."""

    roles: tuple[Role, ...] = ROLES
    slow: bool = False
    impl: ImplConfig = DEFAULT_IMPL
    deflate: DeflateOffer | None = None
    timeout: float = 10.0
    wait: float = 3.0


DEFAULT = Options()


def echo(
    case_id: str,
    description: str,
    actions: Sequence[Action],
    events: Iterable[Event],
    options: Options = DEFAULT,
) -> Case:
    """A case the implementation must answer with exactly ``events``, then
    close cleanly (1000) when we do."""
    return _case(case_id, description, actions, Expect(ok=(tuple(events),)), options)


def fail(
    case_id: str,
    description: str,
    actions: Sequence[Action],
    *,
    code: int = 1002,
    before: Iterable[Event] = (),
    fail_fast: bool = False,
    options: Options = DEFAULT,
) -> Case:
    """A case the implementation must fail with ``code``.

    ``before``: events due before the bad input; having failed before
    sending them (an echo still in flight) is NON-STRICT, as in Autobahn.
    """
    before = tuple(before)
    expect = Expect(
        ok=(before,),
        non_strict=((),) if before else (),
        closed_by="impl",
        codes=frozenset({code}),
        fail_fast=fail_fast,
    )
    return _case(case_id, description, actions, expect, options)


def case(
    case_id: str,
    description: str,
    actions: Sequence[Action],
    expect: Expect,
    options: Options = DEFAULT,
) -> Case:
    """Any other case."""
    return _case(case_id, description, actions, expect, options)


def _case(
    case_id: str, description: str, actions: Sequence[Action], expect: Expect, options: Options
) -> Case:
    return Case(
        case_id,
        description,
        tuple(actions),
        expect,
        roles=options.roles,
        slow=options.slow,
        deflate=options.deflate,
        impl=options.impl,
        timeout=options.timeout,
        wait=options.wait,
    )


def all_cases() -> list[Case]:
    """Every case, in id order; ids are unique."""
    from . import closing, deflate, framing, limits, utf8

    cases = [
        *framing.cases(),
        *utf8.cases(),
        *closing.cases(),
        *limits.cases(),
        *deflate.cases(),
    ]
    ids = [case.id for case in cases]
    duplicates = {i for i in ids if ids.count(i) > 1}
    assert not duplicates, f"duplicate case ids: {sorted(duplicates)}"
    return sorted(cases, key=lambda case: tuple(int(p) for p in case.id.split(".")))
