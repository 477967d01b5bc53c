"""What a conformance case is, what the peer observes, and how it is judged.

A :class:`Case` is data: a script of :data:`Action` s the fuzzing peer plays,
and an :class:`Expect` that says which sequences of events from the
implementation are OK, NON-STRICT or merely INFORMATIONAL, and how the
connection must end. :func:`judge` turns an :class:`Observation` into an
:class:`Outcome`, with the same grading as the Autobahn|Testsuite:

- the events (echoed messages, pongs) must equal one of the OK sequences,
  else one of the NON-STRICT ones, else the case FAILED;
- the connection must be closed by the expected side with an expected code;
  a wrong code, the wrong side, or a hang FAILED;
- a correct code that arrives late (after the peer sent what follows an
  invalid byte, for fail-fast cases), a connection dropped without a close
  frame, or a server that leaves the TCP connection for the client to close,
  are NON-STRICT;
- anything the implementation sends that breaks RFC 6455 itself (a masked
  frame from a server, invalid UTF-8 in a text message, ...) FAILED.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Literal, TypeAlias

from .wire import DeflateParams

__all__ = [
    "Action",
    "Case",
    "ClientDeflate",
    "Close",
    "Event",
    "Expect",
    "F",
    "ImplConfig",
    "Mark",
    "Observation",
    "Outcome",
    "Result",
    "Send",
    "SendMessage",
    "SendPrefix",
    "SendRest",
    "Shutdown",
    "Sleep",
    "WaitClose",
    "WaitEvents",
    "judge",
]

Role = Literal["server", "client"]  # the role of the implementation under test
ROLES: tuple[Role, ...] = ("server", "client")

#: ("text" | "binary" | "ping" | "pong", payload). Text payloads stay bytes.
Event: TypeAlias = tuple[str, bytes]


class Outcome(enum.IntEnum):
    """Case results, ordered from best to worst."""

    OK = 0
    INFORMATIONAL = 1
    NON_STRICT = 2
    FAILED = 3

    @property
    def label(self) -> str:
        return self.name.replace("_", "-")


# -- the script ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class F:
    """A frame to send. ``rsv`` is RSV1..3 as a number (RSV1 = 4, RSV2 = 2,
    RSV3 = 1). The peer masks as its role requires (RFC 6455 §5.1), or the
    other way round with ``wrong_mask``."""

    opcode: int
    payload: bytes = b""
    fin: bool = True
    rsv: int = 0
    wrong_mask: bool = False
    length_form: str = "min"
    declared_length: int | None = None


@dataclass(frozen=True, slots=True)
class Send:
    """Write frames. ``chop``: None writes them all at once, ``"frame"`` one
    write per frame, an int writes chunks of that many bytes; ``delay``
    seconds pass between writes."""

    frames: tuple[F, ...]
    chop: int | str | None = None
    delay: float = 0.0


@dataclass(frozen=True, slots=True)
class SendMessage:
    """Send a whole message, compressed if deflate was agreed (and
    ``compress`` is not False), in fragments of ``fragment`` payload bytes
    (after compression) if given; written in ``chop``-byte writes."""

    data: bytes
    binary: bool = False
    fragment: int | None = None
    compress: bool | None = None
    chop: int | None = None
    repeat: int = 1


@dataclass(frozen=True, slots=True)
class Close:
    """Send a close frame: ``code`` (None: empty payload) and ``reason``,
    or exactly ``raw`` as the payload."""

    code: int | None = 1000
    reason: bytes = b""
    raw: bytes | None = None
    rsv: int = 0


@dataclass(frozen=True, slots=True)
class SendPrefix:
    """Write ``frame`` up to and including payload byte ``upto - 1``; the rest
    waits for :class:`SendRest`."""

    frame: F
    upto: int


@dataclass(frozen=True, slots=True)
class SendRest:
    """Write what :class:`SendPrefix` held back."""


@dataclass(frozen=True, slots=True)
class WaitEvents:
    """Wait until the implementation sent ``count`` events in all (or closed)."""

    count: int
    timeout: float = 2.0


@dataclass(frozen=True, slots=True)
class WaitClose:
    """Wait up to ``timeout`` seconds for the implementation's close frame or
    TCP close; used right after an invalid byte in fail-fast cases."""

    timeout: float = 0.5


@dataclass(frozen=True, slots=True)
class Mark:
    """Remember this moment: a fail-fast case wants the close before it."""


@dataclass(frozen=True, slots=True)
class Sleep:
    seconds: float


@dataclass(frozen=True, slots=True)
class Shutdown:
    """Half-close our side of TCP (send EOF) without a close frame."""


Action: TypeAlias = (
    Send
    | SendMessage
    | SendPrefix
    | SendRest
    | Close
    | WaitEvents
    | WaitClose
    | Mark
    | Sleep
    | Shutdown
)


# -- the implementation's configuration -------------------------------------------


@dataclass(frozen=True, slots=True)
class ClientDeflate:
    """``trio_ws.DeflateConfig`` arguments for our client (client role)."""

    server_no_context_takeover: bool = False
    client_no_context_takeover: bool = False
    server_max_window_bits: int | None = None
    client_max_window_bits: int | None = None


@dataclass(frozen=True, slots=True)
class ImplConfig:
    """How the implementation under test runs for a case.

    ``mode``: ``"echo"`` echoes every message; ``"close_after_one"`` echoes
    one message and then closes (the handler returns; the client leaves its
    ``async with``), so the implementation starts the closing handshake.
    """

    mode: str = "echo"
    max_size: int | None = 2**20
    close_timeout: float = 10.0
    client_deflate: ClientDeflate | None = ClientDeflate()


# -- expectations ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Expect:
    """What the implementation must do.

    Attributes:
        ok: event sequences that make the case OK.
        non_strict: event sequences that make it NON-STRICT.
        informational: the spec leaves the events open; report them.
        closed_by: who must start the closing handshake: ``"peer"`` (we
            close once the events are in), ``"impl"`` (it must fail or
            close the connection itself), ``"either"`` (the spec allows
            both; we close if it does not).
        codes: close codes that are OK from the implementation.
        non_strict_codes: close codes accepted as NON-STRICT.
        empty_close_ok: a close frame without a code is OK (not NON-STRICT).
        fail_fast: the implementation's close must come before the
            script's :class:`Mark`, else NON-STRICT.
        answer_close: the peer echoes the implementation's close frame.
        peer_closes_tcp: the peer closes TCP when the closing handshake is
            over (a server's duty); False leaves it to the implementation.
        tcp_close_within: the implementation must close TCP within this
            many seconds after its close frame (or the trigger), else FAILED.
        require_close_frame: False when closing TCP without a close frame
            is right (the peer went away first).
    """

    ok: tuple[tuple[Event, ...], ...] = ((),)
    non_strict: tuple[tuple[Event, ...], ...] = ()
    informational: bool = False
    closed_by: Literal["peer", "impl", "either"] = "peer"
    codes: frozenset[int] = frozenset({1000})
    non_strict_codes: frozenset[int] = frozenset()
    empty_close_ok: bool = False
    fail_fast: bool = False
    answer_close: bool = True
    peer_closes_tcp: bool = True
    tcp_close_within: float | None = None
    require_close_frame: bool = True


@dataclass(frozen=True, slots=True)
class DeflateOffer:
    """permessage-deflate for a case.

    Server role: ``offers`` are the ``Sec-WebSocket-Extensions`` values the
    peer sends; ``expect_accept`` says whether our server must accept (True),
    must decline (False), or is free to (None).

    Client role: ``client`` configures our client; the peer answers its
    offer with ``response`` (computed from the offer when None, see
    ``peer.py``), or with ``raw_response`` verbatim (a broken answer our
    client must refuse).
    """

    offers: tuple[str, ...] = ("permessage-deflate; client_max_window_bits",)
    expect_accept: bool | None = True
    client: ClientDeflate = ClientDeflate()
    response: DeflateParams | None = None
    raw_response: str | None = None


@dataclass(frozen=True, slots=True)
class Case:
    """One conformance case."""

    id: str
    description: str
    actions: tuple[Action, ...]
    expect: Expect
    roles: tuple[Role, ...] = ROLES
    slow: bool = False
    deflate: DeflateOffer | None = None
    impl: ImplConfig = ImplConfig()
    timeout: float = 10.0
    #: How long the peer waits for an echo, a close or a TCP close.
    wait: float = 3.0
    #: The client must refuse the handshake (client role only).
    refuse_handshake: bool = False

    @property
    def category(self) -> int:
        return int(self.id.split(".")[0])


# -- what the peer saw ------------------------------------------------------------------


@dataclass(slots=True)
class Observation:
    """Everything the peer recorded during one case (times from case start)."""

    events: list[Event] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    handshake_error: str | None = None
    impl_close_code: int | None = None  # None: no close frame or an empty one
    impl_close_reason: bytes = b""
    impl_close_at: float | None = None
    impl_close_empty: bool = False
    peer_close_at: float | None = None
    closed_by_peer: bool = False  # we sent the first close frame
    eof_at: float | None = None  # the implementation closed TCP
    dropped_by_peer: bool = False  # we gave up waiting and closed TCP
    mark_at: float | None = None
    hard_timeout: bool = False
    deflate_agreed: bool = False
    compressed_received: int = 0  # messages from the implementation with RSV1
    compressed_sent: int = 0
    impl_notes: list[str] = field(default_factory=list)  # from the harness
    duration: float = 0.0


@dataclass(slots=True)
class Result:
    case: Case
    role: Role
    outcome: Outcome
    reasons: list[str]
    observation: Observation

    def describe(self) -> str:
        obs = self.observation
        close = (
            "no close frame"
            if obs.impl_close_at is None
            else "empty close frame"
            if obs.impl_close_empty
            else f"close {obs.impl_close_code}"
        )
        lines = [
            f"[{self.role}] {self.case.id} {self.outcome.label}: {self.case.description}",
            f"    {'; '.join(self.reasons) or 'as expected'}",
            f"    events: {_short_events(obs.events)}; {close}; "
            f"{'we' if obs.closed_by_peer else 'it'} closed first; "
            f"TCP {'closed by it' if obs.eof_at is not None else 'not closed by it'}"
            f"{' (we dropped it)' if obs.dropped_by_peer else ''}; {obs.duration:.3f} s",
        ]
        if obs.deflate_agreed:
            lines.append(
                f"    deflate: {obs.compressed_sent} messages sent compressed, "
                f"{obs.compressed_received} received compressed"
            )
        lines.extend(f"    note: {note}" for note in [*obs.notes, *obs.impl_notes])
        return "\n".join(lines)


def _short_events(events: list[Event]) -> str:
    if not events:
        return "[]"
    shown = [f"{kind}({_short(payload)})" for kind, payload in events[:6]]
    if len(events) > 6:
        shown.append(f"... {len(events)} in all")
    return "[" + ", ".join(shown) + "]"


def _short(payload: bytes) -> str:
    if len(payload) <= 24:
        return repr(payload)
    return f"{len(payload)} bytes"


# -- judging ----------------------------------------------------------------------------


def judge(case: Case, role: Role, obs: Observation) -> Result:
    """Grade one observation. See the module docstring for the rules."""
    expect = case.expect
    worst = Outcome.OK
    reasons: list[str] = []

    def grade(outcome: Outcome, reason: str) -> None:
        nonlocal worst
        worst = max(worst, outcome)
        reasons.append(f"{outcome.label}: {reason}")

    for violation in obs.violations:
        grade(Outcome.FAILED, f"implementation broke the protocol: {violation}")
    for note in [*obs.notes, *obs.impl_notes]:
        for outcome in (Outcome.FAILED, Outcome.NON_STRICT):
            if note.startswith(f"{outcome.label}: "):
                grade(outcome, note.removeprefix(f"{outcome.label}: "))
    if obs.handshake_error is not None:
        grade(Outcome.FAILED, f"opening handshake: {obs.handshake_error}")
        return Result(case, role, worst, reasons, obs)
    if case.refuse_handshake:
        return Result(case, role, worst, reasons, obs)
    if obs.hard_timeout:
        grade(Outcome.FAILED, f"hang: the case did not finish within {case.timeout:g} s")

    # The events.
    events = tuple(obs.events)
    if expect.informational:
        grade(Outcome.INFORMATIONAL, "the spec leaves this behaviour open")
    elif events in expect.ok:
        pass
    elif events in expect.non_strict:
        grade(Outcome.NON_STRICT, "events match a non-strict expectation")
    else:
        grade(Outcome.FAILED, "events differ from every expected sequence")

    # The close.
    got_close = obs.impl_close_at is not None
    wrong_side = expect.closed_by == "peer" and got_close and not obs.closed_by_peer
    if wrong_side:
        grade(
            Outcome.FAILED,
            f"the implementation closed the connection ({_code(obs)}) where it should not",
        )
    elif got_close:
        code = obs.impl_close_code
        if obs.impl_close_empty:
            if not expect.empty_close_ok:
                grade(Outcome.NON_STRICT, "close frame without a status code")
        elif code in expect.codes:
            pass
        elif code in expect.non_strict_codes:
            grade(Outcome.NON_STRICT, f"close code {code}, expected {_codes(expect.codes)}")
        else:
            grade(Outcome.FAILED, f"wrong close code {code}, expected {_codes(expect.codes)}")
    if not got_close:
        if obs.eof_at is not None:
            if expect.require_close_frame:
                grade(Outcome.NON_STRICT, "TCP closed without a close frame")
        elif not obs.hard_timeout:
            grade(Outcome.FAILED, "hang: neither a close frame nor a TCP close")
    if (
        expect.fail_fast
        and got_close
        and obs.mark_at is not None
        and obs.impl_close_at is not None
        and obs.impl_close_at > obs.mark_at
    ):
        grade(Outcome.NON_STRICT, "the close came late: after the rest of the message was sent")
    if (
        expect.fail_fast
        and not got_close
        and obs.eof_at is not None
        and obs.mark_at is not None
        and obs.eof_at > obs.mark_at
    ):
        grade(Outcome.NON_STRICT, "the failure came late")
    if expect.tcp_close_within is not None:
        start = obs.impl_close_at if obs.impl_close_at is not None else obs.peer_close_at
        if obs.eof_at is None:
            grade(Outcome.FAILED, "hang: the implementation never closed the TCP connection")
        elif start is not None and obs.eof_at - start > expect.tcp_close_within:
            grade(
                Outcome.FAILED,
                f"TCP closed {obs.eof_at - start:.2f} s after the close frame, "
                f"more than {expect.tcp_close_within:g} s",
            )
    if role == "server" and obs.dropped_by_peer and got_close and not obs.hard_timeout:
        grade(Outcome.NON_STRICT, "the server left the TCP connection open after the close")
    return Result(case, role, worst, reasons, obs)


def _code(obs: Observation) -> str:
    return "without a code" if obs.impl_close_empty else f"code {obs.impl_close_code}"


def _codes(codes: frozenset[int]) -> str:
    return "/".join(str(code) for code in sorted(codes))
