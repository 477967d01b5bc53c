"""Categories 1-5: framing, pings and pongs, reserved bits, opcodes, fragmentation."""

from __future__ import annotations

from ..model import Case, Close, Expect, F, WaitEvents
from ..wire import BINARY, CLOSE, CONT, PING, PONG, TEXT
from . import Options, binary, case, echo, echo_of, fail, msg, pong, send, text

__all__ = ["cases"]

LENGTHS = (0, 125, 126, 127, 128, 65535, 65536)


def cases() -> list[Case]:
    return [*_framing(), *_pings(), *_reserved_bits(), *_opcodes(), *_fragmentation()]


# -- 1 framing ---------------------------------------------------------------------


def _framing() -> list[Case]:
    out: list[Case] = []
    for section, kind in ((1, "text"), (2, "binary")):
        for index, length in enumerate(LENGTHS, 1):
            data: str | bytes = "*" * length if kind == "text" else b"\xfe" * length
            out.append(
                echo(
                    f"1.{section}.{index}",
                    f"{kind} message, payload of {length} bytes",
                    [msg(data)],
                    [echo_of(data)],
                )
            )
        data = "*" * 65536 if kind == "text" else b"\xfe" * 65536
        out.append(
            echo(
                f"1.{section}.8",
                f"{kind} message of 65536 bytes, written in 997-byte chops",
                [msg(data, chop=997)],
                [echo_of(data)],
            )
        )
    # Every length encoding, one byte per write: the header arrives in pieces.
    for section, kind in ((3, "text"), (4, "binary")):
        for index, length in enumerate((0, 1, 125, 126, 127, 128, 1000), 1):
            data = "κ" * (length // 2) + "*" * (length % 2) if kind == "text" else bytes(length)
            out.append(
                echo(
                    f"1.{section}.{index}",
                    f"{kind} message of {length} bytes, written one byte per write",
                    [msg(data, chop=1)],
                    [echo_of(data)],
                )
            )
        for index, length in enumerate((65535, 65536), 8):
            data = "µ" * (length // 2) + "*" * (length % 2) if kind == "text" else bytes(length)
            out.append(
                echo(
                    f"1.{section}.{index}",
                    f"{kind} message of {length} bytes, written one byte per write",
                    [msg(data, chop=1)],
                    [echo_of(data)],
                    Options(slow=True, timeout=120),
                )
            )
    # Lengths up to 64 KiB in odd-sized writes.
    for index, length in enumerate((2, 3, 200, 1000, 4095, 4096, 16384, 32769, 65534), 1):
        text_data = ("€" * length)[: length // 3] + "*" * (length % 3)
        binary_data = bytes(i % 251 for i in range(length))
        out.append(
            echo(
                f"1.5.{index}",
                f"text message of {len(text_data.encode())} bytes and binary message of "
                f"{length} bytes, written in 7-byte chops",
                [msg(text_data, chop=7), msg(binary_data, chop=7)],
                [text(text_data), binary(binary_data)],
            )
        )
    # Broken or odd frame headers.
    out += [
        fail(
            "1.6.1",
            "64-bit payload length with its most significant bit set",
            [send(F(BINARY, b"", length_form="64", declared_length=1 << 63))],
        ),
        fail(
            "1.6.2",
            "a frame with the wrong masking for the sender's role (RFC 6455 §5.1)",
            [send(F(TEXT, b"wrongly masked", wrong_mask=True))],
        ),
        fail(
            "1.6.3",
            "a valid message, then a frame with the wrong masking",
            [msg("Hello"), send(F(TEXT, b"wrongly masked", wrong_mask=True))],
            before=[text("Hello")],
        ),
    ]
    for index, (length, form) in enumerate(((5, "16"), (5, "64"), (200, "64")), 4):
        out.append(
            case(
                f"1.6.{index}",
                f"a {length}-byte text message whose length uses the {form}-bit encoding "
                "(RFC 6455 §5.2 wants the minimal one; receivers may be lenient)",
                [send(F(TEXT, b"*" * length, length_form=form))],
                Expect(
                    ok=((text("*" * length),),),
                    informational=True,
                    closed_by="either",
                    codes=frozenset({1000, 1002}),
                ),
            )
        )
    return out


# -- 2 pings and pongs ---------------------------------------------------------------


def _pings() -> list[Case]:
    hello = b"Hello, world!"
    blob = b"\x00\xff\xfe\xfd\xfc\xfb\x00\xff"
    ten = [f"payload-{i}".encode() for i in range(10)]
    sizes = range(126)
    return [
        echo("2.1", "ping without payload", [send(F(PING))], [pong()]),
        echo("2.2", "ping with a small text payload", [send(F(PING, hello))], [pong(hello)]),
        echo("2.3", "ping with a small binary payload", [send(F(PING, blob))], [pong(blob)]),
        echo(
            "2.4",
            "ping with a binary payload of 125 bytes",
            [send(F(PING, b"\xfe" * 125))],
            [pong(b"\xfe" * 125)],
        ),
        fail("2.5", "ping with a payload of 126 bytes", [send(F(PING, b"\xfe" * 126))]),
        echo(
            "2.6",
            "ping with a 125-byte payload, written one byte per write",
            [send(F(PING, b"\xfe" * 125), chop=1, delay=0.0005)],
            [pong(b"\xfe" * 125)],
        ),
        echo("2.7", "unsolicited pong without payload", [send(F(PONG))], []),
        echo("2.8", "unsolicited pong with payload", [send(F(PONG, b"unsolicited"))], []),
        echo(
            "2.9",
            "unsolicited pong, then a ping",
            [send(F(PONG, b"unsolicited")), send(F(PING, b"ping payload"))],
            [pong(b"ping payload")],
        ),
        case(
            "2.10",
            "10 pings in a row; answering only the last is allowed (RFC 6455 §5.5.3)",
            [send(*(F(PING, p) for p in ten))],
            Expect(ok=(tuple(pong(p) for p in ten),), non_strict=((pong(ten[-1]),),)),
        ),
        case(
            "2.11",
            "10 pings in a row, written one byte per write",
            [send(*(F(PING, p) for p in ten), chop=1)],
            Expect(ok=(tuple(pong(p) for p in ten),), non_strict=((pong(ten[-1]),),)),
        ),
        echo(
            "2.12",
            "126 pings in a row, with every payload size from 0 to 125 bytes",
            [send(*(F(PING, bytes([n % 256]) * n) for n in sizes))],
            [pong(bytes([n % 256]) * n) for n in sizes],
        ),
        fail(
            "2.13",
            "a valid message, then a ping of 126 bytes",
            [msg("Hello"), send(F(PING, b"*" * 126))],
            before=[text("Hello")],
        ),
        fail(
            "2.14",
            "ping of 200 bytes in the 64-bit length encoding",
            [send(F(PING, b"*" * 200, length_form="64"))],
        ),
    ]


# -- 3 reserved bits ----------------------------------------------------------------------

_KINDS = {
    "text": F(TEXT, b"Hello, world!"),
    "binary": F(BINARY, b"\x00\xff\xfe"),
    "ping": F(PING, b"ping"),
    "pong": F(PONG, b"pong"),
    "close": F(CLOSE, b"\x03\xe8"),
}
_BITS = {4: "RSV1", 2: "RSV2", 1: "RSV3"}


def _with_rsv(frame: F, rsv: int) -> F:
    return F(frame.opcode, frame.payload, fin=frame.fin, rsv=rsv)


def _reserved_bits() -> list[Case]:
    out: list[Case] = []
    index = 0
    for rsv, bit in _BITS.items():
        for kind, frame in _KINDS.items():
            index += 1
            out.append(
                fail(
                    f"3.1.{index}",
                    f"{kind} frame with {bit} set, no extension agreed",
                    [send(_with_rsv(frame, rsv))],
                )
            )
            out.append(
                fail(
                    f"3.2.{index}",
                    f"a valid message, then a {kind} frame with {bit} set, then a ping",
                    [msg("Hello"), send(_with_rsv(frame, rsv)), send(F(PING, b"after"))],
                    before=[text("Hello")],
                )
            )
    for index, rsv in enumerate((3, 5, 6, 7), 1):
        out.append(
            fail(
                f"3.3.{index}",
                f"a valid message, then a text frame with RSV bits {rsv:03b}, "
                "all written one byte per write",
                [
                    msg("Hello"),
                    send(F(TEXT, b"Hello, world!", rsv=rsv), F(PING, b"after"), chop=1),
                ],
                before=[text("Hello")],
            )
        )
    for index, (rsv, bit) in enumerate(_BITS.items(), 1):
        out.append(
            fail(
                f"3.4.{index}",
                f"fragmented text message whose continuation frame has {bit} set",
                [send(F(TEXT, b"frag1", fin=False), F(CONT, b"frag2", rsv=rsv))],
            )
        )
    return out


# -- 4 opcodes ------------------------------------------------------------------------------


def _opcodes() -> list[Case]:
    out: list[Case] = []
    for section, opcodes, kind in ((1, range(3, 8), "data"), (2, range(11, 16), "control")):
        index = 0
        for opcode in opcodes:
            index += 1
            out.append(
                fail(
                    f"4.{section}.{index}",
                    f"reserved {kind} opcode {opcode:#x}, empty",
                    [send(F(opcode))],
                )
            )
            index += 1
            out.append(
                fail(
                    f"4.{section}.{index}",
                    f"reserved {kind} opcode {opcode:#x} with a payload",
                    [send(F(opcode, b"reserved opcode payload"))],
                )
            )
            index += 1
            out.append(
                fail(
                    f"4.{section}.{index}",
                    f"a valid message, then reserved {kind} opcode {opcode:#x}, then a ping",
                    [msg("Hello"), send(F(opcode, b"payload"), F(PING, b"after"), chop="frame")],
                    before=[text("Hello")],
                )
            )
    for index, opcode in enumerate((3, 11), 1):
        out.append(
            fail(
                f"4.3.{index}",
                f"reserved opcode {opcode:#x} in the middle of a fragmented message",
                [send(F(TEXT, b"frag1", fin=False), F(opcode, b""), F(CONT, b"frag2"))],
            )
        )
    return out


# -- 5 fragmentation -------------------------------------------------------------------------


def _fragmentation() -> list[Case]:
    frag = (F(TEXT, b"fragment1", fin=False), F(CONT, b"fragment2"))
    with_ping = (frag[0], F(PING, b"pongme!"), frag[1])
    whole = text("fragment1fragment2")
    out = [
        fail("5.1", "ping in 2 fragments", [send(F(PING, b"frag1", fin=False), F(CONT, b"f2"))]),
        fail("5.2", "pong in 2 fragments", [send(F(PONG, b"frag1", fin=False), F(CONT, b"f2"))]),
    ]
    for number, chop in ((3, None), (4, "frame"), (5, 1)):
        out.append(
            echo(
                f"5.{number}",
                f"text message in 2 fragments ({_chops(chop)})",
                [send(*frag, chop=chop)],
                [whole],
            )
        )
    for number, chop in ((6, None), (7, "frame"), (8, 1)):
        out.append(
            echo(
                f"5.{number}",
                f"text message in 2 fragments with a ping in between ({_chops(chop)})",
                [send(*with_ping, chop=chop)],
                [pong(b"pongme!"), whole],
            )
        )
    orphans = ((9, True), (12, False))
    for start, fin in orphans:
        for offset, chop in enumerate((None, "frame", 1)):
            out.append(
                fail(
                    f"5.{start + offset}",
                    f"continuation frame (FIN={int(fin)}) with nothing to continue, then a "
                    f"text message ({_chops(chop)})",
                    [
                        send(
                            F(CONT, b"non-continuation payload", fin=fin),
                            F(TEXT, b"Hello, world!"),
                            chop=chop,
                        )
                    ],
                )
            )
    out += [
        fail(
            "5.15",
            "text in 2 fragments, then a continuation (FIN=0) with nothing to continue, "
            "then a text message",
            [send(*frag, F(CONT, b"fragment3", fin=False), F(TEXT, b"fragment4"))],
            before=[whole],
        ),
    ]
    for number, fin in ((16, False), (17, True)):
        orphan = F(CONT, b"fragment1", fin=fin)
        out.append(
            fail(
                f"5.{number}",
                f"twice: a continuation (FIN={int(fin)}) with nothing to continue, then a "
                "text message in 2 fragments",
                [
                    send(orphan, F(TEXT, b"fragment2", fin=False), F(CONT, b"fragment3"))
                    for _ in "ab"
                ],
            )
        )
    out.append(
        fail(
            "5.18",
            "text message in 2 fragments, both with the text opcode",
            [send(F(TEXT, b"fragment1", fin=False), F(TEXT, b"fragment2"))],
        )
    )
    five = [F(TEXT, b"fragment1", fin=False), F(CONT, b"fragment2", fin=False)]
    rest = [F(CONT, b"fragment3", fin=False), F(CONT, b"fragment4", fin=False)]
    for number, chop in ((19, None), (20, "frame")):
        out.append(
            echo(
                f"5.{number}",
                "text message in 5 fragments; pings after the 2nd and 4th, each answered "
                f"before the message goes on ({_chops(chop)})",
                [
                    send(*five, F(PING, b"pongme 1!"), chop=chop),
                    WaitEvents(1),
                    send(*rest, F(PING, b"pongme 2!"), chop=chop),
                    WaitEvents(2),
                    send(F(CONT, b"fragment5")),
                ],
                [
                    pong("pongme 1!"),
                    pong("pongme 2!"),
                    text("fragment1fragment2fragment3fragment4fragment5"),
                ],
            )
        )
    hello = "Hello-µ@ßöäüàá-UTF-8!!"
    bfrag = (F(BINARY, b"\x00\x01", fin=False), F(CONT, b"\xfe\xff"))
    out += [
        echo(
            "5.21", "binary message in 2 fragments", [send(*bfrag)], [binary(b"\x00\x01\xfe\xff")]
        ),
        echo(
            "5.22",
            "binary message in 2 fragments with a ping in between",
            [send(bfrag[0], F(PING, b"p"), bfrag[1])],
            [pong(b"p"), binary(b"\x00\x01\xfe\xff")],
        ),
        echo(
            "5.23",
            "text message in 1-byte fragments (code points split across frames)",
            [msg(hello, fragment=1)],
            [text(hello)],
        ),
        echo(
            "5.24",
            "binary message of 256 bytes in 1-byte fragments",
            [msg(bytes(range(256)), fragment=1)],
            [binary(bytes(range(256)))],
        ),
        fail(
            "5.25", "close in 2 fragments", [send(F(CLOSE, b"\x03", fin=False), F(CONT, b"\xe8"))]
        ),
        fail(
            "5.26",
            "a binary frame inside an unfinished text message",
            [send(F(TEXT, b"text", fin=False), F(BINARY, b"bin"), F(CONT, b"more"))],
        ),
        fail(
            "5.27",
            "a text frame inside an unfinished binary message",
            [send(F(BINARY, b"bin", fin=False), F(TEXT, b"text"), F(CONT, b"more"))],
        ),
        echo(
            "5.28",
            "text message with empty fragments and an unsolicited pong in the middle",
            [
                send(
                    F(TEXT, b"", fin=False),
                    F(CONT, b"a", fin=False),
                    F(PONG, b"unsolicited"),
                    F(CONT, b"", fin=False),
                    F(CONT, b"b"),
                )
            ],
            [text("ab")],
        ),
        echo(
            "5.29",
            "binary message in 100 fragments with a ping after each",
            [
                send(
                    *(
                        frame
                        for i in range(100)
                        for frame in (
                            F(BINARY if i == 0 else CONT, bytes([i]), fin=i == 99),
                            F(PING, str(i).encode()),
                        )
                    )
                )
            ],
            [*(pong(str(i)) for i in range(100)), binary(bytes(range(100)))],
        ),
        echo(
            "5.30",
            "a fragmented message left unfinished, then close: the close is answered "
            "and the half message dropped",
            [send(F(TEXT, b"fragment1", fin=False)), Close(1000)],
            [],
        ),
    ]
    return out


def _chops(chop: object) -> str:
    if chop is None:
        return "all in one write"
    if chop == "frame":
        return "one write per frame"
    return f"{chop}-byte writes"
