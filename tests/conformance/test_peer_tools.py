"""The fuzzing peer's own tools: a judge must be checked before it judges.

Its UTF-8 validator against CPython's codec, its frames against a plain
reading of RFC 6455 §5.2, its deflate codec's context checks, and the
grading rules of ``model.judge`` on hand-made observations.
"""

from __future__ import annotations

import zlib

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from .cases import all_cases
from .model import Case, Expect, Observation, Outcome, judge
from .wire import (
    BARE,
    DeflateCodec,
    DeflateParams,
    WireError,
    build_frame,
    check_response_against_offer,
    is_valid_utf8,
    mask,
    parse_extensions,
    parse_frame,
    parse_pmd_params,
    utf8_fail_index,
)


def _python_says_valid(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


@given(st.binary(max_size=40))
@example(b"\xed\xa0\x80")
@example(b"\xf4\x90\x80\x80")
@example(b"\xc0\xaf")
@example(b"\xef\xbf\xbf")
def test_utf8_validator_agrees_with_cpython(data: bytes) -> None:
    assert is_valid_utf8(data) is _python_says_valid(data)
    assert (utf8_fail_index(data) is None) is _python_says_valid(data)


@given(st.text(max_size=20), st.binary(min_size=1, max_size=6))
def test_fail_index_is_the_first_byte_no_valid_text_can_follow(prefix: str, tail: bytes) -> None:
    data = prefix.encode() + tail
    index = utf8_fail_index(data)
    if index is None or index == len(data):
        return
    # Up to the fail point, something valid can still follow; including it, nothing can.
    assert _extendable(data[:index])
    assert not _extendable(data[: index + 1])


def _extendable(prefix: bytes) -> bool:
    completions = [b"", b"\x80", b"\x80\x80", b"\x80\x80\x80", b"\xa0\x80", b"\x90\x80\x80"]
    return any(_python_says_valid(prefix + end) for end in completions) or any(
        _python_says_valid(prefix + bytes([second]) + b"\x80" * extra)
        for second in range(0x80, 0xC0)
        for extra in range(3)
    )


@given(
    payload=st.binary(max_size=70_000),
    opcode=st.sampled_from([0, 1, 2, 8, 9, 10]),
    fin=st.booleans(),
    rsv=st.integers(0, 7),
    key=st.none() | st.binary(min_size=4, max_size=4),
)
def test_frame_round_trip(
    payload: bytes, opcode: int, fin: bool, rsv: int, key: bytes | None
) -> None:
    data = build_frame(opcode, payload, fin=fin, rsv=rsv, mask_key=key)
    parsed = parse_frame(bytearray(data + b"extra"))
    assert parsed is not None
    frame, size = parsed
    assert size == len(data)
    assert (frame.opcode, frame.payload, frame.fin, frame.rsv) == (opcode, payload, fin, rsv)
    assert frame.masked is (key is not None)
    assert frame.minimal_length
    assert parse_frame(bytearray(data[:-1])) is None or not payload


def test_frame_headers_by_hand() -> None:
    # RFC 6455 §5.7: a single-frame unmasked text message "Hello", and masked.
    assert build_frame(1, b"Hello") == bytes.fromhex("810548656c6c6f")
    masked = build_frame(1, b"Hello", mask_key=bytes.fromhex("37fa213d"))
    assert masked == bytes.fromhex("818537fa213d7f9f4d5158")
    assert mask(mask(b"abcdefg", b"1234"), b"1234") == b"abcdefg"
    frame, _ = parse_frame(bytearray(build_frame(2, b"x" * 5, length_form="64"))) or (None, 0)
    assert frame is not None
    assert not frame.minimal_length
    with pytest.raises(WireError):
        parse_frame(bytearray(build_frame(2, b"", length_form="64", declared_length=1 << 63)))


def test_extension_header_parsing() -> None:
    parsed = parse_extensions(
        ['permessage-deflate; client_max_window_bits="10", x-foo', "permessage-deflate"]
    )
    assert parsed == [
        ("permessage-deflate", [("client_max_window_bits", "10")]),
        ("x-foo", []),
        ("permessage-deflate", []),
    ]
    with pytest.raises(WireError):
        parse_extensions(["permessage-deflate; a=b=c"])
    assert parse_pmd_params([("client_max_window_bits", None)], response=False) == (
        DeflateParams(client_max_window_bits=BARE)
    )
    bad_params: list[list[tuple[str, str | None]]] = [
        [("client_max_window_bits", None)],
        [("server_max_window_bits", "08")],
        [("server_max_window_bits", "16")],
        [("foo", None)],
        [("server_no_context_takeover", None), ("server_no_context_takeover", None)],
    ]
    for bad in bad_params:
        with pytest.raises(WireError):
            parse_pmd_params(bad, response=True)


def test_response_checks() -> None:
    offer = DeflateParams(True, False, 10, BARE)
    assert check_response_against_offer(offer, DeflateParams(True, False, 10, 12)) is None
    assert check_response_against_offer(offer, DeflateParams(False, False, 10, None))
    assert check_response_against_offer(offer, DeflateParams(True, False, 11, None))
    assert check_response_against_offer(offer, DeflateParams(True, False, None, None))
    assert check_response_against_offer(DeflateParams(), DeflateParams(client_max_window_bits=9))


def test_deflate_codec_catches_a_peer_that_keeps_context_it_promised_to_drop() -> None:
    keeps = DeflateCodec(
        local_bits=15, local_no_context=False, remote_bits=15, remote_no_context=False
    )
    checks = DeflateCodec(
        local_bits=15, local_no_context=False, remote_bits=15, remote_no_context=True
    )
    text = b"the same sentence, twice over " * 4
    assert checks.decompress(keeps.compress(text)) == text
    second = keeps.compress(text)  # a back-reference into the first message
    assert len(second) < 10
    with pytest.raises(WireError):
        checks.decompress(second)


def test_deflate_codec_catches_a_window_bigger_than_agreed() -> None:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    data = bytes(range(256)) * 8 + b"\x00" * 3000 + bytes(range(256)) * 8
    stream = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
    narrow = DeflateCodec(
        local_bits=15, local_no_context=False, remote_bits=9, remote_no_context=False
    )
    with pytest.raises(WireError):
        narrow.decompress(stream[:-4])


# -- the grading rules ------------------------------------------------------------------


def _case(expect: Expect) -> Case:
    return Case("99.1", "a hand-made case", (), expect)


def _closed(events: list[tuple[str, bytes]], code: int | None = 1000, **kw: object) -> Observation:
    obs = Observation(events=list(events))
    obs.impl_close_code = code
    obs.impl_close_empty = code is None
    obs.impl_close_at = 1.0
    obs.closed_by_peer = True
    obs.peer_close_at = 0.9
    obs.eof_at = 1.1
    for name, value in kw.items():
        setattr(obs, name, value)
    return obs


def test_judge_echo_and_codes() -> None:
    expect = Expect(ok=((("text", b"a"),),), non_strict=((),))
    assert judge(_case(expect), "server", _closed([("text", b"a")])).outcome is Outcome.OK
    assert judge(_case(expect), "server", _closed([])).outcome is Outcome.NON_STRICT
    assert judge(_case(expect), "server", _closed([("text", b"b")])).outcome is Outcome.FAILED
    wrong = _closed([("text", b"a")], code=1002)
    assert judge(_case(expect), "server", wrong).outcome is Outcome.FAILED
    empty = _closed([("text", b"a")], code=None)
    assert judge(_case(expect), "server", empty).outcome is Outcome.NON_STRICT


def test_judge_failures_by_the_implementation() -> None:
    expect = Expect(closed_by="impl", codes=frozenset({1007}), fail_fast=True)
    fast = _closed([], code=1007, closed_by_peer=False, mark_at=1.5)
    assert judge(_case(expect), "client", fast).outcome is Outcome.OK
    late = _closed([], code=1007, closed_by_peer=False, mark_at=0.5)
    assert judge(_case(expect), "client", late).outcome is Outcome.NON_STRICT
    dropped = Observation(eof_at=1.0)
    assert judge(_case(expect), "client", dropped).outcome is Outcome.NON_STRICT
    hung = Observation()
    assert judge(_case(expect), "client", hung).outcome is Outcome.FAILED


def test_judge_wrong_endpoint_hang_and_violations() -> None:
    expect = Expect()
    it_closed = _closed([], code=1002, closed_by_peer=False)
    assert judge(_case(expect), "server", it_closed).outcome is Outcome.FAILED
    timeout = _closed([], hard_timeout=True)
    assert judge(_case(expect), "server", timeout).outcome is Outcome.FAILED
    broken = _closed([], violations=["masked frame from a server"])
    assert judge(_case(expect), "server", broken).outcome is Outcome.FAILED
    lingering = _closed([], dropped_by_peer=True, eof_at=None)
    assert judge(_case(expect), "server", lingering).outcome is Outcome.NON_STRICT


def test_case_table_is_consistent() -> None:
    cases = all_cases()
    assert len({case.id for case in cases}) == len(cases)
    for case in cases:
        assert case.roles, case.id
        assert case.category in {1, 2, 3, 4, 5, 6, 7, 9, 10, 12, 13}, case.id
        if case.category == 9 and case.id.split(".")[1] != "9":
            assert case.slow, case.id
            assert case.impl.max_size is None, case.id
