"""Tests for trio_ws.protocol.deflate: RFC 7692 negotiation and codec.

Codecs are always made in pairs by the real negotiation (client_offer ->
server_accept -> client_accept), so every codec test also checks that both
sides read the handshake the same way.
"""

from __future__ import annotations

import itertools
import random
import tracemalloc
import zlib
from typing import TYPE_CHECKING

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from trio_ws.exceptions import InvalidHeader, NegotiationError, PayloadTooBig, ProtocolError
from trio_ws.protocol.deflate import (
    DEFAULT_MEM_LEVEL,
    DeflateConfig,
    PerMessageDeflate,
    client_accept,
    client_offer,
    parse_extension_header,
    server_accept,
)

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

EMPTY_BLOCK = b"\x00\x00\xff\xff"
WINDOW_BITS = list(range(8, 16))


# --------------------------------------------------------------------------
# Helpers


def codec_pair(
    client_config: DeflateConfig | None = None, server_config: DeflateConfig | None = None
) -> tuple[PerMessageDeflate, PerMessageDeflate]:
    """Negotiate for real and return ``(client_codec, server_codec)``."""
    client_config = client_config or DeflateConfig()
    server_config = server_config or DeflateConfig()
    accepted = server_accept(server_config, [client_offer(client_config)])
    assert accepted is not None
    response, server = accepted
    client = client_accept(client_config, [response])
    assert client is not None
    return client, server


def transfer(
    sender: PerMessageDeflate,
    receiver: PerMessageDeflate,
    fragments: Sequence[bytes],
) -> tuple[list[bytes], bytes]:
    """Send one compressed message made of ``fragments`` (one per frame).

    Returns the frame payloads on the wire and what the receiver decoded.
    """
    payloads = [
        sender.compress(fragment, fin=i == len(fragments) - 1)
        for i, fragment in enumerate(fragments)
    ]
    decoded = b"".join(
        receiver.decompress(payload, fin=i == len(payloads) - 1, max_length=None)
        for i, payload in enumerate(payloads)
    )
    return payloads, decoded


class StrictInflater:
    """Inflate a raw DEFLATE stream with a window of exactly ``2**wbits``.

    zlib checks distances against its window only for history from earlier
    calls: within one call the output buffer itself serves as history. Asking
    for one byte per call makes every back-reference go through the window,
    so a distance beyond ``2**wbits`` raises "invalid distance too far back".
    """

    def __init__(self, wbits: int) -> None:
        self._inflater = zlib.decompressobj(-wbits)

    def feed(self, data: bytes) -> bytes:
        out: list[bytes] = []
        while True:
            chunk = self._inflater.decompress(data, 1)
            data = self._inflater.unconsumed_tail
            if not chunk and not data:
                return b"".join(out)
            out.append(chunk)


def window_testing_messages(count: int, seed: int = 0) -> list[bytes]:
    """Messages full of repeats at every distance from 1 byte to 32 KiB."""
    rng = random.Random(seed)
    history = bytearray(rng.randbytes(300))
    messages = []
    for _ in range(count):
        message = bytearray()
        for _ in range(40):
            distance = rng.choice([1, 7, 200, 255, 256, 257, 300, 511, 600, 1500, 5000, 30000])
            length = rng.randrange(3, 200)
            start = max(0, len(history) + len(message) - distance)
            source = (history + message)[start : start + length]
            message += source + rng.randbytes(rng.randrange(0, 8))
        history += message
        messages.append(bytes(message))
    return messages


def raw_deflate(data: bytes, wbits: int = 15) -> bytes:
    """What another RFC 7692 implementation built on zlib would send."""
    compressor = zlib.compressobj(6, zlib.DEFLATED, -wbits)
    out = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(EMPTY_BLOCK)
    return out[:-4]


# --------------------------------------------------------------------------
# DeflateConfig


def test_config_defaults() -> None:
    config = DeflateConfig()
    assert config == DeflateConfig(
        server_no_context_takeover=False,
        client_no_context_takeover=False,
        server_max_window_bits=None,
        client_max_window_bits=None,
        compress_level=6,
        mem_level=DEFAULT_MEM_LEVEL,
        min_size=32,
    )
    assert DEFAULT_MEM_LEVEL == 5


def test_config_is_frozen() -> None:
    config = DeflateConfig()
    with pytest.raises(AttributeError):
        config.min_size = 0  # type: ignore[misc]  # that is the point


@pytest.mark.parametrize("bits", [None, *WINDOW_BITS])
def test_config_accepts_window_bits(bits: int | None) -> None:
    config = DeflateConfig(server_max_window_bits=bits, client_max_window_bits=bits)
    assert config.server_max_window_bits == config.client_max_window_bits == bits


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"server_max_window_bits": 7}, ValueError, "between 8 and 15, got 7"),
        ({"server_max_window_bits": 16}, ValueError, "server_max_window_bits"),
        ({"client_max_window_bits": 0}, ValueError, "client_max_window_bits"),
        ({"client_max_window_bits": 16}, ValueError, "client_max_window_bits"),
        ({"client_max_window_bits": "10"}, TypeError, "must be an int or None, not str"),
        ({"server_max_window_bits": True}, TypeError, "not bool"),
        ({"compress_level": -2}, ValueError, "compress_level must be between -1 and 9"),
        ({"compress_level": 10}, ValueError, "compress_level"),
        ({"compress_level": 1.5}, TypeError, "compress_level must be an int, not float"),
        ({"mem_level": 0}, ValueError, "mem_level must be between 1 and 9"),
        ({"mem_level": 10}, ValueError, "mem_level"),
        ({"min_size": -1}, ValueError, "min_size must be at least 0, got -1"),
        ({"min_size": False}, TypeError, "min_size must be an int"),
    ],
)
def test_config_rejects_bad_values(
    kwargs: dict[str, object], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        DeflateConfig(**kwargs)  # type: ignore[arg-type]  # deliberately bad values


def test_codec_validates_like_config() -> None:
    common: dict[str, object] = {
        "is_client": True,
        "server_no_context_takeover": False,
        "client_no_context_takeover": False,
        "server_max_window_bits": None,
    }
    with pytest.raises(ValueError, match="client_max_window_bits"):
        PerMessageDeflate(client_max_window_bits=7, **common)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="mem_level"):
        PerMessageDeflate(client_max_window_bits=None, mem_level=0, **common)  # type: ignore[arg-type]


# --------------------------------------------------------------------------
# parse_extension_header


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["permessage-deflate"], [("permessage-deflate", [])]),
        (
            ["permessage-deflate; client_max_window_bits"],
            [("permessage-deflate", [("client_max_window_bits", None)])],
        ),
        (
            ["permessage-deflate;server_max_window_bits=10;client_no_context_takeover"],
            [
                (
                    "permessage-deflate",
                    [("server_max_window_bits", "10"), ("client_no_context_takeover", None)],
                )
            ],
        ),
        (
            # OWS around every separator, BWS around "=" (RFC 7230 §3.2.3).
            ["\t permessage-deflate \t; \tserver_max_window_bits \t= \t12 \t, x-foo \t"],
            [("permessage-deflate", [("server_max_window_bits", "12")]), ("x-foo", [])],
        ),
        (
            ['permessage-deflate; server_max_window_bits="10"'],
            [("permessage-deflate", [("server_max_window_bits", "10")])],
        ),
        (
            # A quoted-pair unquotes to its character (RFC 7230 §3.2.6).
            ['x; a="\\1\\0"; b=tok!#$%&\'*+-.^_`|~'],
            [("x", [("a", "10"), ("b", "tok!#$%&'*+-.^_`|~")])],
        ),
        (
            # Empty list elements are tolerated (RFC 7230 §7).
            [", ,a,, b ,", "c;d"],
            [("a", []), ("b", []), ("c", [("d", None)])],
        ),
        (
            ["permessage-deflate; client_max_window_bits, permessage-deflate"],
            [
                ("permessage-deflate", [("client_max_window_bits", None)]),
                ("permessage-deflate", []),
            ],
        ),
        (["Permessage-Deflate; X=Y"], [("Permessage-Deflate", [("X", "Y")])]),
        ([], []),
    ],
)
def test_parse_extension_header(
    values: list[str], expected: list[tuple[str, list[tuple[str, str | None]]]]
) -> None:
    assert parse_extension_header(values) == expected


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("", "no extension listed"),
        ("  ", "no extension listed"),
        (" , ,", "no extension listed"),
        (";a", "expected an extension name at 0, found ';'"),
        ("a;", "expected a parameter name at 2, found end of header"),
        ("a; ;b", "expected a parameter name at 3, found ';'"),
        ("a;b=", "expected a token or a quoted string at 4, found end of header"),
        ("a;b=,", "expected a token or a quoted string"),
        ("a;b==c", "expected a token or a quoted string"),
        ('a;b="10', "expected a token or a quoted string"),
        ('a;b=""', "quoted value of b is not a token"),
        ('a;b="1 0"', "quoted value of b is not a token"),
        ('a;b="x\\"y"', "quoted value of b is not a token"),
        ("a b", "expected ',' or ';' at 2, found 'b'"),
        ("a;b c", "expected ',' or ';'"),
        ("a;b=c d", "expected ',' or ';'"),
        ("a/b", "expected ',' or ';' at 1, found '/'"),
        ("a=b", "expected ',' or ';'"),
        ("\u00e9", "expected an extension name"),
        ("a\r\n;b", "expected ',' or ';'"),
    ],
)
def test_parse_extension_header_rejects(value: str, why: str) -> None:
    with pytest.raises(InvalidHeader) as info:
        parse_extension_header(["ok", value])
    assert info.value.name == "Sec-WebSocket-Extensions"
    assert info.value.value == value
    assert why in info.value.explanation
    assert "Sec-WebSocket-Extensions" in str(info.value)


token = st.text(
    alphabet="!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
    min_size=1,
)
ows = st.sampled_from(["", " ", "\t", " \t "])
extension = st.tuples(token, st.lists(st.tuples(token, st.none() | token), max_size=4))


@given(
    extensions=st.lists(extension, min_size=1, max_size=4),
    spaces=st.lists(ows, min_size=40, max_size=40),
    quote=st.booleans(),
)
def test_parse_extension_header_round_trip(
    extensions: list[tuple[str, list[tuple[str, str | None]]]], spaces: list[str], quote: bool
) -> None:
    """Formatting with arbitrary optional whitespace and quoting parses back."""
    space = itertools.cycle(spaces)
    parts = []
    for name, params in extensions:
        text = name
        for param, value in params:
            text += f"{next(space)};{next(space)}{param}"
            if value is not None:
                # Quoted, with every character as a quoted-pair.
                shown = '"' + "".join("\\" + c for c in value) + '"' if quote else value
                text += f"{next(space)}={next(space)}{shown}"
        parts.append(text)
    header = next(space) + f"{next(space)},{next(space)}".join(parts) + next(space)
    assert parse_extension_header([header]) == extensions


# --------------------------------------------------------------------------
# client_offer


@pytest.mark.parametrize(
    ("config", "offer"),
    [
        (DeflateConfig(), "permessage-deflate; client_max_window_bits"),
        (
            DeflateConfig(server_no_context_takeover=True),
            "permessage-deflate; server_no_context_takeover; client_max_window_bits",
        ),
        (
            DeflateConfig(client_no_context_takeover=True),
            "permessage-deflate; client_no_context_takeover; client_max_window_bits",
        ),
        (
            DeflateConfig(server_max_window_bits=8),
            "permessage-deflate; server_max_window_bits=8; client_max_window_bits",
        ),
        (
            DeflateConfig(client_max_window_bits=15),
            "permessage-deflate; client_max_window_bits=15",
        ),
        (
            DeflateConfig(
                server_no_context_takeover=True,
                client_no_context_takeover=True,
                server_max_window_bits=12,
                client_max_window_bits=9,
            ),
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
            "server_max_window_bits=12; client_max_window_bits=9",
        ),
    ],
)
def test_client_offer(config: DeflateConfig, offer: str) -> None:
    assert client_offer(config) == offer
    # What we send must be something we would accept as a server.
    assert server_accept(DeflateConfig(), [offer]) is not None


# --------------------------------------------------------------------------
# server_accept


def accept(offer: str | list[str], config: DeflateConfig | None = None) -> str | None:
    """The server's response value to ``offer``, or None when it declines."""
    result = server_accept(config or DeflateConfig(), [offer] if isinstance(offer, str) else offer)
    return None if result is None else result[0]


@pytest.mark.parametrize(
    ("offer", "response"),
    [
        ("permessage-deflate", "permessage-deflate"),
        # No context takeover: always granted, always stated.
        (
            "permessage-deflate; server_no_context_takeover",
            "permessage-deflate; server_no_context_takeover",
        ),
        (
            "permessage-deflate; client_no_context_takeover",
            "permessage-deflate; client_no_context_takeover",
        ),
        # client_max_window_bits with no value: we have no limit to impose.
        ("permessage-deflate; client_max_window_bits", "permessage-deflate"),
        # Offered limits are granted and repeated.
        *(
            (
                f"permessage-deflate; server_max_window_bits={bits}",
                f"permessage-deflate; server_max_window_bits={bits}",
            )
            for bits in WINDOW_BITS
        ),
        *(
            (
                f"permessage-deflate; client_max_window_bits={bits}",
                f"permessage-deflate; client_max_window_bits={bits}",
            )
            for bits in WINDOW_BITS
        ),
        (
            'permessage-deflate; client_max_window_bits="9"; server_max_window_bits="11"',
            "permessage-deflate; server_max_window_bits=11; client_max_window_bits=9",
        ),
        (
            "permessage-deflate; client_max_window_bits; client_no_context_takeover; "
            "server_no_context_takeover; server_max_window_bits=8",
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
            "server_max_window_bits=8",
        ),
    ],
)
def test_server_accepts_each_parameter(offer: str, response: str) -> None:
    assert accept(offer) == response


@pytest.mark.parametrize(
    "params",
    [
        # Unknown parameters (RFC 7692 §5.1).
        "; foo",
        "; foo=1",
        "; Server_No_Context_Takeover",
        # Repeated parameters.
        "; server_no_context_takeover; server_no_context_takeover",
        "; client_max_window_bits; client_max_window_bits=10",
        "; server_max_window_bits=10; server_max_window_bits=10",
        # Values where none is allowed.
        "; server_no_context_takeover=1",
        "; client_no_context_takeover=true",
        '; client_no_context_takeover="x"',
        # server_max_window_bits needs a value.
        "; server_max_window_bits",
        # Out of range, non-numeric, leading zeros, signs.
        *(
            f"; {name}={value}"
            for name in ("server_max_window_bits", "client_max_window_bits")
            for value in ("7", "16", "0", "99", "010", "08", "+9", "-9", "ten", "1e1", '"16"')
        ),
    ],
)
def test_server_declines_invalid_offer(params: str) -> None:
    assert accept("permessage-deflate" + params) is None


def test_server_accepts_first_acceptable_offer() -> None:
    offers = [
        "x-webkit-deflate-frame; no_context_takeover",
        "permessage-deflate; server_max_window_bits=16",
        "permessage-deflate; unknown, permessage-deflate; server_max_window_bits=9",
        "permessage-deflate; server_max_window_bits=10",
    ]
    result = server_accept(DeflateConfig(), offers)
    assert result is not None
    response, codec = result
    assert response == "permessage-deflate; server_max_window_bits=9"
    assert not codec.is_client
    assert codec.server_max_window_bits == 9


def test_server_ignores_other_extensions() -> None:
    assert accept("x-foo; a=1, x-bar") is None
    assert accept([]) is None


def test_server_rejects_malformed_header() -> None:
    with pytest.raises(InvalidHeader):
        server_accept(DeflateConfig(), ["permessage-deflate;"])


@pytest.mark.parametrize(
    ("config", "offer", "response"),
    [
        # The server's own requirements are stated even when not asked for.
        (
            DeflateConfig(server_no_context_takeover=True),
            "permessage-deflate",
            "permessage-deflate; server_no_context_takeover",
        ),
        (
            DeflateConfig(client_no_context_takeover=True),
            "permessage-deflate",
            "permessage-deflate; client_no_context_takeover",
        ),
        (
            DeflateConfig(server_max_window_bits=12),
            "permessage-deflate",
            "permessage-deflate; server_max_window_bits=12",
        ),
        # The smaller of the client's and the server's limits wins.
        (
            DeflateConfig(server_max_window_bits=12),
            "permessage-deflate; server_max_window_bits=10",
            "permessage-deflate; server_max_window_bits=10",
        ),
        (
            DeflateConfig(server_max_window_bits=12),
            "permessage-deflate; server_max_window_bits=14",
            "permessage-deflate; server_max_window_bits=12",
        ),
        (
            DeflateConfig(client_max_window_bits=10),
            "permessage-deflate; client_max_window_bits",
            "permessage-deflate; client_max_window_bits=10",
        ),
        (
            DeflateConfig(client_max_window_bits=10),
            "permessage-deflate; client_max_window_bits=9",
            "permessage-deflate; client_max_window_bits=9",
        ),
        (
            DeflateConfig(client_max_window_bits=10),
            "permessage-deflate; client_max_window_bits=15",
            "permessage-deflate; client_max_window_bits=10",
        ),
        # A client limit we cannot state is a reason to skip to the next offer.
        (
            DeflateConfig(client_max_window_bits=10),
            [
                "permessage-deflate; server_max_window_bits=9",
                "permessage-deflate; client_max_window_bits",
            ],
            "permessage-deflate; client_max_window_bits=10",
        ),
        (DeflateConfig(client_max_window_bits=10), "permessage-deflate", None),
        (
            DeflateConfig(client_max_window_bits=10),
            "permessage-deflate; server_no_context_takeover",
            None,
        ),
    ],
)
def test_server_applies_its_config(
    config: DeflateConfig, offer: str | list[str], response: str | None
) -> None:
    assert accept(offer, config) == response


def test_server_codec_carries_codec_settings() -> None:
    config = DeflateConfig(compress_level=1, mem_level=9, min_size=0)
    result = server_accept(config, ["permessage-deflate"])
    assert result is not None
    codec = result[1]
    assert (codec.compress_level, codec.mem_level, codec.min_size) == (1, 9, 0)


# --------------------------------------------------------------------------
# client_accept


def test_client_accepts_no_extension() -> None:
    assert client_accept(DeflateConfig(), []) is None
    assert client_accept(DeflateConfig(server_no_context_takeover=True), []) is None


@pytest.mark.parametrize(
    ("config", "response", "agreed"),
    [
        (DeflateConfig(), "permessage-deflate", []),
        # The server may add any of these unasked (RFC 7692 §7.1).
        (
            DeflateConfig(),
            "permessage-deflate; server_no_context_takeover",
            [("server_no_context_takeover", None)],
        ),
        (
            DeflateConfig(),
            "permessage-deflate; client_no_context_takeover",
            [("client_no_context_takeover", None)],
        ),
        *(
            (
                DeflateConfig(),
                f"permessage-deflate; server_max_window_bits={bits}",
                [("server_max_window_bits", str(bits))],
            )
            for bits in WINDOW_BITS
        ),
        *(
            (
                DeflateConfig(),
                f"permessage-deflate; client_max_window_bits={bits}",
                [("client_max_window_bits", str(bits))],
            )
            for bits in WINDOW_BITS
        ),
        (
            DeflateConfig(),
            'permessage-deflate;client_max_window_bits="8"',
            [("client_max_window_bits", "8")],
        ),
        # Smaller than we asked for is fine.
        (
            DeflateConfig(server_max_window_bits=12),
            "permessage-deflate; server_max_window_bits=11",
            [("server_max_window_bits", "11")],
        ),
        (
            DeflateConfig(server_no_context_takeover=True, server_max_window_bits=12),
            "permessage-deflate; server_max_window_bits=12; server_no_context_takeover",
            [("server_no_context_takeover", None), ("server_max_window_bits", "12")],
        ),
        # Our promises hold even if the server does not repeat them...
        (
            DeflateConfig(client_no_context_takeover=True),
            "permessage-deflate",
            [("client_no_context_takeover", None)],
        ),
        (
            DeflateConfig(client_max_window_bits=10),
            "permessage-deflate",
            [("client_max_window_bits", "10")],
        ),
        # ... or answers with a larger window (RFC 7692 §7.1.2.2).
        (
            DeflateConfig(client_max_window_bits=10),
            "permessage-deflate; client_max_window_bits=12",
            [("client_max_window_bits", "10")],
        ),
        (
            DeflateConfig(client_max_window_bits=10),
            "permessage-deflate; client_max_window_bits=9",
            [("client_max_window_bits", "9")],
        ),
    ],
)
def test_client_accepts(
    config: DeflateConfig, response: str, agreed: list[tuple[str, str | None]]
) -> None:
    codec = client_accept(config, [response])
    assert codec is not None
    assert codec.is_client
    assert codec.response_params == agreed


@pytest.mark.parametrize(
    ("config", "responses", "match"),
    [
        (DeflateConfig(), ["x-foo"], "server accepted extension x-foo, which we did not offer"),
        (DeflateConfig(), ["permessage-deflate, x-foo"], "x-foo"),
        (
            DeflateConfig(),
            ["permessage-deflate", "permessage-deflate"],
            "permessage-deflate more than once",
        ),
        (DeflateConfig(), ["permessage-deflate; foo"], "unknown permessage-deflate parameter foo"),
        (
            DeflateConfig(),
            ["permessage-deflate; client_no_context_takeover; client_no_context_takeover"],
            "duplicate permessage-deflate parameter client_no_context_takeover",
        ),
        (
            DeflateConfig(),
            ["permessage-deflate; server_no_context_takeover=yes"],
            "server_no_context_takeover takes no value, got 'yes'",
        ),
        (
            DeflateConfig(),
            ["permessage-deflate; server_max_window_bits"],
            "server_max_window_bits needs a value",
        ),
        # RFC 7692 §7.1.2.2: a response states the client's window.
        (
            DeflateConfig(),
            ["permessage-deflate; client_max_window_bits"],
            "client_max_window_bits needs a value",
        ),
        (
            DeflateConfig(),
            ["permessage-deflate; server_max_window_bits=16"],
            "server_max_window_bits must be 8-15, got '16'",
        ),
        (
            DeflateConfig(),
            ["permessage-deflate; client_max_window_bits=7"],
            "client_max_window_bits must be 8-15",
        ),
        (
            DeflateConfig(),
            ["permessage-deflate; client_max_window_bits=010"],
            "client_max_window_bits must be 8-15",
        ),
        # We asked for these and the server ignored us.
        (
            DeflateConfig(server_no_context_takeover=True),
            ["permessage-deflate"],
            "server did not agree to server_no_context_takeover",
        ),
        (
            DeflateConfig(server_max_window_bits=10),
            ["permessage-deflate"],
            "server did not agree to server_max_window_bits",
        ),
        (
            DeflateConfig(server_max_window_bits=10),
            ["permessage-deflate; server_max_window_bits=11"],
            "server_max_window_bits=11 is more than the 10 we asked for",
        ),
    ],
)
def test_client_refuses_bad_response(
    config: DeflateConfig, responses: list[str], match: str
) -> None:
    with pytest.raises(NegotiationError, match=match):
        client_accept(config, responses)


def test_client_rejects_malformed_header() -> None:
    with pytest.raises(InvalidHeader):
        client_accept(DeflateConfig(), ["permessage-deflate; a=="])


# --------------------------------------------------------------------------
# Negotiation round trips

CLIENT_CONFIGS = [
    pytest.param(DeflateConfig(), id="c-default"),
    pytest.param(DeflateConfig(server_no_context_takeover=True), id="c-snct"),
    pytest.param(DeflateConfig(client_no_context_takeover=True), id="c-cnct"),
    pytest.param(DeflateConfig(server_max_window_bits=8), id="c-smwb8"),
    pytest.param(DeflateConfig(server_max_window_bits=11), id="c-smwb11"),
    pytest.param(DeflateConfig(client_max_window_bits=8), id="c-cmwb8"),
    pytest.param(DeflateConfig(client_max_window_bits=13), id="c-cmwb13"),
    pytest.param(
        DeflateConfig(
            server_no_context_takeover=True,
            client_no_context_takeover=True,
            server_max_window_bits=9,
            client_max_window_bits=9,
        ),
        id="c-all",
    ),
]
SERVER_CONFIGS = [
    pytest.param(DeflateConfig(), id="s-default"),
    pytest.param(DeflateConfig(server_no_context_takeover=True), id="s-snct"),
    pytest.param(DeflateConfig(client_no_context_takeover=True), id="s-cnct"),
    pytest.param(DeflateConfig(server_max_window_bits=10), id="s-smwb10"),
    pytest.param(DeflateConfig(server_max_window_bits=8), id="s-smwb8"),
    pytest.param(DeflateConfig(client_max_window_bits=12), id="s-cmwb12"),
    pytest.param(DeflateConfig(client_max_window_bits=8), id="s-cmwb8"),
    pytest.param(
        DeflateConfig(
            server_no_context_takeover=True,
            client_no_context_takeover=True,
            server_max_window_bits=14,
            client_max_window_bits=14,
        ),
        id="s-all",
    ),
]


def expected_agreement(client: DeflateConfig, server: DeflateConfig) -> dict[str, object]:
    """What RFC 7692 says the two configurations should settle on."""

    def smaller(a: int | None, b: int | None) -> int | None:
        return min((x for x in (a, b) if x is not None), default=None)

    return {
        "server_no_context_takeover": client.server_no_context_takeover
        or server.server_no_context_takeover,
        "client_no_context_takeover": client.client_no_context_takeover
        or server.client_no_context_takeover,
        "server_max_window_bits": smaller(
            client.server_max_window_bits, server.server_max_window_bits
        ),
        "client_max_window_bits": smaller(
            client.client_max_window_bits, server.client_max_window_bits
        ),
    }


@pytest.mark.parametrize("server_config", SERVER_CONFIGS)
@pytest.mark.parametrize("client_config", CLIENT_CONFIGS)
def test_negotiation_round_trip(client_config: DeflateConfig, server_config: DeflateConfig) -> None:
    client, server = codec_pair(client_config, server_config)
    expected = expected_agreement(client_config, server_config)
    for codec in (client, server):
        assert {name: getattr(codec, name) for name in expected} == expected
    assert client.response_params == server.response_params
    # And the codecs work together both ways, over several messages.
    for message in [*window_testing_messages(3), b"x" * 5000, b""]:
        assert transfer(client, server, [message])[1] == message
        assert transfer(server, client, [message])[1] == message


# --------------------------------------------------------------------------
# The codec: RFC 7692 §7.2.3 examples


def rfc_receiver() -> PerMessageDeflate:
    return PerMessageDeflate(
        is_client=True,
        server_no_context_takeover=False,
        client_no_context_takeover=False,
        server_max_window_bits=None,
        client_max_window_bits=None,
    )


@pytest.mark.parametrize(
    "payloads",
    [
        # §7.2.3.1: a message compressed into one frame, or two.
        pytest.param(["f248cdc9c90700"], id="7.2.3.1-one-frame"),
        pytest.param(["f248cd", "c9c90700"], id="7.2.3.1-two-frames"),
        # §7.2.3.3: a block with no compression.
        pytest.param(["000500faff48656c6c6f00"], id="7.2.3.3-stored"),
        # §7.2.3.4: a block with BFINAL set, and trailing data ignored.
        pytest.param(["f348cdc9c9070000"], id="7.2.3.4-bfinal"),
        pytest.param(["f348cdc9c90700", "00"], id="7.2.3.4-bfinal-fragmented"),
        # §7.2.3.5: two DEFLATE blocks in one message.
        pytest.param(["f248050000 00ffffcac9c90700"], id="7.2.3.5-two-blocks"),
    ],
)
def test_rfc_examples_hello(payloads: list[str]) -> None:
    receiver = rfc_receiver()
    decoded = b"".join(
        receiver.decompress(bytes.fromhex(p), fin=i == len(payloads) - 1, max_length=None)
        for i, p in enumerate(payloads)
    )
    assert decoded == b"Hello"
    # Whatever the peer did, the next message decodes too.
    assert receiver.decompress(bytes.fromhex("f248cdc9c90700"), fin=True, max_length=5) == b"Hello"


def test_rfc_example_sharing_window() -> None:
    """§7.2.3.2: the second "Hello" is a back-reference into the first."""
    receiver = rfc_receiver()
    assert (
        receiver.decompress(bytes.fromhex("f248cdc9c90700"), fin=True, max_length=None) == b"Hello"
    )
    assert receiver.decompress(bytes.fromhex("f200110000"), fin=True, max_length=None) == b"Hello"
    with pytest.raises(ProtocolError, match="invalid distance too far back"):
        rfc_receiver().decompress(bytes.fromhex("f200110000"), fin=True, max_length=None)


def test_rfc_example_empty_message() -> None:
    """§7.2.3.6: an empty message, as sent and as received."""
    receiver = rfc_receiver()
    assert receiver.decompress(b"\x00", fin=True, max_length=0) == b""
    assert receiver.decompress(b"", fin=True, max_length=0) == b""
    client, server = codec_pair()
    payloads, decoded = transfer(client, server, [b""])
    assert decoded == b""
    assert len(payloads[0]) <= 2


def test_compress_matches_rfc_example() -> None:
    """§7.2.3.1 and §7.2.3.2, byte for byte: zlib at level 6 produces them."""
    client, _ = codec_pair()
    assert client.compress(b"Hello", fin=True) == bytes.fromhex("f248cdc9c90700")
    assert client.compress(b"Hello", fin=True) == bytes.fromhex("f200110000")


# --------------------------------------------------------------------------
# The codec: round trips


def directions(
    client_config: DeflateConfig | None = None, server_config: DeflateConfig | None = None
) -> Iterator[tuple[PerMessageDeflate, PerMessageDeflate]]:
    client, server = codec_pair(client_config, server_config)
    yield client, server
    yield server, client


TAKEOVER_CONFIGS = [
    pytest.param(DeflateConfig(), DeflateConfig(), id="takeover"),
    pytest.param(
        DeflateConfig(server_no_context_takeover=True, client_no_context_takeover=True),
        DeflateConfig(),
        id="no-takeover",
    ),
    pytest.param(
        DeflateConfig(client_no_context_takeover=True), DeflateConfig(), id="client-no-takeover"
    ),
    pytest.param(
        DeflateConfig(), DeflateConfig(server_no_context_takeover=True), id="server-no-takeover"
    ),
    pytest.param(
        DeflateConfig(server_max_window_bits=8, client_max_window_bits=8),
        DeflateConfig(),
        id="window-8",
    ),
]


@pytest.mark.parametrize(("client_config", "server_config"), TAKEOVER_CONFIGS)
@given(
    messages=st.lists(
        st.lists(
            st.binary(max_size=3000) | st.sampled_from([b"", b"a" * 2000]), min_size=1, max_size=4
        ),
        max_size=8,
    )
)
@example(messages=[[b""], [b"", b""], [b"abc" * 1000], [b"abc" * 1000, b"", b"abc"]])
def test_round_trip(
    client_config: DeflateConfig, server_config: DeflateConfig, messages: list[list[bytes]]
) -> None:
    """Any sequence of messages, each in any number of frames, crosses intact both ways."""
    for sender, receiver in directions(client_config, server_config):
        for fragments in messages:
            assert transfer(sender, receiver, fragments)[1] == b"".join(fragments)


@pytest.mark.parametrize(("client_config", "server_config"), TAKEOVER_CONFIGS)
def test_many_interleaved_messages(
    client_config: DeflateConfig, server_config: DeflateConfig
) -> None:
    """A long mix of tiny and large messages, whole and fragmented, both ways."""
    rng = random.Random(7)
    corpus = rng.randbytes(4000) * 50
    for sender, receiver in directions(client_config, server_config):
        for i in range(200):
            if i % 3 == 0:
                message = corpus[: rng.randrange(0, 40)]
            elif i % 3 == 1:
                start = rng.randrange(0, 3000)
                message = corpus[start : start + rng.randrange(500, 70_000)] * 3
            else:
                message = rng.choice([b"{'type': 'ping'}", b"\x00" * 100_000, corpus])
            cuts = sorted(rng.randrange(0, len(message) + 1) for _ in range(rng.randrange(0, 4)))
            fragments = [message[a:b] for a, b in itertools.pairwise([0, *cuts, len(message)])]
            assert transfer(sender, receiver, fragments)[1] == message


def test_context_takeover_really_happens() -> None:
    message = random.Random(1).randbytes(1000)
    for sender, receiver in directions():
        first, _ = transfer(sender, receiver, [message])
        second, decoded = transfer(sender, receiver, [message])
        assert decoded == message
        # The repeat is one back-reference into the previous message...
        assert len(second[0]) < len(first[0]) // 10
        # ... which a decompressor without that history cannot follow.
        fresh = codec_pair()[0 if receiver.is_client else 1]
        with pytest.raises(ProtocolError, match="invalid compressed data"):
            fresh.decompress(second[0], fin=True, max_length=None)


@pytest.mark.parametrize("side", ["client", "server"])
def test_no_context_takeover_resets_each_message(side: str) -> None:
    """Only the side that gave up context takeover compresses each message alone."""
    config = DeflateConfig(
        client_no_context_takeover=side == "client", server_no_context_takeover=side == "server"
    )
    client, server = codec_pair(config)
    restricted, other = (client, server) if side == "client" else (server, client)
    message = random.Random(2).randbytes(1000)

    payloads = {transfer(restricted, other, [message])[0][0] for _ in range(5)}
    assert len(payloads) == 1  # the same bytes every time: no history used
    payload = payloads.pop()
    fresh = codec_pair(config)
    assert (
        fresh[1 if side == "client" else 0].decompress(payload, fin=True, max_length=None)
        == message
    )

    first, _ = transfer(other, restricted, [message])
    second, _ = transfer(other, restricted, [message])
    assert len(second[0]) < len(first[0]) // 10  # the other side keeps its window


def test_fragmented_message_uses_one_stream() -> None:
    """Later frames of a message may refer back into earlier frames."""
    client, server = codec_pair(DeflateConfig(client_no_context_takeover=True))
    block = random.Random(3).randbytes(2000)
    payloads, decoded = transfer(client, server, [block, block, block])
    assert decoded == block * 3
    assert len(payloads[1]) < 100
    assert len(payloads[2]) < 100
    assert all(p.endswith(EMPTY_BLOCK) for p in payloads[:-1])  # only the last is stripped
    assert not payloads[-1].endswith(EMPTY_BLOCK)


# --------------------------------------------------------------------------
# The codec: window sizes


@pytest.mark.parametrize("bits", WINDOW_BITS)
@pytest.mark.parametrize("side", ["client", "server"])
def test_compressor_honours_window_bits(bits: int, side: str) -> None:
    """Checked by an inflater that enforces exactly 2**bits bytes of window,
    over messages full of repeats at distances around the limit."""
    config = (
        DeflateConfig(client_max_window_bits=bits)
        if side == "client"
        else DeflateConfig(server_max_window_bits=bits)
    )
    client, server = codec_pair(config, DeflateConfig(compress_level=9))
    sender = client if side == "client" else server
    strict = StrictInflater(bits)
    total_in = total_out = 0
    for message in window_testing_messages(4):
        payload = sender.compress(message, fin=True)
        assert strict.feed(payload + EMPTY_BLOCK) == message
        total_in += len(message)
        total_out += len(payload)
    assert total_out < total_in  # and it still compresses


def test_client_honours_window_8_chosen_by_server() -> None:
    """The server may pick 8 for a client that offered no value; we keep to it."""
    client, _ = codec_pair(DeflateConfig(), DeflateConfig(client_max_window_bits=8))
    assert client.client_max_window_bits == 8
    strict = StrictInflater(8)
    for message in window_testing_messages(4):
        assert strict.feed(client.compress(message, fin=True) + EMPTY_BLOCK) == message


def test_strict_inflater_catches_wide_windows() -> None:
    """The oracle above does fail streams that use too wide a window."""
    message = window_testing_messages(1)[0]
    with pytest.raises(zlib.error, match="invalid distance too far back"):
        StrictInflater(9).feed(raw_deflate(message, 10) + EMPTY_BLOCK)
    with pytest.raises(zlib.error, match="invalid distance too far back"):
        StrictInflater(8).feed(raw_deflate(message, 15) + EMPTY_BLOCK)


def test_zlib_cannot_deflate_with_window_8() -> None:
    """Why window 8 needs a special case (see the module docstring)."""
    with pytest.raises(ValueError, match="Invalid initialization option"):
        zlib.compressobj(6, zlib.DEFLATED, -8)
    assert zlib.decompressobj(-8).decompress(raw_deflate(b"ok")) == b"ok"


@pytest.mark.parametrize("bits", WINDOW_BITS)
def test_decompressor_accepts_agreed_window(bits: int) -> None:
    """A peer using its full agreed window is understood; a peer that asked
    zlib for 8 got 9 from old zlib, which we accept as well."""
    _, server = codec_pair(DeflateConfig(client_max_window_bits=bits))
    compressor = zlib.compressobj(9, zlib.DEFLATED, -max(bits, 9))
    for message in window_testing_messages(4):
        payload = compressor.compress(message) + compressor.flush(zlib.Z_SYNC_FLUSH)
        assert server.decompress(payload[:-4], fin=True, max_length=None) == message


def test_decompressor_reads_window_9_when_8_was_agreed() -> None:
    """The second message refers 300 bytes back, into the first: fine for a
    9-bit window, too far for an 8-bit one. We inflate with 9 bits anyway."""
    first = random.Random(5).randbytes(300)
    deflater = zlib.compressobj(9, zlib.DEFLATED, -10)
    payloads = [
        deflater.compress(message) + deflater.flush(zlib.Z_SYNC_FLUSH)
        for message in (first, first[:100])
    ]
    strict = StrictInflater(8)
    assert strict.feed(payloads[0]) == first
    with pytest.raises(zlib.error, match="invalid distance too far back"):
        strict.feed(payloads[1])
    _, server = codec_pair(DeflateConfig(client_max_window_bits=8))
    assert server.client_max_window_bits == 8
    assert server.decompress(payloads[0][:-4], fin=True, max_length=None) == first
    assert server.decompress(payloads[1][:-4], fin=True, max_length=None) == first[:100]


# --------------------------------------------------------------------------
# The codec: interoperability with plain zlib


def test_interop_with_zlib() -> None:
    """What we send is a raw DEFLATE stream; what zlib sends, we read."""
    messages = window_testing_messages(5)
    client, server = codec_pair()
    inflater = zlib.decompressobj(-15)
    for message in messages:
        assert inflater.decompress(client.compress(message, fin=True) + EMPTY_BLOCK) == message
    deflater = zlib.compressobj(9, zlib.DEFLATED, -15, 9)
    for message in messages:
        payload = deflater.compress(message) + deflater.flush(zlib.Z_SYNC_FLUSH)
        assert client.decompress(payload[:-4], fin=True, max_length=None) == message
    # A peer that flushes with Z_FULL_FLUSH, or finishes the stream, is fine too.
    deflater = zlib.compressobj(6, zlib.DEFLATED, -15)
    for message in messages:
        payload = deflater.compress(message) + deflater.flush(zlib.Z_FULL_FLUSH)
        assert server.decompress(payload[:-4], fin=True, max_length=None) == message
    for message in messages:
        deflater = zlib.compressobj(6, zlib.DEFLATED, -15)
        payload = deflater.compress(message) + deflater.flush(zlib.Z_FINISH)
        assert server.decompress(payload, fin=True, max_length=None) == message


@given(data=st.binary(max_size=5000))
def test_interop_with_zlib_property(data: bytes) -> None:
    client, server = codec_pair(DeflateConfig(client_no_context_takeover=True))
    payload = client.compress(data, fin=True)
    assert zlib.decompressobj(-15).decompress(payload + EMPTY_BLOCK) == data
    assert server.decompress(raw_deflate(data), fin=True, max_length=len(data)) == data


# --------------------------------------------------------------------------
# The codec: limits and bad input


@pytest.fixture(scope="module")
def gigabyte_bomb() -> bytes:
    """About 1 MB of DEFLATE that expands to 1 GiB of zeros."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    zeros = bytes(1 << 24)
    parts = [compressor.compress(zeros) for _ in range(64)]
    parts.append(compressor.flush(zlib.Z_SYNC_FLUSH))
    return b"".join(parts)[:-4]


def test_small_bomb_is_refused() -> None:
    bomb = raw_deflate(bytes(10_000_000))
    assert len(bomb) < 10_500
    _, server = codec_pair()
    with pytest.raises(PayloadTooBig, match="more than 1000 bytes"):
        server.decompress(bomb, fin=True, max_length=1000)


def test_gigabyte_bomb_stays_within_memory(gigabyte_bomb: bytes) -> None:
    limit = 1 << 20
    _, server = codec_pair()
    tracemalloc.start()
    try:
        with pytest.raises(PayloadTooBig):
            server.decompress(gigabyte_bomb, fin=True, max_length=limit)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # The output buffer (limit + 1), a copy of the input with 00 00 ff ff
    # appended, its unconsumed tail, and zlib's window: nowhere near 1 GiB.
    assert peak < limit + 3 * len(gigabyte_bomb) + (1 << 20)


def stream_in_chunks(codec: PerMessageDeflate, payload: bytes, budget: int) -> int:
    """Decompress ``payload`` as the machine does: chunk by chunk, a shrinking budget."""
    chunk_size = 4096
    for start in range(0, len(payload), chunk_size):
        fin = start + chunk_size >= len(payload)
        out = codec.decompress(payload[start : start + chunk_size], fin=fin, max_length=budget)
        budget -= len(out)
    return budget


def test_gigabyte_bomb_streamed_in_chunks(gigabyte_bomb: bytes) -> None:
    budget = 4 << 20
    _, server = codec_pair()
    tracemalloc.start()
    try:
        with pytest.raises(PayloadTooBig):
            stream_in_chunks(server, gigabyte_bomb, budget)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # zlib assembles one call's output in blocks and joins them, briefly
    # holding two copies: bounded by the budget, not by the 1 GiB.
    assert peak < 3 * budget


def test_streaming_within_budget() -> None:
    message = window_testing_messages(1)[0] * 10
    client, server = codec_pair()
    payload = client.compress(message, fin=True)
    assert stream_in_chunks(server, payload, len(message)) == 0


@pytest.mark.parametrize("fin", [True, False])
def test_max_length_is_exact(fin: bool) -> None:
    message = random.Random(4).randbytes(100) * 30
    client, server = codec_pair()
    payload = client.compress(message, fin=fin)
    assert server.decompress(payload, fin=fin, max_length=len(message)) == message
    client, server = codec_pair()
    payload = client.compress(message, fin=fin)
    with pytest.raises(PayloadTooBig, match=f"more than {len(message) - 1} bytes"):
        server.decompress(payload, fin=fin, max_length=len(message) - 1)


def test_max_length_zero() -> None:
    _, server = codec_pair()
    assert server.decompress(b"\x00", fin=True, max_length=0) == b""
    with pytest.raises(PayloadTooBig):
        server.decompress(raw_deflate(b"x"), fin=True, max_length=0)


def test_negative_max_length_is_a_bug() -> None:
    _, server = codec_pair()
    with pytest.raises(ValueError, match="max_length"):
        server.decompress(b"\x00", fin=True, max_length=-1)


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(b"\xff\xff\xff\xff", id="reserved-block-type"),
        pytest.param(bytes.fromhex("0005000000"), id="stored-length-mismatch"),
        pytest.param(bytes.fromhex("f200110000"), id="distance-too-far"),
    ],
)
def test_invalid_data_is_a_protocol_error(payload: bytes) -> None:
    _, server = codec_pair()
    with pytest.raises(ProtocolError, match="invalid compressed data") as info:
        server.decompress(payload, fin=True, max_length=None)
    assert isinstance(info.value.__cause__, zlib.error)


@given(garbage=st.binary(max_size=200), fin=st.booleans())
def test_garbage_raises_only_protocol_error(garbage: bytes, fin: bool) -> None:
    _, server = codec_pair()
    try:
        out = server.decompress(garbage, fin=fin, max_length=1000)
    except (ProtocolError, PayloadTooBig):
        return
    assert len(out) <= 1000


def test_bfinal_then_next_message_starts_fresh() -> None:
    """After a peer finishes its DEFLATE stream, its next message decodes
    with no history, so a reference back fails cleanly rather than corrupts."""
    _, server = codec_pair()
    deflater = zlib.compressobj(6, zlib.DEFLATED, -15)
    first = deflater.compress(b"Hello") + deflater.flush(zlib.Z_FINISH)
    assert server.decompress(first, fin=True, max_length=None) == b"Hello"
    assert server.decompress(raw_deflate(b"again"), fin=True, max_length=None) == b"again"
    assert server.decompress(first, fin=True, max_length=None) == b"Hello"
    with pytest.raises(ProtocolError):
        server.decompress(bytes.fromhex("f200110000"), fin=True, max_length=None)


def test_data_after_bfinal_is_ignored_within_the_message() -> None:
    _, server = codec_pair()
    deflater = zlib.compressobj(6, zlib.DEFLATED, -15)
    first = deflater.compress(b"Hello") + deflater.flush(zlib.Z_FINISH)
    assert server.decompress(first, fin=False, max_length=None) == b"Hello"
    assert server.decompress(b"\xff" * 1000, fin=False, max_length=None) == b""
    assert server.decompress(b"junk", fin=True, max_length=None) == b""
    assert server.decompress(raw_deflate(b"next"), fin=True, max_length=None) == b"next"


# --------------------------------------------------------------------------
# The codec: odds and ends


def test_repr() -> None:
    client, server = codec_pair(
        DeflateConfig(server_no_context_takeover=True, client_max_window_bits=10)
    )
    assert repr(client) == (
        "PerMessageDeflate(client, server_no_context_takeover, client_max_window_bits=10)"
    )
    assert repr(server) == (
        "PerMessageDeflate(server, server_no_context_takeover, client_max_window_bits=10)"
    )
    assert repr(codec_pair()[0]) == "PerMessageDeflate(client)"


def test_name_and_min_size() -> None:
    client, server = codec_pair(DeflateConfig(min_size=100), DeflateConfig(min_size=0))
    assert client.name == server.name == PerMessageDeflate.name == "permessage-deflate"
    assert (client.min_size, server.min_size) == (100, 0)


def test_codec_accepts_bytes_like_input() -> None:
    client, server = codec_pair()
    payload = client.compress(bytearray(b"data" * 20), fin=True)  # type: ignore[arg-type]  # bytes-like works
    assert server.decompress(memoryview(payload), fin=True, max_length=None) == b"data" * 20  # type: ignore[arg-type]  # bytes-like works
