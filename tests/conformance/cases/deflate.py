"""Categories 12 and 13: permessage-deflate (RFC 7692).

12.x echo payloads of several kinds and sizes over the default offer (what a
browser sends: ``permessage-deflate; client_max_window_bits``).

13.x go through the parameters. In the server role the peer offers every
combination of ``server_no_context_takeover``, ``client_no_context_takeover``,
``server_max_window_bits`` (absent, 9-15) and ``client_max_window_bits``
(absent, without a value, 9-15), checks our answer against RFC 7692 §7.1,
and then compresses with the window and context agreed for the client and
inflates our messages with exactly the window and context agreed for the
server: a server that keeps context it promised to drop, or uses a bigger
window than agreed, produces data the peer cannot inflate. In the client
role our client is configured with the same combinations (a ``None``
``client_max_window_bits`` is offered without a value) and the peer, as a
server, accepts, answers, and checks the same way.
"""

from __future__ import annotations

import itertools
import random
import zlib

from ..model import (
    Case,
    ClientDeflate,
    DeflateOffer,
    Event,
    Expect,
    F,
    ImplConfig,
    Role,
    SendMessage,
)
from ..wire import BARE, BINARY, CONT, PING, TEXT, DeflateParams
from . import Options, binary, case, echo, fail, send, text
from .limits import text_payload

__all__ = ["cases"]

KIB = 1024
BITS = (None, 9, 10, 11, 12, 13, 14, 15)
SERVER_ONLY: tuple[Role, ...] = ("server",)
CLIENT_ONLY: tuple[Role, ...] = ("client",)


def cases() -> list[Case]:
    return [*_payloads(), *_parameters(), *_offers(), *_responses(), *_errors()]


# -- payloads ----------------------------------------------------------------------


def _payload(kind: str, size: int, seed: int) -> tuple[bytes, bool]:
    """``(data, is_binary)``: deterministic content of each kind."""
    rng = random.Random(f"{kind}-{size}-{seed}")
    if kind == "text-repetitive":
        return text_payload(size), False
    if kind == "text-random":
        alphabet = "abcdefghijklmnopqrstuvwxyz κόσμε€𝄞 ÄÖÜß0123456789"
        chars = "".join(rng.choice(alphabet) for _ in range(size))
        return chars.encode()[:size].decode("utf-8", "ignore").encode().ljust(size, b"*"), False
    if kind == "text-json":
        items = [
            f'{{"id": {rng.randrange(10**6)}, "name": "user{rng.randrange(999)}", "ok": true}}'
            for _ in range(size // 40 + 1)
        ]
        return ("[" + ", ".join(items) + "]").encode()[:size], False
    if kind == "binary-repetitive":
        return bytes(rng.randrange(4) for _ in range(64)) * (size // 64) + bytes(size % 64), True
    if kind == "binary-random":
        return rng.randbytes(size), True
    raise AssertionError(kind)


KINDS = ("text-repetitive", "text-random", "text-json", "binary-repetitive", "binary-random")
FAST_SIZES = (16, 64, 256, 1024, 4096)
SLOW_SIZES = (8 * KIB, 16 * KIB, 32 * KIB, 64 * KIB, 128 * KIB)


def _echo_many(data_list: list[tuple[bytes, bool]]) -> tuple[list[SendMessage], list[Event]]:
    sends = [SendMessage(data, binary=is_binary) for data, is_binary in data_list]
    events = [binary(data) if is_binary else text(data) for data, is_binary in data_list]
    return sends, events


def _payloads() -> list[Case]:
    out: list[Case] = []
    offer = DeflateOffer()
    for section, kind in enumerate(KINDS, 1):
        for index, size in enumerate(FAST_SIZES + SLOW_SIZES, 1):
            slow = size in SLOW_SIZES
            count = 100 if slow else 10
            messages = [_payload(kind, size, seed) for seed in range(count)]
            sends, events = _echo_many(messages)
            out.append(
                echo(
                    f"12.{section}.{index}",
                    f"{count} {kind} messages of {size} bytes, compressed both ways",
                    sends,
                    events,
                    Options(deflate=offer, slow=slow, timeout=120 if slow else 10),
                )
            )
    return out


# -- parameter combinations ----------------------------------------------------------------


def _standard_messages(big: bool) -> tuple[list[SendMessage], list[Event]]:
    """A mix of sizes and kinds, twice: the second round repeats the first,
    which context takeover compresses to almost nothing (and which a side
    that promised no context takeover must not compress by reference)."""
    sizes = (32 * KIB, 64 * KIB, 128 * KIB) if big else (16, 64, 256, 1024, 4096)
    first = [_payload(KINDS[i % len(KINDS)], size, i) for i, size in enumerate(sizes)]
    sends, events = _echo_many([*first, *first])
    plain = b"sent uncompressed, RSV1 clear, in a compressed connection"
    sends.insert(len(first), SendMessage(plain, compress=False))
    events.insert(len(first), text(plain))
    return sends, events


def _describe(params: DeflateParams) -> str:
    parts = [f"{name}={value}" if value is not None else name for name, value in params.to_params()]
    return "; ".join(parts) or "no parameters"


def _parameters() -> list[Case]:
    out: list[Case] = []
    sends, events = _standard_messages(big=False)
    big_sends, big_events = _standard_messages(big=True)
    flags = list(itertools.product((False, True), repeat=2))
    # 13.1: client_max_window_bits offered (bare or with a value); both roles.
    combos = itertools.product(flags, BITS, BITS)
    for index, ((snct, cnct), smwb, cmwb) in enumerate(combos, 1):
        offer = DeflateParams(snct, cnct, smwb, BARE if cmwb is None else cmwb)
        client = ClientDeflate(snct, cnct, smwb, cmwb)
        deflate = DeflateOffer(offers=(offer.header(),), client=client)
        impl = ImplConfig(client_deflate=client)
        out.append(
            echo(
                f"13.1.{index}",
                f"offer {_describe(offer)}",
                sends,
                events,
                Options(deflate=deflate, impl=impl),
            )
        )
    # 13.2: client_max_window_bits not offered (our client always offers it).
    for index, ((snct, cnct), smwb) in enumerate(itertools.product(flags, BITS), 1):
        offer = DeflateParams(snct, cnct, smwb, None)
        out.append(
            echo(
                f"13.2.{index}",
                f"offer {_describe(offer)}",
                sends,
                events,
                Options(deflate=DeflateOffer(offers=(offer.header(),)), roles=SERVER_ONLY),
            )
        )
    # 13.3: big messages over a subset of the combinations (slow).
    subset = itertools.product(flags, (None, 9, 15), (None, 9, 15))
    for index, ((snct, cnct), smwb, cmwb) in enumerate(subset, 1):
        offer = DeflateParams(snct, cnct, smwb, BARE if cmwb is None else cmwb)
        client = ClientDeflate(snct, cnct, smwb, cmwb)
        out.append(
            echo(
                f"13.3.{index}",
                f"messages of 32-128 KiB, offer {_describe(offer)}",
                big_sends,
                big_events,
                Options(
                    deflate=DeflateOffer(offers=(offer.header(),), client=client),
                    impl=ImplConfig(client_deflate=client),
                    slow=True,
                    timeout=60,
                ),
            )
        )
    return out


def _offers() -> list[Case]:
    """13.4: how our server picks among offers (server role)."""
    sends, events = _standard_messages(big=False)
    table: list[tuple[tuple[str, ...], bool, str]] = [
        (("x-webkit-deflate-frame, permessage-deflate",), True, "an unknown extension first"),
        (
            ("permessage-deflate; unknown_param, permessage-deflate; client_max_window_bits",),
            True,
            "a first offer with an unknown parameter (declined), then a valid one",
        ),
        (("permessage-deflate; server_max_window_bits=7",), False, "server_max_window_bits=7"),
        (("permessage-deflate; server_max_window_bits=16",), False, "server_max_window_bits=16"),
        (("permessage-deflate; server_max_window_bits",), False, "server_max_window_bits alone"),
        (("permessage-deflate; client_max_window_bits=08",), False, "a leading zero"),
        (
            ("permessage-deflate; server_no_context_takeover; server_no_context_takeover",),
            False,
            "a repeated parameter",
        ),
        (("permessage-deflate; client_no_context_takeover=1",), False, "a value on a flag"),
        (
            ("permessage-deflate; server_max_window_bits=10, permessage-deflate",),
            True,
            "two valid offers",
        ),
        (('permessage-deflate; client_max_window_bits="10"',), True, "a quoted value"),
        (("x-foo", "permessage-deflate"), True, "two header lines"),
        (("permessage-deflate; server_max_window_bits=8",), True, "server_max_window_bits=8"),
        (
            ("permessage-deflate; client_max_window_bits=9; server_max_window_bits=9",),
            True,
            "the smallest windows zlib can compress with, both ways",
        ),
    ]
    out = []
    for index, (offers, accept, what) in enumerate(table, 1):
        verb = "accepted" if accept else "declined (the connection goes on uncompressed)"
        out.append(
            echo(
                f"13.4.{index}",
                f"{what}: {' | '.join(offers)} — must be {verb}",
                sends,
                events,
                Options(
                    deflate=DeflateOffer(offers=offers, expect_accept=accept), roles=SERVER_ONLY
                ),
            )
        )
    return out


def _responses() -> list[Case]:
    """13.5: the answers a server may give, which our client must honour;
    13.6: answers it must refuse (client role)."""
    sends, events = _standard_messages(big=False)
    out: list[Case] = []
    honour: list[tuple[ClientDeflate, DeflateParams, str]] = [
        (ClientDeflate(), DeflateParams(client_no_context_takeover=True), "imposes it on us"),
        (ClientDeflate(), DeflateParams(server_no_context_takeover=True), "drops its context"),
        *(
            (ClientDeflate(), DeflateParams(client_max_window_bits=bits), "limits our window")
            for bits in range(9, 16)
        ),
        *(
            (ClientDeflate(), DeflateParams(server_max_window_bits=bits), "limits its window")
            for bits in range(9, 16)
        ),
        (
            ClientDeflate(server_max_window_bits=12),
            DeflateParams(server_max_window_bits=9),
            "answers a smaller window than asked",
        ),
        (
            ClientDeflate(client_max_window_bits=12),
            DeflateParams(client_max_window_bits=10),
            "lowers our offered window",
        ),
        (
            ClientDeflate(client_max_window_bits=12),
            DeflateParams(),
            "says nothing about our offered window (we keep our promise)",
        ),
        (
            ClientDeflate(client_no_context_takeover=True),
            DeflateParams(),
            "does not repeat our client_no_context_takeover (we keep our promise)",
        ),
        # RFC 7692 §7.1.2.2 bars the server from this, but §7.1 only makes the
        # client fail on a configuration it cannot honour; keeping to the
        # smaller window it offered honours this one, so accepting is fine
        # as long as the client keeps its promise, which the peer checks.
        (
            ClientDeflate(client_max_window_bits=10),
            DeflateParams(client_max_window_bits=12),
            "answers a bigger client window than offered (we keep to ours)",
        ),
    ]
    for index, (client, response, what) in enumerate(honour, 1):
        out.append(
            echo(
                f"13.5.{index}",
                f"the server {what}: {response.header()}",
                sends,
                events,
                Options(
                    deflate=DeflateOffer(client=client, response=response),
                    impl=ImplConfig(client_deflate=client),
                    roles=CLIENT_ONLY,
                ),
            )
        )
    refuse: list[tuple[ClientDeflate, str, str]] = [
        (ClientDeflate(), "permessage-deflate; foo", "an unknown parameter"),
        (
            ClientDeflate(server_max_window_bits=10),
            "permessage-deflate; server_max_window_bits=12",
            "a bigger server window than asked",
        ),
        (
            ClientDeflate(server_no_context_takeover=True),
            "permessage-deflate",
            "no server_no_context_takeover though asked",
        ),
        (ClientDeflate(), "permessage-deflate; client_max_window_bits", "a bare window size"),
        (ClientDeflate(), "x-foo", "an extension we did not offer"),
        (ClientDeflate(), "permessage-deflate, permessage-deflate", "the extension twice"),
        (ClientDeflate(), "permessage-deflate; server_max_window_bits=7", "a window of 7"),
        (ClientDeflate(), "permessage-deflate; client_no_context_takeover=x", "a flag's value"),
        (
            ClientDeflate(),
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "a repeated parameter",
        ),
    ]
    for index, (client, raw, what) in enumerate(refuse, 1):
        deflate = DeflateOffer(client=client, raw_response=raw)
        refused = case(
            f"13.6.{index}",
            f"the server answers {what} ({raw}): our client must fail the connection",
            [],
            Expect(),
            Options(deflate=deflate, impl=ImplConfig(client_deflate=client), roles=CLIENT_ONLY),
        )
        out.append(_refusing(refused))
    return out


def _refusing(base: Case) -> Case:
    return Case(
        base.id,
        base.description,
        base.actions,
        base.expect,
        roles=base.roles,
        deflate=base.deflate,
        impl=base.impl,
        refuse_handshake=True,
    )


# -- broken compressed frames -------------------------------------------------------------------


def _raw_deflate(data: bytes, *, final: bool = False) -> bytes:
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    if final:
        return compressor.compress(data) + compressor.flush(zlib.Z_FINISH)
    out = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
    return out[:-4]


def _errors() -> list[Case]:
    """13.7: compressed frames that are broken, or odd but valid."""
    options = Options(deflate=DeflateOffer())
    hello = b"Hello, compressed world! " * 4
    squeezed = _raw_deflate(hello)
    bomb = _raw_deflate(bytes(2 * 1024 * 1024))
    return [
        fail(
            "13.7.1",
            "RSV1 on the continuation frame of a compressed message",
            [send(F(TEXT, squeezed[:5], fin=False, rsv=4), F(CONT, squeezed[5:], rsv=4))],
            options=options,
        ),
        fail("13.7.2", "RSV1 on a ping", [send(F(PING, b"ping", rsv=4))], options=options),
        case(
            "13.7.3",
            "RSV1 on a message that is not valid DEFLATE data: 1007 (1002 accepted)",
            [send(F(BINARY, b"\xff\xfe\xfd\xfc garbage", rsv=4))],
            Expect(closed_by="impl", codes=frozenset({1007, 1002})),
            options,
        ),
        fail(
            "13.7.4",
            f"a {len(bomb)}-byte message that inflates to 2 MiB, over the 1 MiB max_size",
            [send(F(BINARY, bomb, rsv=4))],
            code=1009,
            options=options,
        ),
        echo(
            "13.7.5",
            "a compressed message ending in a final (BFINAL) block, allowed by RFC 7692 §7.2.3.4",
            [send(F(TEXT, _raw_deflate(hello, final=True), rsv=4))],
            [text(hello)],
            options,
        ),
        echo(
            "13.7.6",
            "a compressed message in 1-byte fragments",
            [send(*_fragments(squeezed, TEXT))],
            [text(hello)],
            options,
        ),
        echo(
            "13.7.7",
            "an empty compressed message as a single 0x00 byte (RFC 7692 §7.2.3.6)",
            [send(F(TEXT, b"\x00", rsv=4))],
            [text(b"")],
            options,
        ),
        echo(
            "13.7.8",
            "an empty compressed message with an empty payload",
            [send(F(BINARY, b"", rsv=4))],
            [binary(b"")],
            options,
        ),
        fail(
            "13.7.9",
            "compressed text that inflates to invalid UTF-8",
            [send(F(TEXT, _raw_deflate(b"valid, then \xed\xa0\x80 a surrogate"), rsv=4))],
            code=1007,
            options=options,
        ),
    ]


def _fragments(payload: bytes, opcode: int) -> list[F]:
    last = len(payload) - 1
    return [
        F(opcode if i == 0 else CONT, payload[i : i + 1], fin=i == last, rsv=4 if i == 0 else 0)
        for i in range(len(payload))
    ]
