"""Category 9 (big messages, slow) and category 10 (fragment sizes)."""

from __future__ import annotations

from ..model import Case, F, ImplConfig, SendMessage
from ..wire import BINARY
from . import Options, binary, echo, fail, send, text

__all__ = ["cases", "text_payload"]

KIB = 1024
MIB = 1024 * KIB

# Category 9 runs against an implementation without a message size limit.
UNLIMITED = ImplConfig(max_size=None)
SLOW = Options(slow=True, impl=UNLIMITED, timeout=180, wait=120)

_UNIT = "Hello κόσμε, €5 𝄞! ".encode()


def text_payload(size: int) -> bytes:
    """``size`` bytes of valid UTF-8 mixing 1- to 4-byte characters."""
    data = (_UNIT * (size // len(_UNIT) + 1))[:size]
    # Cut back to a character boundary and pad with ASCII.
    while data and (data[-1] & 0xC0) == 0x80:
        data = data[:-1]
    if data and data[-1] >= 0xC0:
        data = data[:-1]
    return data + b"*" * (size - len(data))


def binary_payload(size: int) -> bytes:
    pattern = bytes(range(256)) * (size // 256 + 1)
    return pattern[:size]


def _size(n: int) -> str:
    if n >= MIB and n % MIB == 0:
        return f"{n // MIB} MiB"
    if n >= KIB and n % KIB == 0:
        return f"{n // KIB} KiB"
    return f"{n} B"


def cases() -> list[Case]:
    return [*_limits(), *_over_limit(), *_fragments()]


def _over_limit() -> list[Case]:
    """9.9: the default max_size (1 MiB): up to it echoed, past it 1009."""
    limit = MIB
    text_data, binary_data = text_payload(limit), binary_payload(limit)
    return [
        echo(
            "9.9.1",
            "text message of exactly max_size (1 MiB)",
            [SendMessage(text_data)],
            [text(text_data)],
        ),
        echo(
            "9.9.2",
            "binary message of exactly max_size (1 MiB) in 64 KiB fragments",
            [SendMessage(binary_data, binary=True, fragment=64 * KIB)],
            [binary(binary_data)],
        ),
        fail(
            "9.9.3",
            "text message of max_size + 1 bytes in one frame",
            [SendMessage(text_payload(limit + 1))],
            code=1009,
        ),
        fail(
            "9.9.4",
            "binary message of 2 MiB in 64 KiB fragments, over max_size",
            [SendMessage(binary_payload(2 * MIB), binary=True, fragment=64 * KIB)],
            code=1009,
        ),
        fail(
            "9.9.5",
            "a frame header announcing 2**62 bytes: failed on the header",
            [send(F(BINARY, b"", length_form="64", declared_length=1 << 62))],
            code=1009,
        ),
    ]


def _limits() -> list[Case]:
    out: list[Case] = []
    sizes = (64 * KIB, 256 * KIB, MIB, 4 * MIB, 8 * MIB, 16 * MIB)
    fragments = (64, 256, KIB, 4 * KIB, 16 * KIB, 64 * KIB, 256 * KIB, MIB, 4 * MIB)
    chops = (64, 256, KIB, 4 * KIB, 64 * KIB, MIB, 4 * MIB)
    counts = (0, 16, 64, 256, KIB, 4 * KIB)
    for kind, section in (("text", 0), ("binary", 1)):
        is_binary = kind == "binary"
        make = binary_payload if is_binary else text_payload
        event = binary if is_binary else text
        for index, size in enumerate(sizes, 1):
            data = make(size)
            out.append(
                echo(
                    f"9.{1 + section}.{index}",
                    f"{kind} message of {_size(size)} in one frame",
                    [SendMessage(data, binary=is_binary)],
                    [event(data)],
                    SLOW,
                )
            )
        big = make(16 * MIB)
        for index, fragment in enumerate(fragments, 1):
            out.append(
                echo(
                    f"9.{3 + section}.{index}",
                    f"{kind} message of 16 MiB in fragments of {_size(fragment)}",
                    [SendMessage(big, binary=is_binary, fragment=fragment)],
                    [event(big)],
                    SLOW,
                )
            )
        for index, chop in enumerate(chops, 1):
            out.append(
                echo(
                    f"9.{5 + section}.{index}",
                    f"{kind} message of 16 MiB in one frame, written in chops of {_size(chop)}",
                    [SendMessage(big, binary=is_binary, chop=chop)],
                    [event(big)],
                    SLOW,
                )
            )
        for index, size in enumerate(counts, 1):
            data = make(size)
            out.append(
                echo(
                    f"9.{7 + section}.{index}",
                    f"1000 {kind} messages of {_size(size)}, back to back",
                    [SendMessage(data, binary=is_binary, repeat=1000)],
                    [event(data)] * 1000,
                    SLOW,
                )
            )
    return out


def _fragments() -> list[Case]:
    out: list[Case] = []
    sizes = (1, 2, 3, 4, 7, 16, 64, 128, 256, 1000, 1300, 4096, 16384, 65535, 65536)
    for kind, section in (("text", 1), ("binary", 2)):
        is_binary = kind == "binary"
        data = binary_payload(64 * KIB) if is_binary else text_payload(64 * KIB)
        event = binary(data) if is_binary else text(data)
        for index, fragment in enumerate(sizes, 1):
            out.append(
                echo(
                    f"10.{section}.{index}",
                    f"{kind} message of 64 KiB in fragments of {_size(fragment)}"
                    + (", code points split across frames" if not is_binary else ""),
                    [SendMessage(data, binary=is_binary, fragment=fragment)],
                    [event],
                )
            )
    return out
