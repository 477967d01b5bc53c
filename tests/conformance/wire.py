"""The fuzzing peer's own wire format: frames, masking, UTF-8, HTTP, deflate.

Nothing here imports trio_ws. The peer judges our implementation, so it
must not share code with it: a bug in ``trio_ws.protocol`` would otherwise
hide itself. Everything is written from RFC 6455, RFC 3629 (UTF-8) and
RFC 7692 (permessage-deflate) directly, and kept deliberately plain.
"""

from __future__ import annotations

import base64
import hashlib
import re
import struct
import zlib
from dataclasses import dataclass

__all__ = [
    "CONT",
    "VALID_CLOSE_CODES_ON_WIRE",
    "DeflateCodec",
    "DeflateParams",
    "RawFrame",
    "WireError",
    "accept_key",
    "build_frame",
    "check_response_against_offer",
    "format_extensions",
    "is_valid_close_code",
    "is_valid_utf8",
    "mask",
    "parse_extensions",
    "parse_frame",
    "parse_http_head",
    "parse_pmd_params",
    "utf8_fail_index",
]

# Opcodes (RFC 6455 §5.2).
CONT, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class WireError(Exception):
    """Something on the wire breaks RFC 6455/7692 (raised by the peer's parsers)."""


def accept_key(key: str) -> str:
    """``Sec-WebSocket-Accept`` for a ``Sec-WebSocket-Key`` (RFC 6455 §4.2.2)."""
    return base64.b64encode(hashlib.sha1(key.encode("ascii") + GUID).digest()).decode("ascii")


def mask(data: bytes | bytearray | memoryview, key: bytes) -> bytes:
    """XOR ``data`` with the 4-byte ``key`` repeated (RFC 6455 §5.3)."""
    n = len(data)
    if not n:
        return b""
    stream = (key * (n // 4 + 1))[:n]
    value = int.from_bytes(data, "big") ^ int.from_bytes(stream, "big")
    return value.to_bytes(n, "big")


def build_frame(
    opcode: int,
    payload: bytes,
    *,
    fin: bool = True,
    rsv: int = 0,
    mask_key: bytes | None = None,
    length_form: str = "min",
    declared_length: int | None = None,
) -> bytes:
    """Serialize one frame.

    ``rsv`` holds the three reserved bits as a number 0-7 (RSV1 = 4, RSV2 = 2,
    RSV3 = 1). ``length_form`` is ``"min"`` (what RFC 6455 §5.2 requires),
    ``"16"`` or ``"64"`` to force a longer encoding; ``declared_length`` writes
    another length than the payload's (for broken frames).
    """
    first = (0x80 if fin else 0) | (rsv & 7) << 4 | (opcode & 0x0F)
    length = len(payload) if declared_length is None else declared_length
    mask_bit = 0x80 if mask_key is not None else 0
    if length_form == "min":
        length_form = "7" if length < 126 else "16" if length < 65536 else "64"
    if length_form == "7":
        header = struct.pack("!BB", first, mask_bit | length)
    elif length_form == "16":
        header = struct.pack("!BBH", first, mask_bit | 126, length)
    elif length_form == "64":
        header = struct.pack("!BBQ", first, mask_bit | 127, length)
    else:
        raise ValueError(f"unknown length form {length_form!r}")
    if mask_key is None:
        return header + payload
    return header + mask_key + mask(payload, mask_key)


@dataclass(frozen=True, slots=True)
class RawFrame:
    """One frame as read off the wire, payload unmasked."""

    fin: bool
    rsv: int
    opcode: int
    masked: bool
    payload: bytes
    minimal_length: bool


def parse_frame(buffer: bytearray) -> tuple[RawFrame, int] | None:
    """Parse the frame at the start of ``buffer``.

    Returns the frame and the number of bytes it took, or None when the frame
    is not complete yet. Raises WireError for a 64-bit length with its most
    significant bit set.
    """
    available = len(buffer)
    if available < 2:
        return None
    first, second = buffer[0], buffer[1]
    length = second & 0x7F
    pos = 2
    minimal = True
    if length == 126:
        if available < 4:
            return None
        (length,) = struct.unpack_from("!H", buffer, 2)
        minimal = length >= 126
        pos = 4
    elif length == 127:
        if available < 10:
            return None
        (length,) = struct.unpack_from("!Q", buffer, 2)
        if length >> 63:
            raise WireError("64-bit payload length with the most significant bit set")
        minimal = length >= 65536
        pos = 10
    masked = bool(second & 0x80)
    key = b""
    if masked:
        if available < pos + 4:
            return None
        key = bytes(buffer[pos : pos + 4])
        pos += 4
    if available < pos + length:
        return None
    payload = bytes(buffer[pos : pos + length])
    if masked:
        payload = mask(payload, key)
    frame = RawFrame(
        fin=bool(first & 0x80),
        rsv=(first >> 4) & 7,
        opcode=first & 0x0F,
        masked=masked,
        payload=payload,
        minimal_length=minimal,
    )
    return frame, pos + length


# -- close codes (RFC 6455 §7.4) ------------------------------------------------

VALID_CLOSE_CODES_ON_WIRE = frozenset({1000, 1001, 1002, 1003, *range(1007, 1015)})


def is_valid_close_code(code: int) -> bool:
    """May ``code`` appear in a close frame? (1004-1006, 1015 and 1016-2999 may not.)"""
    return code in VALID_CLOSE_CODES_ON_WIRE or 3000 <= code <= 4999


# -- UTF-8 (RFC 3629 §4) ----------------------------------------------------------

# The ABNF of RFC 3629 §4, byte for byte. Written out here rather than borrowed
# from Python's codec, which the implementation under test relies on.
_UTF8_CHAR = (
    rb"[\x00-\x7f]"
    rb"|[\xc2-\xdf][\x80-\xbf]"
    rb"|\xe0[\xa0-\xbf][\x80-\xbf]"
    rb"|[\xe1-\xec\xee\xef][\x80-\xbf]{2}"
    rb"|\xed[\x80-\x9f][\x80-\xbf]"
    rb"|\xf0[\x90-\xbf][\x80-\xbf]{2}"
    rb"|[\xf1-\xf3][\x80-\xbf]{3}"
    rb"|\xf4[\x80-\x8f][\x80-\xbf]{2}"
)
_UTF8_RE = re.compile(rb"(?:" + _UTF8_CHAR + rb")*")

# For each lead byte: the allowed range of the second byte and the total length.
_LEADS: dict[int, tuple[int, int, int]] = {}
for _b in range(0xC2, 0xE0):
    _LEADS[_b] = (0x80, 0xBF, 2)
_LEADS[0xE0] = (0xA0, 0xBF, 3)
for _b in (*range(0xE1, 0xED), 0xEE, 0xEF):
    _LEADS[_b] = (0x80, 0xBF, 3)
_LEADS[0xED] = (0x80, 0x9F, 3)
_LEADS[0xF0] = (0x90, 0xBF, 4)
for _b in range(0xF1, 0xF4):
    _LEADS[_b] = (0x80, 0xBF, 4)
_LEADS[0xF4] = (0x80, 0x8F, 4)
del _b


def is_valid_utf8(data: bytes) -> bool:
    """Tell whether ``data`` is well-formed UTF-8."""
    if data.isascii():
        return True
    return _UTF8_RE.fullmatch(data) is not None


def utf8_fail_index(data: bytes) -> int | None:
    """Where a validating reader must give up on ``data``, at the earliest.

    Returns None for valid UTF-8; the index of the first byte that no valid
    continuation could follow (RFC 6455 §8.1 "fail fast" point); or
    ``len(data)`` if ``data`` is only a truncated prefix of valid UTF-8.
    """
    i = 0
    n = len(data)
    while i < n:
        byte = data[i]
        if byte < 0x80:
            i += 1
            continue
        lead = _LEADS.get(byte)
        if lead is None:
            return i
        low, high, size = lead
        for k in range(1, size):
            if i + k >= n:
                return n
            allowed = (low, high) if k == 1 else (0x80, 0xBF)
            if not allowed[0] <= data[i + k] <= allowed[1]:
                return i + k
        i += size
    return None


# -- HTTP/1.1 heads -----------------------------------------------------------------


def parse_http_head(head: bytes) -> tuple[str, list[tuple[str, str]]]:
    """Split an HTTP head (without the final blank line) into its start line
    and ``(lower-cased name, value)`` pairs. Raises WireError if malformed."""
    try:
        text = head.decode("latin-1")
    except UnicodeDecodeError as exc:  # pragma: no cover  # latin-1 decodes anything
        raise WireError("undecodable HTTP head") from exc
    lines = text.split("\r\n")
    start, fields = lines[0], lines[1:]
    headers: list[tuple[str, str]] = []
    for line in fields:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip() or " " in name:
            raise WireError(f"malformed header line {line!r}")
        headers.append((name.lower(), value.strip(" \t")))
    return start, headers


def header_values(headers: list[tuple[str, str]], name: str) -> list[str]:
    """Every value of header ``name`` (lower-case)."""
    return [value for key, value in headers if key == name]


def header_tokens(headers: list[tuple[str, str]], name: str) -> list[str]:
    """The comma-separated tokens of every ``name`` header, lower-cased."""
    tokens: list[str] = []
    for value in header_values(headers, name):
        tokens.extend(part.strip().lower() for part in value.split(",") if part.strip())
    return tokens


# -- Sec-WebSocket-Extensions (RFC 6455 §9.1) and permessage-deflate (RFC 7692) ---

_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_TOKEN_RE = re.compile(_TOKEN)
_PARAM_RE = re.compile(
    r"\s*(" + _TOKEN + r")\s*(?:=\s*(?:(" + _TOKEN + r')|"((?:[^"\\]|\\.)*)"))?\s*'
)

Extension = tuple[str, list[tuple[str, str | None]]]


def parse_extensions(values: list[str]) -> list[Extension]:
    """Parse header values into ``(name, [(param, value or None)])``.

    Raises WireError when the grammar is broken.
    """
    result: list[Extension] = []
    for value in values:
        for element in _split_outside_quotes(value, ","):
            if not element.strip():
                continue
            parts = _split_outside_quotes(element, ";")
            name = parts[0].strip()
            if not _TOKEN_RE.fullmatch(name):
                raise WireError(f"bad extension name in {value!r}")
            params: list[tuple[str, str | None]] = []
            for part in parts[1:]:
                match = _PARAM_RE.fullmatch(part)
                if match is None:
                    raise WireError(f"bad extension parameter {part!r}")
                param, token, quoted = match.groups()
                if quoted is not None:
                    unquoted = re.sub(r"\\(.)", r"\1", quoted)
                    if not _TOKEN_RE.fullmatch(unquoted):
                        raise WireError(f"quoted value of {param} is not a token")
                    params.append((param, unquoted))
                else:
                    params.append((param, token))
            result.append((name, params))
    return result


def _split_outside_quotes(text: str, separator: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for char in text:
        if escaped:
            escaped = False
        elif quoted and char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == separator and not quoted:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return parts


def format_extensions(name: str, params: list[tuple[str, str | None]]) -> str:
    """The header value for one extension."""
    return name + "".join(f"; {p}" if v is None else f"; {p}={v}" for p, v in params)


BARE = -1  # client_max_window_bits offered without a value


@dataclass(frozen=True, slots=True)
class DeflateParams:
    """The four permessage-deflate parameters of one offer or response.

    Window bits are None when absent; ``client_max_window_bits`` may be
    :data:`BARE` in an offer (present without a value, RFC 7692 §7.1.2.2).
    """

    server_no_context_takeover: bool = False
    client_no_context_takeover: bool = False
    server_max_window_bits: int | None = None
    client_max_window_bits: int | None = None

    def to_params(self) -> list[tuple[str, str | None]]:
        params: list[tuple[str, str | None]] = []
        if self.server_no_context_takeover:
            params.append(("server_no_context_takeover", None))
        if self.client_no_context_takeover:
            params.append(("client_no_context_takeover", None))
        if self.server_max_window_bits is not None:
            params.append(("server_max_window_bits", str(self.server_max_window_bits)))
        if self.client_max_window_bits == BARE:
            params.append(("client_max_window_bits", None))
        elif self.client_max_window_bits is not None:
            params.append(("client_max_window_bits", str(self.client_max_window_bits)))
        return params

    def header(self) -> str:
        return format_extensions("permessage-deflate", self.to_params())


_BITS_RE = re.compile(r"[89]|1[0-5]")


def parse_pmd_params(params: list[tuple[str, str | None]], *, response: bool) -> DeflateParams:
    """Check permessage-deflate parameters (RFC 7692 §7.1); WireError if invalid."""
    seen: set[str] = set()
    flags = {"server_no_context_takeover": False, "client_no_context_takeover": False}
    bits: dict[str, int | None] = {"server_max_window_bits": None, "client_max_window_bits": None}
    for name, value in params:
        if name in seen:
            raise WireError(f"parameter {name} repeated")
        seen.add(name)
        if name in flags:
            if value is not None:
                raise WireError(f"{name} takes no value")
            flags[name] = True
        elif name in bits:
            if value is None:
                if name == "client_max_window_bits" and not response:
                    bits[name] = BARE
                    continue
                raise WireError(f"{name} needs a value")
            if not _BITS_RE.fullmatch(value):
                raise WireError(f"{name}={value} is not 8-15")
            bits[name] = int(value)
        else:
            raise WireError(f"unknown parameter {name}")
    return DeflateParams(
        flags["server_no_context_takeover"],
        flags["client_no_context_takeover"],
        bits["server_max_window_bits"],
        bits["client_max_window_bits"],
    )


def check_response_against_offer(offer: DeflateParams, response: DeflateParams) -> str | None:
    """Why a server's accepted parameters do not answer ``offer``, or None.

    RFC 7692 §7.1: server_no_context_takeover offered must be accepted as
    such; server_max_window_bits offered bounds the answer; the server may
    only send client_max_window_bits if the client offered it, and no more
    than the value offered.
    """
    if offer.server_no_context_takeover and not response.server_no_context_takeover:
        return "server_no_context_takeover was offered but not in the response"
    if offer.server_max_window_bits is not None:
        if response.server_max_window_bits is None:
            return "server_max_window_bits was offered but not in the response"
        if response.server_max_window_bits > offer.server_max_window_bits:
            return "server_max_window_bits in the response exceeds the offer"
    if response.client_max_window_bits is not None:
        if offer.client_max_window_bits is None:
            return "client_max_window_bits in the response, but not offered"
        if offer.client_max_window_bits != BARE and (
            response.client_max_window_bits > offer.client_max_window_bits
        ):
            return "client_max_window_bits in the response exceeds the offer"
    return None


_TAIL = b"\x00\x00\xff\xff"
_STEP = 64  # bytes inflated per zlib call, see DeflateCodec.decompress


class DeflateCodec:
    """One side's permessage-deflate codec, with the negotiated parameters.

    ``local_*`` are ours (what we compress with), ``remote_*`` the peer's
    (what we inflate with). A remote side that promised no context takeover
    is checked: we inflate each of its messages with a fresh window, so a
    back-reference into an older message fails. The same goes for windows:
    we inflate with exactly the agreed size.
    """

    def __init__(
        self,
        *,
        local_bits: int,
        local_no_context: bool,
        remote_bits: int,
        remote_no_context: bool,
    ) -> None:
        self.local_bits = local_bits
        self.local_no_context = local_no_context
        self.remote_bits = remote_bits
        self.remote_no_context = remote_no_context
        self._compressor: zlib._Compress | None = None
        self._decompressor: zlib._Decompress | None = None

    def compress(self, data: bytes) -> bytes:
        if self._compressor is None:
            self._compressor = zlib.compressobj(6, zlib.DEFLATED, -self.local_bits, 8)
        out = self._compressor.compress(data) + self._compressor.flush(zlib.Z_SYNC_FLUSH)
        if not out.endswith(_TAIL):  # pragma: no cover  # zlib always ends a sync flush so
            raise AssertionError("sync flush without an empty stored block")
        if self.local_no_context:
            self._compressor = None
        return out[:-4]

    def decompress(self, data: bytes) -> bytes:
        """Inflate one whole message; WireError if the data is not valid for
        the agreed window and context."""
        if self._decompressor is None:
            self._decompressor = zlib.decompressobj(-self.remote_bits)
        decompressor = self._decompressor
        # zlib accepts a back-reference into anything produced by the same
        # decompress() call, whatever the window. Inflating in small steps
        # leaves only the agreed window (plus one step) to refer to, so a
        # peer that compressed with a bigger window than agreed is caught.
        pending = data + _TAIL
        parts: list[bytes] = []
        try:
            while True:
                part = decompressor.decompress(pending, _STEP)
                parts.append(part)
                pending = decompressor.unconsumed_tail
                if decompressor.eof or (not pending and len(part) < _STEP):
                    break
        except zlib.error as exc:
            self._decompressor = None
            raise WireError(f"invalid compressed message: {exc}") from exc
        out = b"".join(parts)
        if self.remote_no_context or self._decompressor.eof:
            self._decompressor = None
        return out
