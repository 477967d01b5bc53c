"""Category 7: the closing handshake (RFC 6455 §5.5.1, §7)."""

from __future__ import annotations

from ..model import Case, Close, Expect, F, ImplConfig, Shutdown, WaitEvents
from ..wire import CLOSE, PING, TEXT
from . import Options, case, echo, msg, send, text

__all__ = ["VALID_CODES", "cases"]

VALID_CODES = (
    1000,
    1001,
    1002,
    1003,
    1007,
    1008,
    1009,
    1010,
    1011,
    1012,
    1013,
    1014,
    3000,
    3999,
    4000,
    4999,
)
INVALID_CODES = (0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999)
OUT_OF_RANGE_CODES = (5000, 65535)

# Close timeouts: the implementation runs with close_timeout = 0.5 s and must
# have closed TCP within that plus this much slack.
QUICK_CLOSE = 0.5
SLACK = 1.5


def _closes_with(code: int, *, codes: tuple[int, ...] = ()) -> Expect:
    """We close with a bad close frame; it must answer ``code``."""
    return Expect(ok=((),), codes=frozenset({code, *codes}))


def cases() -> list[Case]:
    out = [
        echo(
            "7.1.1",
            "a text message; once it is echoed, a close: clean close",
            [msg("Hello World!")],
            [text("Hello World!")],
        ),
        echo("7.1.2", "two close frames: the second is ignored", [Close(1000), Close(1000)], []),
        echo("7.1.3", "close, then a ping: no pong", [Close(1000), send(F(PING, b"ping"))], []),
        echo(
            "7.1.4", "close, then a text message: ignored", [Close(1000), msg("Hello World!")], []
        ),
        echo(
            "7.1.5",
            "first fragment, close, last fragment: the message never completes",
            [send(F(TEXT, b"fragment1", fin=False)), Close(1000), send(F(0, b"fragment2"))],
            [],
        ),
        case(
            "7.1.6",
            "a 256 KiB message, then a close, then a ping: whether the echo makes it "
            "before the close is up to the implementation",
            [msg(b"BAsd7&jh23" * 26214 + b"BAsd", chop=None), Close(1000), send(F(PING))],
            Expect(
                ok=((("binary", b"BAsd7&jh23" * 26214 + b"BAsd"),), ()),
                informational=True,
            ),
        ),
        case(
            "7.3.1",
            "close with an empty payload: answered with an empty close or 1000",
            [Close(None)],
            Expect(empty_close_ok=True),
        ),
        case("7.3.2", "close with a 1-byte payload", [Close(raw=b"\x03")], _closes_with(1002)),
        case("7.3.3", "close with 1000 and no reason", [Close(1000)], Expect()),
        case("7.3.4", "close with 1000 and a reason", [Close(1000, b"Hello World!")], Expect()),
        case(
            "7.3.5",
            "close with 1000 and a reason of 123 bytes (the maximum)",
            [Close(1000, b"*" * 123)],
            Expect(),
        ),
        case(
            "7.3.6",
            "close with 1000 and a reason of 124 bytes: a 126-byte control frame",
            [Close(1000, b"*" * 124)],
            _closes_with(1002),
        ),
        case(
            "7.3.7",
            "close with 1000 and a 123-byte reason of multi-byte UTF-8",
            [Close(1000, ("µ" * 61 + "*").encode())],
            Expect(),
        ),
        case(
            "7.5.1",
            "close with 1000 and a reason that is not UTF-8 (a surrogate)",
            [Close(1000, "κόσμε".encode() + b"\xed\xa0\x80edited")],
            Expect(ok=((),), codes=frozenset({1007}), non_strict_codes=frozenset({1002})),
        ),
        case(
            "7.5.2",
            "close with 1000 and a reason that ends in a truncated UTF-8 sequence",
            [Close(1000, b"reason \xe2\x82")],
            Expect(ok=((),), codes=frozenset({1007}), non_strict_codes=frozenset({1002})),
        ),
        case(
            "7.1.7",
            "a text message and a close in one write: whether the echo goes out before "
            "the close echo is up to the implementation (RFC 6455 §5.5.1)",
            [send(F(TEXT, b"Hello World!"), F(CLOSE, b"\x03\xe8"))],
            Expect(ok=((text("Hello World!"),), ()), informational=True),
        ),
    ]
    for index, code in enumerate(VALID_CODES, 1):
        out.append(
            case(
                f"7.7.{index}",
                f"close with valid code {code}: echoed (1000 is NON-STRICT)",
                [Close(code)],
                Expect(ok=((),), codes=frozenset({code}), non_strict_codes=frozenset({1000})),
            )
        )
    for index, code in enumerate(INVALID_CODES, 1):
        out.append(
            case(
                f"7.9.{index}",
                f"close with invalid code {code}",
                [Close(code)],
                _closes_with(1002),
            )
        )
    for index, code in enumerate(OUT_OF_RANGE_CODES, 1):
        out.append(
            case(
                f"7.13.{index}",
                f"close with code {code}, outside the registry",
                [Close(code)],
                _closes_with(1002),
            )
        )
    out += _timeouts()
    return out


def _timeouts() -> list[Case]:
    quick = ImplConfig(close_timeout=QUICK_CLOSE)
    closer = ImplConfig(mode="close_after_one", close_timeout=QUICK_CLOSE)
    within = QUICK_CLOSE + SLACK
    it_closes = Expect(ok=((text("bye"),),), closed_by="impl", codes=frozenset({1000}))
    return [
        case(
            "7.14.1",
            "it closes (after echoing one message); we answer; TCP closes",
            [msg("bye")],
            it_closes,
            Options(impl=closer),
        ),
        case(
            "7.14.2",
            "it closes; we never answer and keep TCP open: it must give up after its close_timeout",
            [msg("bye")],
            Expect(
                ok=((text("bye"),),),
                closed_by="impl",
                codes=frozenset({1000}),
                answer_close=False,
                peer_closes_tcp=False,
                tcp_close_within=within,
            ),
            Options(impl=closer),
        ),
        case(
            "7.14.3",
            "it closes; we answer but keep TCP open: a server closes TCP at once, a "
            "client within its close_timeout",
            [msg("bye")],
            Expect(
                ok=((text("bye"),),),
                closed_by="impl",
                codes=frozenset({1000}),
                peer_closes_tcp=False,
                tcp_close_within=within,
            ),
            Options(impl=closer),
        ),
        case(
            "7.14.4",
            "it fails the connection (bad opcode); we never answer its close and keep TCP "
            "open: it must close TCP",
            [send(F(3))],
            Expect(
                closed_by="impl",
                codes=frozenset({1002}),
                answer_close=False,
                peer_closes_tcp=False,
                tcp_close_within=within,
            ),
            Options(impl=quick),
        ),
        case(
            "7.14.5",
            "we close; it answers; we keep TCP open: a server closes TCP at once, a "
            "client within its close_timeout",
            [Close(1000)],
            Expect(peer_closes_tcp=False, tcp_close_within=within),
            Options(impl=quick),
        ),
        case(
            "7.14.6",
            "we half-close TCP without a close frame: it must close TCP too (a close "
            "frame of its own is allowed)",
            [msg("Hello"), WaitEvents(1), Shutdown()],
            Expect(
                ok=((text("Hello"),),),
                closed_by="either",
                codes=frozenset({1000, 1001, 1011}),
                empty_close_ok=True,
                require_close_frame=False,
                peer_closes_tcp=False,
                tcp_close_within=within,
            ),
            Options(impl=quick),
        ),
        case(
            "7.14.7",
            "we send a close frame and half-close TCP at once: it still answers (or "
            "just closes) and closes TCP",
            [Close(1000), Shutdown()],
            Expect(peer_closes_tcp=False, tcp_close_within=within),
            Options(impl=quick),
        ),
    ]
