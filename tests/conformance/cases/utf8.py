"""Category 6: UTF-8 in text messages (RFC 6455 §5.6, §8.1; RFC 3629).

The byte sequences are the classes of Markus Kuhn's public "UTF-8 decoder
capability and stress test", which Autobahn's 6.x cases use too: boundary
code points, malformed sequences, overlong forms, surrogates,
noncharacters. Whether each is valid is stated in the table and checked
against the peer's own RFC 3629 validator when the table is built.

Invalid sequences are played three ways:

- 6.3-6.21 as one text frame: the implementation must fail with 1007;
- 6.24 embedded in a message sent one byte per fragment, and 6.25 in one
  frame written in two parts: the peer stops right after the first byte
  that makes the message invalid and waits; a close that comes only once
  the rest was sent is NON-STRICT ("fail fast", RFC 6455 §8.1).
"""

from __future__ import annotations

from ..model import Action, Case, F, Mark, SendPrefix, SendRest, WaitClose
from ..wire import CONT, TEXT, is_valid_utf8, utf8_fail_index
from . import echo, fail, send, text

__all__ = ["SEQUENCES", "cases"]

KOSME = "κόσμε".encode()
HELLO = "Hello-µ@ßöäüàá-UTF-8!!".encode()


def _hex(text: str) -> bytes:
    return bytes.fromhex(text)


def _repeat(start: int, stop: int, suffix: bytes = b"") -> bytes:
    return b"".join(bytes([b]) + suffix for b in range(start, stop + 1))


# (section, valid, description, [byte sequences]); 6.5 onwards as in Kuhn's test.
SEQUENCES: list[tuple[int, bool, str, list[bytes]]] = [
    (5, True, "valid samples", [KOSME, HELLO, "ἀρχή 𝄞 — €5, ∮ E⋅da = Q".encode()]),
    (
        7,
        True,
        "first code point of each length",
        [_hex(h) for h in ("00", "c280", "e0a080", "f0908080")],
    ),
    (8, False, "first 5- and 6-byte sequences", [_hex("f888808080"), _hex("fc8480808080")]),
    (
        9,
        True,
        "last code point of each length",
        [_hex(h) for h in ("7f", "dfbf", "efbfbf", "f48fbfbf")],
    ),
    (
        10,
        False,
        "beyond U+10FFFF in 4, 5, 6 bytes",
        [_hex(h) for h in ("f7bfbfbf", "fbbfbfbfbf", "fdbfbfbfbfbf")],
    ),
    (
        11,
        True,
        "other boundaries: U+D7FF, U+E000, U+FFFD, U+10FFFF",
        [_hex(h) for h in ("ed9fbf", "ee8080", "efbfbd", "f48fbfbf")],
    ),
    (11, False, "U+110000", [_hex("f4908080")]),
    (
        12,
        False,
        "unexpected continuation bytes",
        [
            _hex("80"),
            _hex("bf"),
            _hex("80bf"),
            _hex("80bf80"),
            _hex("80bf80bf"),
            _hex("80bf80bf80"),
            _hex("80bf80bf80bf"),
            _repeat(0x80, 0xBF),
        ],
    ),
    (
        13,
        False,
        "lonely start bytes, each followed by a space",
        [
            _repeat(0xC0, 0xDF, b" "),
            _repeat(0xE0, 0xEF, b" "),
            _repeat(0xF0, 0xF7, b" "),
            _repeat(0xF8, 0xFB, b" "),
            _repeat(0xFC, 0xFD, b" "),
        ],
    ),
    (
        14,
        False,
        "sequences with their last continuation byte missing",
        [
            _hex(h)
            for h in (
                "c0",
                "e080",
                "f08080",
                "f8808080",
                "fc80808080",
                "df",
                "efbf",
                "f7bfbf",
                "fbbfbfbf",
                "fdbfbfbfbf",
            )
        ],
    ),
    (
        15,
        False,
        "all of 6.14 concatenated",
        [_hex("c0e080f08080f8808080fc80808080dfefbff7bfbffbbfbfbffdbfbfbfbf")],
    ),
    (16, False, "impossible bytes", [_hex("fe"), _hex("ff"), _hex("fefeffff")]),
    (
        17,
        False,
        "overlong forms of '/'",
        [_hex(h) for h in ("c0af", "e080af", "f08080af", "f8808080af", "fc80808080af")],
    ),
    (
        18,
        False,
        "maximum overlong sequences",
        [_hex(h) for h in ("c1bf", "e09fbf", "f08fbfbf", "f887bfbfbf", "fc83bfbfbfbf")],
    ),
    (
        19,
        False,
        "overlong NUL",
        [_hex(h) for h in ("c080", "e08080", "f0808080", "f880808080", "fc8080808080")],
    ),
    (
        20,
        False,
        "single UTF-16 surrogates",
        [_hex(h) for h in ("eda080", "edadbf", "edae80", "edafbf", "edb080", "edbe80", "edbfbf")],
    ),
    (
        21,
        False,
        "paired UTF-16 surrogates",
        [
            _hex(high + low)
            for high in ("eda080", "edadbf", "edae80", "edafbf")
            for low in ("edb080", "edbfbf")
        ],
    ),
    (
        22,
        True,
        "noncharacters (valid UTF-8): U+FFFE, U+FFFF and U+nFFFE/U+nFFFF of planes 1-16",
        [
            _hex("efbfbe"),
            _hex("efbfbf"),
            *(
                chr(plane << 16 | low).encode()
                for plane in range(1, 17)
                for low in (0xFFFE, 0xFFFF)
            ),
        ],
    ),
    (
        23,
        True,
        "specials: U+FFFD, BOM, U+FDD0, U+2028, NUL inside text",
        [_hex("efbfbd"), _hex("efbbbf"), _hex("efb790"), _hex("e280a8"), b"a\x00b"],
    ),
]


def cases() -> list[Case]:
    out: list[Case] = []
    hello = HELLO.decode()
    out += [
        echo("6.1.1", "empty text message", [send(F(TEXT))], [text("")]),
        echo(
            "6.1.2",
            "empty text message in 3 empty fragments",
            [send(F(TEXT, fin=False), F(CONT, fin=False), F(CONT))],
            [text("")],
        ),
        echo(
            "6.1.3",
            "text message: empty fragment, non-empty fragment, empty fragment",
            [send(F(TEXT, fin=False), F(CONT, b"middle frame payload", fin=False), F(CONT))],
            [text("middle frame payload")],
        ),
        echo("6.2.1", "valid UTF-8 in one frame", [send(F(TEXT, HELLO))], [text(hello)]),
        echo(
            "6.2.2",
            "valid UTF-8 in 2 fragments split on a code point boundary",
            [send(F(TEXT, HELLO[:14], fin=False), F(CONT, HELLO[14:]))],
            [text(hello)],
        ),
        echo(
            "6.2.3",
            "valid UTF-8 in 1-byte fragments",
            [send(*_one_byte_fragments(HELLO))],
            [text(hello)],
        ),
        echo(
            "6.2.4",
            "valid UTF-8 (κόσμε) in 1-byte fragments",
            [send(*_one_byte_fragments(KOSME))],
            [text(KOSME)],
        ),
    ]
    bad = KOSME + _hex("eda080") + b"edited"
    out += [
        fail("6.3.1", "invalid UTF-8 (a surrogate) in one frame", [send(F(TEXT, bad))], code=1007),
        fail(
            "6.3.2",
            "invalid UTF-8 (a surrogate) in 1-byte fragments",
            [send(*_one_byte_fragments(bad))],
            code=1007,
        ),
    ]
    # 6.4: fail fast, Autobahn's four scenarios with U+110000 (f4 90 80 80).
    part1, part2, part3 = KOSME, _hex("f4908080"), b"edited"
    out += [
        _fail_fast(
            "6.4.1",
            "3 fragments: valid, U+110000, rest; the close must come before the rest",
            [send(F(TEXT, part1, fin=False), F(CONT, part2, fin=False))],
            [send(F(CONT, part3))],
        ),
        _fail_fast(
            "6.4.2",
            "3 fragments split inside the bad sequence (…f4 | 90 | 80 80 …); the close "
            "must come before the third",
            [send(F(TEXT, part1 + part2[:1], fin=False), F(CONT, part2[1:2], fin=False))],
            [send(F(CONT, part2[2:] + part3))],
        ),
        _fail_fast(
            "6.4.3",
            "one frame written in 3 parts: valid, U+110000, rest",
            [SendPrefix(F(TEXT, part1 + part2 + part3), len(part1 + part2))],
            [SendRest()],
        ),
        _fail_fast(
            "6.4.4",
            "one frame written in parts split inside the bad sequence (…f4 90 | 80 80 …)",
            [SendPrefix(F(TEXT, part1 + part2 + part3), len(part1) + 2)],
            [SendRest()],
        ),
    ]
    # 6.6: every prefix of κόσμε, valid or truncated.
    for index in range(1, len(KOSME) + 1):
        out.append(_one_frame(f"6.6.{index}", f"the first {index} bytes of κόσμε", KOSME[:index]))
    invalid: list[tuple[str, bytes]] = []
    counters: dict[int, int] = {}
    for section, valid, description, sequences in SEQUENCES:
        for sequence in sequences:
            counters[section] = counters.get(section, 0) + 1
            case_id = f"6.{section}.{counters[section]}"
            assert is_valid_utf8(sequence) is valid, f"{case_id}: validity misstated"
            out.append(_one_frame(case_id, f"{description}: {sequence.hex(' ')}", sequence))
            if not valid:
                invalid.append((case_id, sequence))
    invalid.insert(0, ("6.3.1", _hex("eda080")))
    for index, (origin, sequence) in enumerate(invalid, 1):
        payload = KOSME + sequence + b"edited"
        cut = utf8_fail_index(payload)
        assert cut is not None, origin
        assert cut < len(payload), origin
        frames = _one_byte_fragments(payload)
        out.append(
            _fail_fast(
                f"6.24.{index}",
                f"the bad bytes of {origin} ({sequence.hex(' ')}) inside a message sent in "
                "1-byte fragments; the close must come before the fragment after the first "
                "bad byte",
                [send(*frames[: cut + 1])],
                [send(*frames[cut + 1 :])],
            )
        )
        out.append(
            _fail_fast(
                f"6.25.{index}",
                f"the bad bytes of {origin} ({sequence.hex(' ')}) inside one frame, written "
                "up to the first bad byte, then the rest",
                [SendPrefix(F(TEXT, payload), cut + 1)],
                [SendRest()],
            )
        )
    return out


def _one_byte_fragments(payload: bytes) -> list[F]:
    last = len(payload) - 1
    return [
        F(TEXT if i == 0 else CONT, payload[i : i + 1], fin=i == last) for i in range(len(payload))
    ]


def _one_frame(case_id: str, description: str, payload: bytes) -> Case:
    if is_valid_utf8(payload):
        return echo(case_id, f"valid: {description}", [send(F(TEXT, payload))], [text(payload)])
    return fail(case_id, f"invalid: {description}", [send(F(TEXT, payload))], code=1007)


def _fail_fast(case_id: str, description: str, head: list[Action], tail: list[Action]) -> Case:
    return fail(
        case_id,
        description,
        [*head, WaitClose(), Mark(), *tail],
        code=1007,
        fail_fast=True,
    )
