"""RFC 6455 §5 frames: opcodes, close codes and payloads, headers, masking.

Everything here is a pure function of its arguments. The state machine in
:mod:`trio_ws.protocol.machine` strings these together; this module never
decides what a frame *means* for the connection.
"""

from __future__ import annotations

import enum
import os
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple, Protocol, TypeAlias

from ..exceptions import ProtocolError

if TYPE_CHECKING:
    from collections.abc import Callable

Buffer: TypeAlias = bytes | bytearray | memoryview

__all__ = [
    "Close",
    "CloseCode",
    "Frame",
    "Opcode",
    "apply_mask",
    "is_valid_close_code",
    "parse_header",
    "parse_single",
    "serialize_header",
]


class Opcode(enum.IntEnum):
    """Frame opcodes (RFC 6455 §5.2)."""

    CONT = 0x0
    TEXT = 0x1
    BINARY = 0x2
    CLOSE = 0x8
    PING = 0x9
    PONG = 0xA


DATA_OPCODES = frozenset({Opcode.CONT, Opcode.TEXT, Opcode.BINARY})
CONTROL_OPCODES = frozenset({Opcode.CLOSE, Opcode.PING, Opcode.PONG})


class CloseCode(enum.IntEnum):
    """Close status codes (RFC 6455 §7.4.1 and the IANA registry)."""

    NORMAL_CLOSURE = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    UNSUPPORTED_DATA = 1003
    # 1004 is reserved.
    NO_STATUS_RCVD = 1005
    ABNORMAL_CLOSURE = 1006
    INVALID_DATA = 1007
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    MANDATORY_EXTENSION = 1010
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012
    TRY_AGAIN_LATER = 1013
    BAD_GATEWAY = 1014
    TLS_HANDSHAKE = 1015


CLOSE_CODE_EXPLANATIONS: dict[int, str] = {
    1000: "OK",
    1001: "going away",
    1002: "protocol error",
    1003: "unsupported data",
    1005: "no status received [internal]",
    1006: "connection closed abnormally [internal]",
    1007: "invalid frame payload data",
    1008: "policy violation",
    1009: "message too big",
    1010: "extension required",
    1011: "internal error",
    1012: "service restart",
    1013: "try again later",
    1014: "bad gateway",
    1015: "TLS handshake failure [internal]",
}

# RFC 6455 §7.4.1-2: 1004-1006 and 1015 must never appear on the wire; 1016-2999
# are reserved for future RFCs; 0-999 and 5000+ are unused.
_VALID_WIRE_CODES = frozenset({1000, 1001, 1002, 1003, *range(1007, 1015)})


def is_valid_close_code(code: int) -> bool:
    """Tell whether ``code`` may appear in a close frame on the wire."""
    return code in _VALID_WIRE_CODES or 3000 <= code <= 4999


@dataclass(frozen=True, slots=True)
class Close:
    """A close frame's payload: a status code and a reason (RFC 6455 §5.5.1).

    A close frame with an empty payload is represented as code 1005
    (``NO_STATUS_RCVD``) and an empty reason; it serializes back to an empty
    payload.
    """

    code: int
    reason: str = ""

    def __str__(self) -> str:
        if 3000 <= self.code < 4000:
            explanation = "registered"
        elif 4000 <= self.code < 5000:
            explanation = "private use"
        else:
            explanation = CLOSE_CODE_EXPLANATIONS.get(self.code, "unknown")
        text = f"{self.code} ({explanation})"
        return f"{text} {self.reason}" if self.reason else text

    @classmethod
    def parse(cls, payload: bytes) -> Close:
        """Decode a close frame's payload.

        Raises:
            ProtocolError: a 1-byte payload, or a code that may not be sent.
            UnicodeDecodeError: the reason is not valid UTF-8 (close with 1007).
        """
        if len(payload) >= 2:
            (code,) = _UNPACK_H(payload[:2])
            if not is_valid_close_code(code):
                raise ProtocolError(f"invalid close code {code}")
            return cls(code, payload[2:].decode())
        if not payload:
            return cls(CloseCode.NO_STATUS_RCVD, "")
        raise ProtocolError("close frame payload of 1 byte")

    def serialize(self) -> bytes:
        """Encode as a close frame's payload.

        Raises:
            ValueError: the code may not be sent, or the payload would exceed
                the 125 bytes allowed in a control frame.
        """
        if self.code == CloseCode.NO_STATUS_RCVD and not self.reason:
            return b""
        if not is_valid_close_code(self.code):
            raise ValueError(f"close code {self.code} may not be sent on the wire")
        payload = _PACK_H(self.code) + self.reason.encode()
        if len(payload) > 125:
            raise ValueError("close reason is longer than 123 bytes of UTF-8")
        return payload


_PACK_H = struct.Struct("!H").pack
_UNPACK_H = struct.Struct("!H").unpack
_PACK_BB = struct.Struct("!BB").pack
_PACK_BBH = struct.Struct("!BBH").pack
_PACK_BBQ = struct.Struct("!BBQ").pack
_UNPACK_H_FROM = struct.Struct("!H").unpack_from
_UNPACK_Q_FROM = struct.Struct("!Q").unpack_from


def serialize_header(first_byte: int, length: int, mask_key: bytes | None = None) -> bytes:
    """Build a frame header: FIN/RSV/opcode byte, length, and the mask key if any.

    ``first_byte`` is ``FIN << 7 | RSV1 << 6 | RSV2 << 5 | RSV3 << 4 | opcode``.
    """
    mask_bit = 0x80 if mask_key is not None else 0
    if length < 126:
        header = _PACK_BB(first_byte, mask_bit | length)
    elif length < 65536:
        header = _PACK_BBH(first_byte, mask_bit | 126, length)
    else:
        header = _PACK_BBQ(first_byte, mask_bit | 127, length)
    return header if mask_key is None else header + mask_key


def parse_header(
    data: bytes | bytearray, pos: int = 0
) -> tuple[int, int, bytes | None, int] | None:
    """Read the frame header at ``data[pos:]``.

    Returns ``(first_byte, payload_length, mask_key, header_length)``, or None
    when the header is not complete yet.

    Raises:
        ProtocolError: a 64-bit length with its most significant bit set
            (RFC 6455 §5.2).
    """
    available = len(data) - pos
    if available < 2:
        return None
    second = data[pos + 1]
    length = second & 0x7F
    header_length = 2
    if length == 126:
        if available < 4:
            return None
        (length,) = _UNPACK_H_FROM(data, pos + 2)
        header_length = 4
    elif length == 127:
        if available < 10:
            return None
        (length,) = _UNPACK_Q_FROM(data, pos + 2)
        if length >> 63:
            raise ProtocolError("payload length has its most significant bit set")
        header_length = 10
    if second & 0x80:
        if available < header_length + 4:
            return None
        mask_key = bytes(data[pos + header_length : pos + header_length + 4])
        header_length += 4
    else:
        mask_key = None
    return data[pos], length, mask_key, header_length


def _py_apply_mask(data: Buffer, mask: bytes) -> bytes:
    """XOR ``data`` with the 4-byte ``mask`` repeated (RFC 6455 §5.3).

    Python integers XOR in C, so this runs in linear time without a Python
    loop per byte; the C accelerator is several times faster still.
    """
    n = memoryview(data).nbytes
    if not n:
        return b""
    mask = bytes(mask)
    repeated = mask * ((n + 3) >> 2)
    if len(repeated) != n:
        repeated = repeated[:n]
    return (int.from_bytes(data, "little") ^ int.from_bytes(repeated, "little")).to_bytes(
        n, "little"
    )


def _py_mask_frame(header: bytes, data: Buffer, mask: bytes) -> bytes:
    """``header`` followed by ``data`` masked: a client frame, ready to send."""
    return header + _py_apply_mask(data, mask)


class MessageBufferType(Protocol):
    """``_speedups.MessageBuffer``: a message of known size written piece by
    piece, in order, into the bytes object :meth:`take` returns."""

    def __init__(self, size: int, /) -> None: ...
    def append(self, data: Buffer, mask: bytes | None, /) -> None: ...
    def take(self) -> bytes: ...
    @property
    def missing(self) -> int: ...


class _Speedups(NamedTuple):
    apply_mask: Callable[[Buffer, bytes], bytes]
    mask_frame: Callable[[bytes, Buffer, bytes], bytes]
    message_buffer: type[MessageBufferType] | None
    in_c: bool


def _load_speedups() -> _Speedups:
    python = _Speedups(_py_apply_mask, _py_mask_frame, None, False)
    if os.environ.get("TRIO_WS_NO_SPEEDUPS"):
        return python
    try:
        from .. import _speedups
    except ImportError:
        return python
    return _Speedups(_speedups.apply_mask, _speedups.mask_frame, _speedups.MessageBuffer, True)


#: The masking function without the check on the key's length, for callers
#: that always pass 4 bytes (the state machine): C when built, else Python.
#: mask_frame_unchecked(header, payload, mask) is ``header`` followed by the
#: masked payload, built in place in C (no copy to join the two).
#: MessageBuffer(size) assembles a received message in its final bytes
#: object (C only: in Python it would save nothing over joining the pieces).
_SPEEDUPS = _load_speedups()
apply_mask_unchecked: Callable[[Buffer, bytes], bytes] = _SPEEDUPS.apply_mask
mask_frame_unchecked: Callable[[bytes, Buffer, bytes], bytes] = _SPEEDUPS.mask_frame
MessageBuffer: type[MessageBufferType] | None = _SPEEDUPS.message_buffer
#: Whether the C accelerator is in use.
HAVE_SPEEDUPS: bool = _SPEEDUPS.in_c


def apply_mask(data: bytes | bytearray | memoryview, mask: bytes) -> bytes:
    """XOR ``data`` with the 4-byte ``mask`` repeated; masking and unmasking alike.

    Uses the C accelerator when it is built, unless the environment variable
    ``TRIO_WS_NO_SPEEDUPS`` is set.
    """
    if len(mask) != 4:
        raise ValueError("mask must be exactly 4 bytes")
    return apply_mask_unchecked(data, mask)


@dataclass(frozen=True, slots=True)
class Frame:
    """One WebSocket frame, unmasked.

    The state machine does not build these on its hot path; they exist for
    tests, tools and integrators who want to look at frames one by one.
    """

    opcode: Opcode
    payload: bytes
    fin: bool = True
    rsv1: bool = False
    rsv2: bool = False
    rsv3: bool = False

    def serialize(self, *, mask_key: bytes | None = None) -> bytes:
        """Encode the frame, masking the payload with ``mask_key`` if given."""
        first = (
            (0x80 if self.fin else 0)
            | (0x40 if self.rsv1 else 0)
            | (0x20 if self.rsv2 else 0)
            | (0x10 if self.rsv3 else 0)
            | self.opcode
        )
        header = serialize_header(first, len(self.payload), mask_key)
        if mask_key is None:
            return header + self.payload
        return header + apply_mask(self.payload, mask_key)


def parse_single(data: bytes, *, masked: bool) -> Frame:
    """Decode exactly one complete frame from ``data``.

    Raises:
        ProtocolError: the frame is incomplete, followed by extra bytes, has an
            unknown opcode, or its mask bit differs from ``masked``.
    """
    header = parse_header(data)
    if header is None:
        raise ProtocolError("incomplete frame header")
    first, length, mask_key, header_length = header
    if len(data) != header_length + length:
        raise ProtocolError("data is not exactly one frame")
    if (mask_key is not None) != masked:
        raise ProtocolError("incorrect masking")
    try:
        opcode = Opcode(first & 0x0F)
    except ValueError:
        raise ProtocolError(f"invalid opcode {first & 0x0F:#x}") from None
    payload = data[header_length:]
    if mask_key is not None:
        payload = apply_mask(payload, mask_key)
    return Frame(
        opcode,
        bytes(payload),
        fin=bool(first & 0x80),
        rsv1=bool(first & 0x40),
        rsv2=bool(first & 0x20),
        rsv3=bool(first & 0x10),
    )
