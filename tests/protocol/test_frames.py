from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from trio_ws.exceptions import ProtocolError
from trio_ws.protocol.frames import (
    Close,
    CloseCode,
    Frame,
    Opcode,
    _py_apply_mask,
    apply_mask,
    is_valid_close_code,
    parse_header,
    parse_single,
    serialize_header,
)

MASK = b"\x37\xfa\x21\x3d"

# RFC 6455 §5.7, byte for byte.
RFC_EXAMPLES = [
    pytest.param(Frame(Opcode.TEXT, b"Hello"), None, bytes.fromhex("810548656c6c6f"), id="text"),
    pytest.param(
        Frame(Opcode.TEXT, b"Hello"), MASK, bytes.fromhex("818537fa213d7f9f4d5158"), id="masked"
    ),
    pytest.param(
        Frame(Opcode.TEXT, b"Hel", fin=False), None, bytes.fromhex("010348656c"), id="frag-1"
    ),
    pytest.param(Frame(Opcode.CONT, b"lo"), None, bytes.fromhex("80026c6f"), id="frag-2"),
    pytest.param(Frame(Opcode.PING, b"Hello"), None, bytes.fromhex("890548656c6c6f"), id="ping"),
    pytest.param(
        Frame(Opcode.PONG, b"Hello"), MASK, bytes.fromhex("8a8537fa213d7f9f4d5158"), id="pong"
    ),
    pytest.param(
        Frame(Opcode.BINARY, b"\xab" * 256), None, b"\x82\x7e\x01\x00" + b"\xab" * 256, id="256"
    ),
    pytest.param(
        Frame(Opcode.BINARY, b"\xcd" * 65536),
        None,
        b"\x82\x7f\x00\x00\x00\x00\x00\x01\x00\x00" + b"\xcd" * 65536,
        id="64k",
    ),
]


@pytest.mark.parametrize(("frame", "mask", "wire"), RFC_EXAMPLES)
def test_rfc_examples_serialize(frame: Frame, mask: bytes | None, wire: bytes) -> None:
    assert frame.serialize(mask_key=mask) == wire


@pytest.mark.parametrize(("frame", "mask", "wire"), RFC_EXAMPLES)
def test_rfc_examples_parse(frame: Frame, mask: bytes | None, wire: bytes) -> None:
    assert parse_single(wire, masked=mask is not None) == frame


@given(
    payload=st.binary(max_size=70_000),
    fin=st.booleans(),
    rsv=st.tuples(st.booleans(), st.booleans(), st.booleans()),
    opcode=st.sampled_from(list(Opcode)),
    key=st.none() | st.binary(min_size=4, max_size=4),
)
@example(payload=b"x" * 125, fin=True, rsv=(False,) * 3, opcode=Opcode.BINARY, key=None)
@example(payload=b"x" * 126, fin=True, rsv=(False,) * 3, opcode=Opcode.BINARY, key=None)
@example(payload=b"x" * 65535, fin=True, rsv=(False,) * 3, opcode=Opcode.BINARY, key=MASK)
@example(payload=b"x" * 65536, fin=True, rsv=(False,) * 3, opcode=Opcode.BINARY, key=MASK)
def test_frame_round_trip(
    payload: bytes,
    fin: bool,
    rsv: tuple[bool, bool, bool],
    opcode: Opcode,
    key: bytes | None,
) -> None:
    frame = Frame(opcode, payload, fin=fin, rsv1=rsv[0], rsv2=rsv[1], rsv3=rsv[2])
    assert parse_single(frame.serialize(mask_key=key), masked=key is not None) == frame


@pytest.mark.parametrize(
    ("length", "header"),
    [
        (0, b"\x82\x00"),
        (125, b"\x82\x7d"),
        (126, b"\x82\x7e\x00\x7e"),
        (65535, b"\x82\x7e\xff\xff"),
        (65536, b"\x82\x7f\x00\x00\x00\x00\x00\x01\x00\x00"),
        (2**32, b"\x82\x7f\x00\x00\x00\x01\x00\x00\x00\x00"),
    ],
)
def test_length_encodings(length: int, header: bytes) -> None:
    assert serialize_header(0x82, length) == header
    assert parse_header(header) == (0x82, length, None, len(header))


def test_parse_header_waits_for_every_part() -> None:
    wire = serialize_header(0x82, 70_000, MASK)
    for cut in range(len(wire)):
        assert parse_header(wire[:cut]) is None
    assert parse_header(wire) == (0x82, 70_000, MASK, 14)
    assert parse_header(b"xx" + wire, 2) == (0x82, 70_000, MASK, 14)


def test_parse_header_rejects_64_bit_length_with_msb() -> None:
    with pytest.raises(ProtocolError, match="most significant bit"):
        parse_header(b"\x82\x7f\x80" + b"\x00" * 7)


def test_parse_single_rejects_bad_input() -> None:
    with pytest.raises(ProtocolError, match="incomplete"):
        parse_single(b"\x81", masked=False)
    with pytest.raises(ProtocolError, match="exactly one"):
        parse_single(b"\x81\x01ab", masked=False)
    with pytest.raises(ProtocolError, match="masking"):
        parse_single(b"\x81\x00", masked=True)
    with pytest.raises(ProtocolError, match="opcode"):
        parse_single(b"\x83\x00", masked=False)


@given(data=st.binary(max_size=300), key=st.binary(min_size=4, max_size=4))
def test_mask_is_an_involution(data: bytes, key: bytes) -> None:
    masked = apply_mask(data, key)
    assert len(masked) == len(data)
    assert apply_mask(masked, key) == data
    assert masked == bytes(b ^ key[i % 4] for i, b in enumerate(data))
    assert _py_apply_mask(data, key) == masked


def test_mask_accepts_buffers_and_rejects_bad_keys() -> None:
    data = bytearray(b"Hello")
    assert apply_mask(data, MASK) == bytes.fromhex("7f9f4d5158")
    assert apply_mask(memoryview(b"Hello"), MASK) == bytes.fromhex("7f9f4d5158")
    with pytest.raises(ValueError, match="4 bytes"):
        apply_mask(b"abc", b"123")


VALID_CODES = [1000, 1001, 1002, 1003, *range(1007, 1015), 3000, 3999, 4000, 4999]
INVALID_CODES = [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535]


@pytest.mark.parametrize("code", VALID_CODES)
def test_valid_close_codes_round_trip(code: int) -> None:
    assert is_valid_close_code(code)
    close = Close(code, "reason ✓")
    assert Close.parse(close.serialize()) == close


@pytest.mark.parametrize("code", INVALID_CODES)
def test_invalid_close_codes_are_rejected_both_ways(code: int) -> None:
    assert not is_valid_close_code(code)
    with pytest.raises(ProtocolError, match=f"invalid close code {code}"):
        Close.parse(code.to_bytes(2, "big"))
    if code != 1005:
        with pytest.raises(ValueError, match="may not be sent"):
            Close(code).serialize()


def test_close_payload_edge_cases() -> None:
    assert Close.parse(b"") == Close(CloseCode.NO_STATUS_RCVD, "")
    assert Close(CloseCode.NO_STATUS_RCVD).serialize() == b""
    with pytest.raises(ProtocolError, match="1 byte"):
        Close.parse(b"\x03")
    with pytest.raises(UnicodeDecodeError):
        Close.parse(b"\x03\xe8\xff")
    assert len(Close(1000, "x" * 123).serialize()) == 125
    with pytest.raises(ValueError, match="123 bytes"):
        Close(1000, "x" * 124).serialize()


@pytest.mark.parametrize(
    ("close", "text"),
    [
        (Close(1000), "1000 (OK)"),
        (Close(1001, "bye"), "1001 (going away) bye"),
        (Close(1011, "keepalive ping timeout"), "1011 (internal error) keepalive ping timeout"),
        (Close(1005), "1005 (no status received [internal])"),
        (Close(3001), "3001 (registered)"),
        (Close(4321, "x"), "4321 (private use) x"),
        (Close(2000), "2000 (unknown)"),
    ],
)
def test_close_reads_well(close: Close, text: str) -> None:
    assert str(close) == text
