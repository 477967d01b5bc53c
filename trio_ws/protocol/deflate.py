"""RFC 7692 permessage-deflate: negotiating the extension and compressing messages.

Negotiation happens once, in the opening handshake:

- the client sends :func:`client_offer` in ``Sec-WebSocket-Extensions``;
- the server passes the client's header lines to :func:`.server_accept`, which
  picks the first offer it can honour and returns the response header value
  and the codec, or None to carry on uncompressed;
- the client passes the server's header lines to :func:`.client_accept`, which
  checks the response against what we offered and returns the codec, or None.

After that the state machine owns one :class:`PerMessageDeflate` per
connection and calls :meth:`~PerMessageDeflate.compress` and
:meth:`~PerMessageDeflate.decompress` for each frame of each compressed
message. Which messages are compressed (RSV1) is the machine's business.

Window bits, and why 8 is special
---------------------------------

``*_max_window_bits`` bound the LZ77 window (``2**bits`` bytes) a side's
*compressor* uses, so the other side can size its decompressor. zlib cannot
produce a window-8 raw stream: ``zlib.compressobj(wbits=-8)`` raises
``ValueError`` (zlib >= 1.2.9 rejects it; older versions silently used 9).
Inflating with ``wbits=-8`` works. Our policy:

- Compressing with an agreed limit of 8, we use a 9-bit window with the
  ``Z_RLE`` strategy. RLE only ever refers back one byte, which is valid under
  any window, so we really do keep the promise, at some cost in ratio. (zlib's
  default strategy at 9 bits happens to keep distances under 256 too, but
  only because of an internal limit of zlib's deflater, which is not
  something to promise a peer on.) So we accept every value 8-15, both ways.
- Decompressing, we use the agreed bits, but at least 9. Peers that asked
  their zlib for 8 may have got 9 (``zlib.h`` says so), and a 512-byte
  window costs nothing. A larger inflate window accepts every stream a
  smaller one does.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from ..exceptions import InvalidHeader, NegotiationError, PayloadTooBig, ProtocolError

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "DeflateConfig",
    "PerMessageDeflate",
    "client_accept",
    "client_offer",
    "parse_extension_header",
    "server_accept",
]

EXTENSION_NAME: Final = "permessage-deflate"
_HEADER: Final = "Sec-WebSocket-Extensions"

# zlib's deflate needs (1 << (wbits + 2)) + (1 << (mem_level + 9)) bytes: 256 KiB
# per connection at the zlib defaults (15, 8), 144 KiB at (15, 5). Level 5 made
# output under 1% larger on the JSON messages and source text we measured, and
# saves 112 KiB per connection, which matters to a server holding thousands.
DEFAULT_MEM_LEVEL: Final = 5

# RFC 7692 §7.2.1: a flush with Z_SYNC_FLUSH ends in an empty stored block,
# 00 00 ff ff, which the sender strips and the receiver appends (§7.2.2).
_EMPTY_STORED_BLOCK: Final = b"\x00\x00\xff\xff"

# RFC 7692 §7.1.2.1-2: a decimal integer from 8 to 15, without leading zeros.
_WINDOW_BITS_RE: Final = re.compile(r"[89]|1[0-5]")

# RFC 7230 §3.2.6 (RFC 6455 §9.1 uses the same grammar).
_TOKEN_RE: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_QUOTED_STRING_RE: Final = re.compile(r'"(?:[\t !#-\[\]-~\x80-\xff]|\\[\t -~\x80-\xff])*"')
_QUOTED_PAIR_RE: Final = re.compile(r"\\(.)", re.DOTALL)


def _check_window_bits(name: str, value: object) -> None:
    # ``object``: the annotations promise an int, the check is for callers
    # that do not run a type checker.
    if value is None:
        return
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int or None, not {type(value).__name__}")
    if not 8 <= value <= 15:
        raise ValueError(f"{name} must be between 8 and 15, got {value}")


def _check_codec_settings(compress_level: object, mem_level: object, min_size: object) -> None:
    checks: tuple[tuple[str, object, int, int | None], ...] = (
        ("compress_level", compress_level, -1, 9),
        ("mem_level", mem_level, 1, 9),
        ("min_size", min_size, 0, None),
    )
    for name, value, low, high in checks:
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError(f"{name} must be an int, not {type(value).__name__}")
        if value < low or (high is not None and value > high):
            bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
            raise ValueError(f"{name} must be {bounds}, got {value}")


@dataclass(frozen=True, slots=True)
class DeflateConfig:
    """What one side is willing to do for permessage-deflate.

    Pass it as ``compression=DeflateConfig(...)``; ``compression="deflate"``
    means ``DeflateConfig(client_max_window_bits=12)`` for a client and
    ``DeflateConfig(server_max_window_bits=12)`` for a server: a 4 KiB window
    each way (when both sides are trio_ws), a third less CPU time and under
    a quarter of the memory of zlib's 32 KiB, for output about 10% larger.
    The same fields read slightly differently for a client (what it asks
    for) and a server (what it imposes), per RFC 7692 §7.1:

    Attributes:
        server_no_context_takeover: the server compresses each message on its
            own. A client asks for it and refuses a server that does not
            agree; a server always agrees to it.
        client_no_context_takeover: the client compresses each message on its
            own. A client announces it and honours it; a server requires it.
        server_max_window_bits: limit of the server's LZ77 window, 8-15, or
            None for no limit (15). A client asks for it (less memory to
            decompress); a server never uses more.
        client_max_window_bits: limit of the client's LZ77 window, 8-15, or
            None. A client never uses more; with None it lets the server
            choose. A server imposes it, and declines clients that do not
            support the parameter.
        compress_level: zlib compression level, -1 (zlib's default, 6) to 9.
        mem_level: zlib memory level, 1-9; see ``DEFAULT_MEM_LEVEL``.
        min_size: messages shorter than this many bytes are sent
            uncompressed, which RFC 7692 §6 allows per message: compressing
            a few bytes only adds overhead.

    Raises:
        ValueError: a value out of range.
        TypeError: a value that is not an int (or None where allowed).
    """

    server_no_context_takeover: bool = False
    client_no_context_takeover: bool = False
    server_max_window_bits: int | None = None
    client_max_window_bits: int | None = None
    compress_level: int = 6
    mem_level: int = DEFAULT_MEM_LEVEL
    min_size: int = 32

    def __post_init__(self) -> None:
        _check_window_bits("server_max_window_bits", self.server_max_window_bits)
        _check_window_bits("client_max_window_bits", self.client_max_window_bits)
        _check_codec_settings(self.compress_level, self.mem_level, self.min_size)


class PerMessageDeflate:
    """The negotiated permessage-deflate codec of one connection.

    Built by :func:`.client_accept` or :func:`.server_accept`; the attributes
    hold the agreed parameters (window bits None meaning 15). The state
    machine calls :meth:`compress` for every frame of an outgoing compressed
    message and :meth:`decompress` for every chunk of an incoming one. After
    either raises, the connection is failed and the codec must not be used
    again: its zlib state no longer matches the peer's.

    zlib objects are created on first use and, without context takeover,
    dropped after each message, so an idle connection holds no zlib memory
    in that mode.
    """

    __slots__ = (
        "_compressor",
        "_decompressor",
        "_local_no_context_takeover",
        "_local_strategy",
        "_local_wbits",
        "_remote_no_context_takeover",
        "_remote_wbits",
        "client_max_window_bits",
        "client_no_context_takeover",
        "compress_level",
        "is_client",
        "mem_level",
        "min_size",
        "server_max_window_bits",
        "server_no_context_takeover",
    )

    name: Final = EXTENSION_NAME

    def __init__(
        self,
        *,
        is_client: bool,
        server_no_context_takeover: bool,
        client_no_context_takeover: bool,
        server_max_window_bits: int | None,
        client_max_window_bits: int | None,
        compress_level: int = 6,
        mem_level: int = DEFAULT_MEM_LEVEL,
        min_size: int = 32,
    ) -> None:
        _check_window_bits("server_max_window_bits", server_max_window_bits)
        _check_window_bits("client_max_window_bits", client_max_window_bits)
        _check_codec_settings(compress_level, mem_level, min_size)
        self.is_client: bool = is_client
        self.server_no_context_takeover: bool = server_no_context_takeover
        self.client_no_context_takeover: bool = client_no_context_takeover
        self.server_max_window_bits: int | None = server_max_window_bits
        self.client_max_window_bits: int | None = client_max_window_bits
        self.compress_level: int = compress_level
        self.mem_level: int = mem_level
        self.min_size: int = min_size

        if is_client:
            local_bits, remote_bits = client_max_window_bits, server_max_window_bits
            self._local_no_context_takeover = client_no_context_takeover
            self._remote_no_context_takeover = server_no_context_takeover
        else:
            local_bits, remote_bits = server_max_window_bits, client_max_window_bits
            self._local_no_context_takeover = server_no_context_takeover
            self._remote_no_context_takeover = client_no_context_takeover
        # See the module docstring for the window-8 policy.
        local_bits = 15 if local_bits is None else local_bits
        self._local_wbits = max(local_bits, 9)
        self._local_strategy = zlib.Z_RLE if local_bits == 8 else zlib.Z_DEFAULT_STRATEGY
        self._remote_wbits = 15 if remote_bits is None else max(remote_bits, 9)
        self._compressor: zlib._Compress | None = None
        self._decompressor: zlib._Decompress | None = None

    @property
    def response_params(self) -> list[tuple[str, str | None]]:
        """The agreed parameters, as a server's response states them.

        A server sends exactly these (:func:`.server_accept` builds its header
        value from them); on a client they also include what we promised in
        the offer even if the server did not repeat it.
        """
        params: list[tuple[str, str | None]] = []
        if self.server_no_context_takeover:
            params.append(("server_no_context_takeover", None))
        if self.client_no_context_takeover:
            params.append(("client_no_context_takeover", None))
        if self.server_max_window_bits is not None:
            params.append(("server_max_window_bits", str(self.server_max_window_bits)))
        if self.client_max_window_bits is not None:
            params.append(("client_max_window_bits", str(self.client_max_window_bits)))
        return params

    def __repr__(self) -> str:
        side = "client" if self.is_client else "server"
        params = "".join(
            f", {name}" if value is None else f", {name}={value}"
            for name, value in self.response_params
        )
        return f"PerMessageDeflate({side}{params})"

    def compress(self, data: bytes, *, fin: bool) -> bytes:
        """Compress one frame's worth of an outgoing message.

        Call it for each frame in order, with ``fin=True`` for the last one
        (a whole message is one call with ``fin=True``). Returns the frame's
        payload; the caller sets RSV1 on the message's first frame.
        """
        compressor = self._compressor
        if compressor is None:
            compressor = self._compressor = zlib.compressobj(
                self.compress_level,
                zlib.DEFLATED,
                -self._local_wbits,
                self.mem_level,
                self._local_strategy,
            )
        # Z_SYNC_FLUSH, not Z_FULL_FLUSH: the peer must be able to decode each
        # frame as it arrives, but with context takeover the window must
        # survive into the next message (RFC 7692 §7.2.1).
        out = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
        if fin:
            if not out.endswith(_EMPTY_STORED_BLOCK):
                raise AssertionError("Z_SYNC_FLUSH output must end with an empty stored block")
            # RFC 7692 §7.2.1: remove the 4 octets 00 00 ff ff from the tail.
            out = out[:-4]
            if self._local_no_context_takeover:
                # RFC 7692 §7.1.1: the next message starts with an empty window.
                self._compressor = None
        return out

    def decompress(self, data: bytes, *, fin: bool, max_length: int | None) -> bytes:
        """Decompress one chunk of an incoming compressed message.

        Call it with successive chunks of the message's payload (frames, or
        pieces of frames) and ``fin=True`` on the last. Returns what those
        bytes decode to, at most ``max_length`` bytes (None: no limit).

        Raises:
            PayloadTooBig: the chunk decodes to more than ``max_length``
                bytes. Only ``max_length + 1`` bytes are ever produced, so a
                small "deflate bomb" cannot exhaust memory.
            ProtocolError: the data is not a valid DEFLATE stream, or refers
                to history the peer was not allowed to keep.
            ValueError: ``max_length`` is negative.
        """
        if max_length is not None and max_length < 0:
            raise ValueError(f"max_length must be None or at least 0, got {max_length}")
        decompressor = self._decompressor
        if decompressor is None:
            decompressor = self._decompressor = zlib.decompressobj(-self._remote_wbits)
        if decompressor.eof:
            # RFC 7692 §7.2.3.4: the peer ended the DEFLATE stream with a
            # BFINAL block earlier in this message. What follows is ignored,
            # and not fed to zlib, which would hoard it in unused_data.
            out = b""
        else:
            if fin:
                # RFC 7692 §7.2.2: append 00 00 ff ff to the payload. join, not
                # +=, which would extend a caller's bytearray in place.
                data = b"".join((data, _EMPTY_STORED_BLOCK))
            try:
                if max_length is None:
                    out = decompressor.decompress(data)
                else:
                    # Ask for one byte more than allowed: getting it proves the
                    # limit is exceeded without decoding any further.
                    out = decompressor.decompress(data, max_length + 1)
            except zlib.error as exc:
                raise ProtocolError(f"invalid compressed data: {exc}") from exc
            if max_length is not None and len(out) > max_length:
                raise PayloadTooBig(f"compressed data expands to more than {max_length} bytes")
        if fin and (self._remote_no_context_takeover or decompressor.eof):
            # RFC 7692 §7.1.1: without context takeover the peer starts each
            # message with an empty window, so we may too. After a BFINAL
            # block the stream is over; a fresh one starts with no history,
            # and a peer that refers to older data gets a ProtocolError.
            self._decompressor = None
        return out


def parse_extension_header(
    values: Sequence[str],
) -> list[tuple[str, list[tuple[str, str | None]]]]:
    """Parse ``Sec-WebSocket-Extensions`` header lines (RFC 6455 §9.1).

    Each line is a comma-separated list of extensions, each an extension name
    followed by ``;``-separated parameters, each a name with an optional
    ``=value`` (a token or a quoted string, which must unquote to a token).
    Optional whitespace goes around the separators and empty list elements
    are skipped (RFC 7230 §7).

    Returns:
        ``(name, [(param, value or None), ...])`` in header order, with
        quoted values unquoted. Names keep their case.

    Raises:
        InvalidHeader: a line does not match the grammar, or lists nothing.
    """
    extensions: list[tuple[str, list[tuple[str, str | None]]]] = []
    for value in values:
        extensions.extend(_parse_extension_line(value))
    return extensions


def _parse_extension_line(line: str) -> list[tuple[str, list[tuple[str, str | None]]]]:
    def fail(expected: str, pos: int) -> InvalidHeader:
        found = repr(line[pos]) if pos < len(line) else "end of header"
        return InvalidHeader(_HEADER, line, f"expected {expected} at {pos}, found {found}")

    end = len(line)

    def skip_ows(pos: int) -> int:
        while pos < end and line[pos] in " \t":
            pos += 1
        return pos

    extensions: list[tuple[str, list[tuple[str, str | None]]]] = []
    pos = skip_ows(0)
    while pos < end:
        if line[pos] == ",":
            # An empty list element, which RFC 7230 §7 tells us to accept.
            pos = skip_ows(pos + 1)
            continue
        match = _TOKEN_RE.match(line, pos)
        if match is None:
            raise fail("an extension name", pos)
        name = match.group()
        params: list[tuple[str, str | None]] = []
        pos = skip_ows(match.end())
        while pos < end and line[pos] == ";":
            pos = skip_ows(pos + 1)
            match = _TOKEN_RE.match(line, pos)
            if match is None:
                raise fail("a parameter name", pos)
            param = match.group()
            param_value: str | None = None
            pos = skip_ows(match.end())
            if pos < end and line[pos] == "=":
                pos = skip_ows(pos + 1)
                match = _TOKEN_RE.match(line, pos)
                if match is not None:
                    param_value = match.group()
                else:
                    match = _QUOTED_STRING_RE.match(line, pos)
                    if match is None:
                        raise fail("a token or a quoted string", pos)
                    param_value = _QUOTED_PAIR_RE.sub(r"\1", match.group()[1:-1])
                    # RFC 6455 §9.1: a quoted value must unquote to a token.
                    if _TOKEN_RE.fullmatch(param_value) is None:
                        raise InvalidHeader(
                            _HEADER, line, f"quoted value of {param} is not a token"
                        )
                pos = skip_ows(match.end())
            params.append((param, param_value))
        extensions.append((name, params))
        if pos < end:
            if line[pos] != ",":
                raise fail("',' or ';'", pos)
            pos = skip_ows(pos + 1)
    if not extensions:
        raise InvalidHeader(_HEADER, line, "no extension listed")
    return extensions


def _format_extension(name: str, params: Sequence[tuple[str, str | None]]) -> str:
    return name + "".join(
        f"; {param}" if value is None else f"; {param}={value}" for param, value in params
    )


@dataclass(frozen=True, slots=True)
class _Params:
    """The parameters of one permessage-deflate offer or response, well-formed."""

    server_no_context_takeover: bool
    client_no_context_takeover: bool
    server_max_window_bits: int | None
    # An offer may carry client_max_window_bits without a value (RFC 7692
    # §7.1.2.2), hence the separate flag.
    has_client_max_window_bits: bool
    client_max_window_bits: int | None


def _parse_params(params: Sequence[tuple[str, str | None]], *, in_response: bool) -> _Params:
    """Check one offer's or response's parameters (RFC 7692 §5.1, §7.1).

    Raises:
        NegotiationError: an unknown or repeated parameter, a value where
            none is allowed, a missing value where one is required, or a
            value that is not 8-15 without leading zeros.
    """
    seen: set[str] = set()
    flags = {"server_no_context_takeover": False, "client_no_context_takeover": False}
    bits: dict[str, int | None] = {"server_max_window_bits": None, "client_max_window_bits": None}
    for name, value in params:
        if name in seen:
            raise NegotiationError(f"duplicate {EXTENSION_NAME} parameter {name}")
        seen.add(name)
        if name in flags:
            if value is not None:
                raise NegotiationError(f"{name} takes no value, got {value!r}")
            flags[name] = True
        elif name in bits:
            # server_max_window_bits always needs a value; client_max_window_bits
            # may go without one in an offer only (RFC 7692 §7.1.2.1-2).
            if value is None:
                if name == "server_max_window_bits" or in_response:
                    raise NegotiationError(f"{name} needs a value")
            elif _WINDOW_BITS_RE.fullmatch(value) is None:
                raise NegotiationError(f"{name} must be 8-15, got {value!r}")
            else:
                bits[name] = int(value)
        else:
            raise NegotiationError(f"unknown {EXTENSION_NAME} parameter {name}")
    return _Params(
        server_no_context_takeover=flags["server_no_context_takeover"],
        client_no_context_takeover=flags["client_no_context_takeover"],
        server_max_window_bits=bits["server_max_window_bits"],
        has_client_max_window_bits="client_max_window_bits" in seen,
        client_max_window_bits=bits["client_max_window_bits"],
    )


def _min_bits(a: int | None, b: int | None) -> int | None:
    """The stricter of two window limits, None meaning no limit."""
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)


def client_offer(config: DeflateConfig) -> str:
    """Build the ``Sec-WebSocket-Extensions`` value a client sends.

    ``client_max_window_bits`` is always offered: with our limit as its value,
    or with no value when we have none, which tells the server we can work
    with any window it picks (RFC 7692 §7.1.2.2).
    """
    params: list[tuple[str, str | None]] = []
    if config.server_no_context_takeover:
        params.append(("server_no_context_takeover", None))
    if config.client_no_context_takeover:
        params.append(("client_no_context_takeover", None))
    if config.server_max_window_bits is not None:
        params.append(("server_max_window_bits", str(config.server_max_window_bits)))
    if config.client_max_window_bits is None:
        params.append(("client_max_window_bits", None))
    else:
        params.append(("client_max_window_bits", str(config.client_max_window_bits)))
    return _format_extension(EXTENSION_NAME, params)


def client_accept(
    config: DeflateConfig, response_values: Sequence[str]
) -> PerMessageDeflate | None:
    """Check the server's answer to :func:`client_offer` and build the codec.

    Args:
        config: the configuration :func:`client_offer` was called with.
        response_values: the response's ``Sec-WebSocket-Extensions`` lines.

    Returns:
        The codec, or None if the server did not accept the extension (the
        connection then runs uncompressed).

    Raises:
        InvalidHeader: the header does not parse.
        NegotiationError: the server accepted something we did not offer or
            cannot honour; RFC 7692 §5.1 tells us to fail the connection.
    """
    codec: PerMessageDeflate | None = None
    for name, params in parse_extension_header(response_values):
        if name != EXTENSION_NAME:
            # We offered nothing else (RFC 6455 §9.1).
            raise NegotiationError(f"server accepted extension {name}, which we did not offer")
        if codec is not None:
            raise NegotiationError(f"server accepted {EXTENSION_NAME} more than once")
        response = _parse_params(params, in_response=True)
        # client_max_window_bits needs no check that we offered it: we always do.
        if config.server_no_context_takeover and not response.server_no_context_takeover:
            # RFC 7692 §7.1.1.1: accepting it means including it.
            raise NegotiationError("server did not agree to server_no_context_takeover")
        if config.server_max_window_bits is not None:
            # RFC 7692 §7.1.2.1: "with the same or smaller value as the offer".
            if response.server_max_window_bits is None:
                raise NegotiationError("server did not agree to server_max_window_bits")
            if response.server_max_window_bits > config.server_max_window_bits:
                raise NegotiationError(
                    f"server_max_window_bits={response.server_max_window_bits} is more than "
                    f"the {config.server_max_window_bits} we asked for"
                )
        codec = PerMessageDeflate(
            is_client=True,
            server_no_context_takeover=response.server_no_context_takeover,
            # Our own promises stand even if the server does not repeat them
            # (RFC 7692 §7.1.1.2, §7.1.2.2): a larger value from the server
            # does not release us from a smaller one we offered.
            client_no_context_takeover=(
                config.client_no_context_takeover or response.client_no_context_takeover
            ),
            server_max_window_bits=response.server_max_window_bits,
            client_max_window_bits=_min_bits(
                config.client_max_window_bits, response.client_max_window_bits
            ),
            compress_level=config.compress_level,
            mem_level=config.mem_level,
            min_size=config.min_size,
        )
    return codec


def server_accept(
    config: DeflateConfig, request_values: Sequence[str]
) -> tuple[str, PerMessageDeflate] | None:
    """Pick the first permessage-deflate offer we can honour.

    Offers that are malformed (unknown or repeated parameters, bad values) or
    that we cannot honour are declined, not failed (RFC 7692 §5.1), and the
    next one is tried. Other extensions are ignored.

    Args:
        config: what this server requires and allows.
        request_values: the request's ``Sec-WebSocket-Extensions`` lines.

    Returns:
        The ``Sec-WebSocket-Extensions`` value to respond with and the codec,
        or None to proceed uncompressed.

    Raises:
        InvalidHeader: the header does not parse at all.
    """
    for name, params in parse_extension_header(request_values):
        if name != EXTENSION_NAME:
            continue
        try:
            offer = _parse_params(params, in_response=False)
        except NegotiationError:
            continue
        if config.client_max_window_bits is not None and not offer.has_client_max_window_bits:
            # RFC 7692 §7.1.2.2: we may only limit a client that supports the
            # parameter, and this one did not say it does.
            continue
        codec = PerMessageDeflate(
            is_client=False,
            # We can always honour either no_context_takeover, and we echo
            # the client's so both sides agree on what the response says.
            server_no_context_takeover=(
                config.server_no_context_takeover or offer.server_no_context_takeover
            ),
            client_no_context_takeover=(
                config.client_no_context_takeover or offer.client_no_context_takeover
            ),
            # RFC 7692 §7.1.2.1: the same or a smaller value than offered.
            server_max_window_bits=_min_bits(
                config.server_max_window_bits, offer.server_max_window_bits
            ),
            # RFC 7692 §7.1.2.2: a value the client offered is a promise; we
            # repeat it (or our smaller limit) so we can size our inflater.
            client_max_window_bits=_min_bits(
                config.client_max_window_bits, offer.client_max_window_bits
            ),
            compress_level=config.compress_level,
            mem_level=config.mem_level,
            min_size=config.min_size,
        )
        return _format_extension(EXTENSION_NAME, codec.response_params), codec
    return None
