"""The optional C accelerator (``trio_ws/_speedups.c``) against the pure-Python masking.

Locally the C tests skip when the extension was not built (no compiler); under
``CI=true`` they fail instead, so CI cannot quietly ship without it.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from tests.helpers import IN_CI
from trio_ws.protocol.frames import _py_apply_mask, _py_mask_frame

if TYPE_CHECKING:
    from typing_extensions import Buffer

    from trio_ws.protocol.frames import MessageBufferType

    MaskFunction = Callable[[Buffer, Buffer], bytes]
    MaskFrameFunction = Callable[[Buffer, Buffer, Buffer], bytes]

MASK = b"\x37\xfa\x21\x3d"  # RFC 6455 §5.7
# The C code XORs 16 bytes at a time, then 8, then byte by byte; above 64 KiB
# it also releases the GIL. These lengths reach every tail on both paths.
_GIL_THRESHOLD = 64 * 1024
LENGTHS = [*range(48), *range(_GIL_THRESHOLD - 16, _GIL_THRESHOLD + 17)]


def _reference(data: bytes, mask: bytes) -> bytes:
    """RFC 6455 §5.3 spelled out, one byte at a time: shares no code with either path."""
    return bytes(byte ^ mask[i & 3] for i, byte in enumerate(data))


@pytest.fixture(scope="module")  # module scope: Hypothesis rejects function-scoped fixtures
def c_apply_mask() -> MaskFunction:
    """The accelerator's ``apply_mask``: skipped if it was not built, failed under CI."""
    try:
        from trio_ws._speedups import apply_mask
    except ImportError as exc:
        if IN_CI:
            pytest.fail(f"CI=true but the C accelerator is not built: {exc}")
        pytest.skip("the C accelerator is not built (no compiler?)")
    return apply_mask


def test_accelerator_is_built_in_ci(c_apply_mask: MaskFunction) -> None:
    """In CI a failed build of the optional extension must not go unnoticed."""
    assert c_apply_mask(b"", MASK) == b""


@pytest.mark.parametrize("length", LENGTHS)
def test_every_tail_and_alignment(c_apply_mask: MaskFunction, length: int) -> None:
    data = random.Random(length).randbytes(length + 15)
    for offset in range(16):
        # Slicing a memoryview moves the start off any alignment the
        # allocator gave us, so the unaligned loads are exercised too.
        view = memoryview(data)[offset : offset + length]
        result = c_apply_mask(view, MASK)
        assert type(result) is bytes
        assert result == _py_apply_mask(view, MASK), f"offset {offset}"
        if length < 64:  # the byte-by-byte reference is too slow for 64 KiB x 16
            assert result == _reference(bytes(view), MASK), f"offset {offset}"


def _as(kind: str, data: bytes) -> bytes | bytearray | memoryview:
    if kind == "bytearray":
        return bytearray(data)
    if kind == "memoryview":
        return memoryview(data)
    if kind == "unaligned memoryview":
        return memoryview(b"\x00\x00\x00" + data)[3:]
    if kind == "strided memoryview":
        # Every other byte of a buffer twice as long: not contiguous.
        return memoryview(bytes(b for byte in data for b in (byte, 0xAA)))[::2]
    return data


KINDS = ["bytes", "bytearray", "memoryview", "unaligned memoryview"]


@given(
    length=st.integers(min_value=0, max_value=70_000),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
    mask=st.binary(min_size=4, max_size=4),
    kind=st.sampled_from(KINDS),
)
@example(length=0, seed=0, mask=MASK, kind="bytes")
@example(length=70_000, seed=1, mask=b"\xff\xff\xff\xff", kind="unaligned memoryview")
def test_c_and_python_agree(
    c_apply_mask: MaskFunction, length: int, seed: int, mask: bytes, kind: str
) -> None:
    data = _as(kind, random.Random(seed).randbytes(length))
    result = c_apply_mask(data, mask)
    assert result == _py_apply_mask(data, mask)
    assert c_apply_mask(result, mask) == bytes(data)  # masking is an involution


@given(data=st.binary(max_size=300), mask=st.binary(min_size=4, max_size=4))
def test_c_matches_the_rfc_byte_by_byte(
    c_apply_mask: MaskFunction, data: bytes, mask: bytes
) -> None:
    assert c_apply_mask(data, mask) == _reference(data, mask)


@pytest.mark.parametrize("kind", [*KINDS, "strided memoryview"])
def test_all_buffer_kinds(c_apply_mask: MaskFunction, kind: str) -> None:
    raw = bytes(range(256)) * 5
    data = _as(kind, raw)
    assert c_apply_mask(data, MASK) == _reference(bytes(data), MASK) == _py_apply_mask(data, MASK)
    assert c_apply_mask(data, bytearray(MASK)) == c_apply_mask(data, memoryview(MASK))


def test_input_is_left_alone(c_apply_mask: MaskFunction) -> None:
    data = bytearray(b"payload" * 20)
    c_apply_mask(data, MASK)
    assert data == b"payload" * 20
    data.extend(b"!")  # the buffer export was released: resizing works again


@pytest.mark.parametrize("mask", [b"", b"\x01", b"abc", b"abcde", bytes(8)])
def test_mask_must_be_four_bytes(c_apply_mask: MaskFunction, mask: bytes) -> None:
    with pytest.raises(ValueError, match="mask must be exactly 4 bytes"):
        c_apply_mask(b"data", mask)
    with pytest.raises(ValueError, match="mask must be exactly 4 bytes"):
        c_apply_mask(bytearray(b"data"), bytearray(mask))


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(("text", MASK), id="str-data"),
        pytest.param((b"data", "abcd"), id="str-mask"),
        pytest.param((None, MASK), id="none-data"),
        pytest.param((b"data",), id="one-arg"),
        pytest.param((b"data", MASK, MASK), id="three-args"),
    ],
)
def test_bad_arguments_raise_type_error(
    c_apply_mask: MaskFunction, args: tuple[object, ...]
) -> None:
    with pytest.raises(TypeError):
        c_apply_mask(*args)  # type: ignore[arg-type]  # wrong on purpose


@pytest.fixture(scope="module")
def c_mask_frame(c_apply_mask: MaskFunction) -> MaskFrameFunction:
    """The accelerator's ``mask_frame`` (built with ``apply_mask``)."""
    from trio_ws._speedups import mask_frame

    return mask_frame


@given(
    header=st.binary(max_size=14),
    length=st.integers(min_value=0, max_value=70_000),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
    mask=st.binary(min_size=4, max_size=4),
    kind=st.sampled_from(KINDS),
)
@example(header=b"", length=0, seed=0, mask=MASK, kind="bytes")
@example(header=b"\x82\xfe\x01\x00", length=_GIL_THRESHOLD + 3, seed=2, mask=MASK, kind="bytes")
def test_mask_frame_is_the_header_then_the_masked_payload(
    c_mask_frame: MaskFrameFunction, header: bytes, length: int, seed: int, mask: bytes, kind: str
) -> None:
    data = _as(kind, random.Random(seed).randbytes(length))
    result = c_mask_frame(header, data, mask)
    assert type(result) is bytes
    assert result == header + _py_apply_mask(data, mask) == _py_mask_frame(header, data, mask)


@pytest.mark.parametrize("kind", [*KINDS, "strided memoryview"])
def test_mask_frame_takes_every_buffer_kind(c_mask_frame: MaskFrameFunction, kind: str) -> None:
    raw = bytes(range(256)) * 5
    data = _as(kind, raw)
    # (A header is any contiguous bytes-like object.)
    header = _as(kind if kind in KINDS else "bytes", b"\x82\x7e\x05\x00")
    expected = b"\x82\x7e\x05\x00" + _reference(bytes(data), MASK)
    assert c_mask_frame(header, data, MASK) == expected


@pytest.mark.parametrize(
    "args",
    [
        pytest.param((b"h", b"data", b"abc"), id="short-mask"),
        pytest.param((b"h", b"data", b"abcde"), id="long-mask"),
    ],
)
def test_mask_frame_mask_must_be_four_bytes(
    c_mask_frame: MaskFrameFunction, args: tuple[bytes, bytes, bytes]
) -> None:
    with pytest.raises(ValueError, match="mask must be exactly 4 bytes"):
        c_mask_frame(*args)


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(("h", b"data", MASK), id="str-header"),
        pytest.param((b"h", "data", MASK), id="str-data"),
        pytest.param((b"h", b"data", "abcd"), id="str-mask"),
        pytest.param((b"h", b"data"), id="two-args"),
        pytest.param((b"h", b"data", MASK, MASK), id="four-args"),
    ],
)
def test_mask_frame_bad_arguments_raise_type_error(
    c_mask_frame: MaskFrameFunction, args: tuple[object, ...]
) -> None:
    with pytest.raises(TypeError):
        c_mask_frame(*args)  # type: ignore[arg-type]  # wrong on purpose


def _have_speedups_in_subprocess(**env: str) -> bool:
    environ = {k: v for k, v in os.environ.items() if k != "TRIO_WS_NO_SPEEDUPS"}
    environ.update(env)
    output = subprocess.run(
        [sys.executable, "-c", "import trio_ws.protocol.frames as f; print(f.HAVE_SPEEDUPS)"],
        env=environ,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.strip()
    assert output in {"True", "False"}, output
    return output == "True"


def test_env_var_disables_the_accelerator() -> None:
    assert _have_speedups_in_subprocess(TRIO_WS_NO_SPEEDUPS="1") is False


def test_accelerator_is_used_when_built(c_apply_mask: MaskFunction) -> None:
    assert _have_speedups_in_subprocess() is True


# -- MessageBuffer ------------------------------------------------------------------


@pytest.fixture(scope="module")
def c_message_buffer(c_apply_mask: MaskFunction) -> type[MessageBufferType]:
    """The accelerator's ``MessageBuffer`` (built with ``apply_mask``)."""
    from trio_ws._speedups import MessageBuffer

    return MessageBuffer


@given(
    cuts=st.lists(st.integers(min_value=0, max_value=70_000), max_size=6),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
    masked=st.booleans(),
    kind=st.sampled_from(KINDS),
)
@example(cuts=[_GIL_THRESHOLD + 5], seed=3, masked=True, kind="bytes")
@example(cuts=[1, 2, 3], seed=4, masked=False, kind="unaligned memoryview")
def test_message_buffer_assembles_the_pieces_in_order(
    c_message_buffer: type[MessageBufferType],
    cuts: list[int],
    seed: int,
    masked: bool,
    kind: str,
) -> None:
    payload = random.Random(seed).randbytes(70_000)
    wire = _py_apply_mask(payload, MASK) if masked else payload
    buffer = c_message_buffer(len(payload))
    start = 0
    for cut in [*sorted(cuts), len(wire)]:
        # Each piece gets the mask in the phase of its first byte, as the
        # state machine passes it.
        phase = start & 3
        mask = MASK[phase:] + MASK[:phase] if masked else None
        buffer.append(_as(kind, wire[start:cut]), mask)
        start = max(start, cut)
        assert buffer.missing == len(payload) - start
    message = buffer.take()
    assert type(message) is bytes
    assert message == payload


def test_message_buffer_hands_out_only_a_whole_message(
    c_message_buffer: type[MessageBufferType],
) -> None:
    buffer = c_message_buffer(10)
    buffer.append(b"12345", None)
    with pytest.raises(ValueError, match="5 of 10 bytes written"):
        buffer.take()
    with pytest.raises(ValueError, match="6 bytes do not fit in the 5 left"):
        buffer.append(b"678901", None)
    assert buffer.missing == 5  # a refused piece writes nothing
    buffer.append(bytearray(b"67890"), None)
    assert buffer.take() == b"1234567890"
    assert buffer.missing == 0
    with pytest.raises(ValueError, match="taken"):
        buffer.take()
    with pytest.raises(ValueError, match="taken"):
        buffer.append(b"", None)
    assert c_message_buffer(0).take() == b""


@pytest.mark.parametrize(
    ("args", "error"),
    [
        pytest.param((b"data", b"abc"), ValueError, id="short-mask"),
        pytest.param((b"data", b"abcde"), ValueError, id="long-mask"),
        pytest.param(("data", None), TypeError, id="str-data"),
        pytest.param((b"data", "abcd"), TypeError, id="str-mask"),
        pytest.param((b"data",), TypeError, id="one-arg"),
        pytest.param((_as("strided memoryview", b"data"), None), BufferError, id="strided"),
    ],
)
def test_message_buffer_bad_pieces_are_refused(
    c_message_buffer: type[MessageBufferType], args: tuple[object, ...], error: type[Exception]
) -> None:
    buffer = c_message_buffer(4)
    with pytest.raises(error):
        buffer.append(*args)  # type: ignore[arg-type]  # wrong on purpose
    assert buffer.missing == 4
    buffer.append(b"data", None)
    assert buffer.take() == b"data"


@pytest.mark.parametrize(
    ("args", "kwargs", "error"),
    [
        pytest.param((-1,), {}, ValueError, id="negative"),
        pytest.param(("4",), {}, TypeError, id="str"),
        pytest.param((), {"size": 4}, TypeError, id="keyword"),
        pytest.param((2**62,), {}, MemoryError, id="too-large"),
    ],
)
def test_message_buffer_size_is_checked(
    c_message_buffer: type[MessageBufferType],
    args: tuple[object, ...],
    kwargs: dict[str, object],
    error: type[Exception],
) -> None:
    with pytest.raises(error):
        c_message_buffer(*args, **kwargs)  # type: ignore[arg-type]  # wrong on purpose


def test_machine_uses_the_message_buffer_when_built(
    c_message_buffer: type[MessageBufferType],
) -> None:
    from trio_ws.protocol import frames

    assert frames.MessageBuffer is c_message_buffer
