from __future__ import annotations

import itertools
import os
from collections.abc import Callable

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from tests.helpers import fixed_mask, open_machine_pair, pump
from trio_ws.exceptions import PayloadTooBig, ProtocolError
from trio_ws.protocol import machine as machine_module
from trio_ws.protocol.deflate import DeflateConfig, client_accept, client_offer, server_accept
from trio_ws.protocol.frames import Close, Frame, MessageBuffer, Opcode, parse_single
from trio_ws.protocol.machine import (
    BinaryMessage,
    Ping,
    Pong,
    Role,
    State,
    TextMessage,
    WebSocketMachine,
)

SIDES = pytest.mark.parametrize("sender", ["client", "server"])
MASK = b"\x37\xfa\x21\x3d"


def frame_to(receiver: WebSocketMachine, frame: Frame) -> bytes:
    """Serialize ``frame`` the way the receiver's peer must (masked to a server)."""
    return frame.serialize(mask_key=MASK if receiver.role is Role.SERVER else None)


def state_of(m: WebSocketMachine) -> State:
    """Read the state through a call, so the type checker does not narrow it."""
    return m.state


def machine(role: Role, **kwargs: object) -> WebSocketMachine:
    return WebSocketMachine(role, mask_key=fixed_mask(), **kwargs)  # type: ignore[arg-type]


def assert_failed(m: WebSocketMachine, code: int, cause: type[Exception]) -> None:
    """The machine failed the connection with ``code`` and recorded why."""
    assert m.state is State.CLOSED
    assert m.close_sent is not None
    assert m.close_sent.code == code
    assert isinstance(m.failure, cause)
    assert m.close_transport_now()
    payload = Close(code, m.close_sent.reason).serialize()
    masked = m.role is Role.CLIENT
    sent = m.data_to_send()
    frame = parse_single(sent[-(2 + 4 * masked + len(payload)) :], masked=masked)
    assert frame == Frame(Opcode.CLOSE, payload)


# -- messages ----------------------------------------------------------------


@SIDES
@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 2**20])
def test_binary_message_crosses_intact(sender: str, size: int) -> None:
    near, far = open_machine_pair(first=sender)
    payload = bytes(range(256)) * (size // 256) + b"\x07" * (size % 256)
    near.send_binary(payload)
    pump(near, far)
    assert far.events_received() == [BinaryMessage(payload)]


@SIDES
@pytest.mark.parametrize("text", ["", "grüße", "\U0001f600" * 40, "a" * 70_000])
def test_text_message_crosses_intact(sender: str, text: str) -> None:
    near, far = open_machine_pair(first=sender)
    near.send_text(text)
    pump(near, far)
    assert far.events_received() == [TextMessage(text)]


@SIDES
def test_fragmented_message_with_control_frames_in_between(sender: str) -> None:
    near, far = open_machine_pair(first=sender)
    encoded = "κόσμε\U0001f600".encode()
    near.send_text("", fin=False)
    near.send_continuation(encoded[:3], fin=False)  # splits a code point
    near.send_ping(b"in the middle")
    near.send_continuation(encoded[3:9], fin=False)
    near.send_pong(b"unsolicited")
    near.send_continuation(encoded[9:], fin=True)
    pump(near, far)
    assert far.events_received() == [
        Ping(b"in the middle"),
        Pong(b"unsolicited"),
        TextMessage("κόσμε\U0001f600"),
    ]
    # The ping was answered in place.
    pump(far, near)
    assert near.events_received() == [Pong(b"in the middle", (b"in the middle",))]


@SIDES
def test_fragmented_binary_message(sender: str) -> None:
    near, far = open_machine_pair(first=sender)
    near.send_binary(b"ab", fin=False)
    near.send_continuation(b"", fin=False)
    near.send_continuation(b"cd", fin=True)
    near.send_binary(b"next")
    pump(near, far)
    assert far.events_received() == [BinaryMessage(b"abcd"), BinaryMessage(b"next")]


def test_client_masks_with_the_key_it_is_given() -> None:
    client = machine(Role.CLIENT)
    client.send_text("Hello")
    assert client.data_to_send() == bytes.fromhex("818537fa213d7f9f4d5158")


def test_default_mask_keys_are_random() -> None:
    client = WebSocketMachine(Role.CLIENT)
    keys = set()
    for _ in range(2000):  # crosses the refill of the pool of random bytes
        client.send_binary(b"")
        keys.add(client.data_to_send()[2:6])
    assert len(keys) > 1990


def test_mask_keys_come_from_a_pool_that_starts_small(monkeypatch: pytest.MonkeyPatch) -> None:
    drawn: list[int] = []
    real_urandom = os.urandom

    def urandom(n: int) -> bytes:
        drawn.append(n)
        return real_urandom(n)

    monkeypatch.setattr(os, "urandom", urandom)
    client = WebSocketMachine(Role.CLIENT)
    client.send_close(1000)
    assert drawn == [64]  # a connection that only closes draws 64 bytes
    for _ in range(2000):
        client._next_mask_key()
    for _ in range(2000):
        client._next_mask_key()
    assert drawn[:8] == [64, 128, 256, 512, 1024, 2048, 4096, 4096]
    assert sum(drawn) >= 4 * 2001


def test_server_does_not_mask() -> None:
    server = machine(Role.SERVER)
    server.send_text("Hello")
    assert server.data_to_send() == bytes.fromhex("810548656c6c6f")


def test_data_to_send_batches_frames() -> None:
    server = machine(Role.SERVER)
    assert server.data_to_send() == b""
    server.send_text("a")
    server.send_binary(bytearray(b"b"))
    server.send_ping(b"c")
    assert server.data_to_send() == b"\x81\x01a\x82\x01b\x89\x01c"
    assert server.data_to_send() == b""


@SIDES
def test_messages_before_a_failure_are_delivered(sender: str) -> None:
    near, far = open_machine_pair(first=sender)
    near.send_text("first")
    data = near.data_to_send() + frame_to(far, Frame(Opcode.BINARY, b"x", rsv2=True))
    far.receive_data(data)
    assert far.events_received() == [TextMessage("first")]
    assert_failed(far, 1002, ProtocolError)


# -- splitting the stream ------------------------------------------------------


def _conversation(near: WebSocketMachine) -> bytes:
    near.send_text("hello")
    near.send_binary(b"\x00" * 300)
    near.send_ping(b"p1")
    near.send_text("frag-", fin=False)
    near.send_pong(b"p2")
    near.send_continuation("ment ✓".encode(), fin=True)
    near.send_binary(b"z" * 70_000)
    near.send_close(1001, "bye")
    return near.data_to_send()


@SIDES
@given(cuts=st.lists(st.integers(min_value=0, max_value=71_000), max_size=30))
@example(cuts=list(range(400)))
def test_any_split_of_the_stream_gives_the_same_events(sender: str, cuts: list[int]) -> None:
    near, far = open_machine_pair(first=sender)
    wire = _conversation(near)
    whole = open_machine_pair(first=sender)[1]
    whole.receive_data(wire)
    expected = whole.events_received()

    positions = sorted({0, len(wire), *(c for c in cuts if c < len(wire))})
    for start, stop in itertools.pairwise(positions):
        far.receive_data(wire[start:stop])
    assert far.events_received() == expected
    assert far.data_to_send() == whole.data_to_send()
    assert far.state is whole.state is State.CLOSED


def test_one_byte_at_a_time() -> None:
    client, server = open_machine_pair(first="client")
    wire = _conversation(client)
    for i in range(len(wire)):
        server.receive_data(memoryview(wire)[i : i + 1])
    events = server.events_received()
    assert [type(e) for e in events] == [
        TextMessage,
        BinaryMessage,
        Ping,
        Pong,
        TextMessage,
        BinaryMessage,
        Close,
    ]
    assert events[4] == TextMessage("frag-ment ✓")
    assert events[-1] == Close(1001, "bye")


LEGAL_FAILURE_CODES = {1002, 1007, 1009}


@pytest.mark.parametrize("role", list(Role))
@given(data=st.lists(st.binary(max_size=200), max_size=8))
@example(data=[b"\x81\xfe\xff\xff"])
@example(data=[b"\x88\x02\x03\xe8", b"\x81\x00"])
def test_arbitrary_bytes_end_in_events_or_a_legal_failure(role: Role, data: list[bytes]) -> None:
    m = WebSocketMachine(role, max_size=1000)
    for chunk in data:
        m.receive_data(chunk)
        for event in m.events_received():
            assert isinstance(event, TextMessage | BinaryMessage | Ping | Pong | Close)
        m.data_to_send()
    if m.failure is not None:
        assert m.state is State.CLOSED
        assert m.close_sent is not None
        assert m.close_sent.code in LEGAL_FAILURE_CODES
    m.receive_eof()
    assert m.state is State.CLOSED
    assert m.close_code is not None


# -- protocol violations -------------------------------------------------------


@pytest.mark.parametrize("role", list(Role))
def test_wrong_masking_fails_with_1002(role: Role) -> None:
    m = machine(role)
    # The frame a peer of the *other* role would be sending to us, masked wrongly.
    wrong_key = None if role is Role.SERVER else MASK
    m.receive_data(Frame(Opcode.TEXT, b"hi").serialize(mask_key=wrong_key))
    assert m.events_received() == []
    assert_failed(m, 1002, ProtocolError)
    assert str(m.failure) == "incorrect masking"


VIOLATIONS = [
    pytest.param([Frame(Opcode.TEXT, b"x", rsv1=True)], "reserved bits", id="rsv1-no-ext"),
    pytest.param([Frame(Opcode.TEXT, b"x", rsv2=True)], "reserved bits", id="rsv2"),
    pytest.param([Frame(Opcode.PING, b"", rsv3=True)], "reserved bits", id="rsv3-control"),
    *(
        pytest.param(
            [Frame(op, b"")],  # type: ignore[arg-type]
            "invalid opcode",
            id=f"opcode-{op:#x}",
        )
        for op in (3, 4, 5, 6, 7, 11, 12, 13, 14, 15)
    ),
    pytest.param([Frame(Opcode.PING, b"", fin=False)], "fragmented control", id="frag-ping"),
    pytest.param([Frame(Opcode.CLOSE, b"", fin=False)], "fragmented control", id="frag-close"),
    pytest.param([Frame(Opcode.PING, b"x" * 126)], "control frame too long", id="long-ping"),
    pytest.param([Frame(Opcode.PONG, b"x" * 126)], "control frame too long", id="long-pong"),
    pytest.param([Frame(Opcode.CONT, b"x")], "unexpected continuation", id="cont-no-start"),
    pytest.param(
        [Frame(Opcode.TEXT, b"a", fin=False), Frame(Opcode.BINARY, b"b")],
        "expected a continuation",
        id="data-inside-message",
    ),
    pytest.param(
        [Frame(Opcode.TEXT, b"a", fin=False), Frame(Opcode.CONT, b"b", rsv1=True)],
        "reserved bits",
        id="rsv1-on-continuation",
    ),
    pytest.param([Frame(Opcode.CLOSE, b"\x03")], "1 byte", id="close-1-byte"),
    pytest.param([Frame(Opcode.CLOSE, b"\x03\xed")], "invalid close code 1005", id="close-1005"),
    pytest.param([Frame(Opcode.CLOSE, b"\x0b\xb7")], "invalid close code 2999", id="close-2999"),
]


@pytest.mark.parametrize("role", list(Role))
@pytest.mark.parametrize(("frames", "message"), VIOLATIONS)
def test_protocol_violations_fail_with_1002(role: Role, frames: list[Frame], message: str) -> None:
    m = machine(role)
    m.receive_data(b"".join(frame_to(m, f) for f in frames))
    assert m.events_received() == []
    assert_failed(m, 1002, ProtocolError)
    assert message in str(m.failure)
    # Whatever follows is ignored.
    m.receive_data(frame_to(m, Frame(Opcode.TEXT, b"ignored")))
    assert m.events_received() == []
    assert m.data_to_send() == b""


def test_64_bit_length_with_msb_fails_with_1002() -> None:
    m = machine(Role.CLIENT)
    m.receive_data(b"\x82\x7f\x80\x00\x00\x00\x00\x00\x00\x00")
    assert_failed(m, 1002, ProtocolError)


# -- UTF-8 ---------------------------------------------------------------------


@pytest.mark.parametrize("role", list(Role))
@pytest.mark.parametrize(
    "payload",
    [b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"ok\xce", b"\xe0\x80\xaf"],
)
def test_invalid_utf8_fails_with_1007(role: Role, payload: bytes) -> None:
    m = machine(role)
    m.receive_data(frame_to(m, Frame(Opcode.TEXT, payload)))
    assert m.events_received() == []
    assert_failed(m, 1007, UnicodeDecodeError)


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5", b"\xf4\x90\x80\x80"),
        (b"\xce\xba\xf4", b"\x90"),  # invalid as soon as the 2nd byte arrives
        (b"ok\xed", b"\xa0"),  # a surrogate, certain after two bytes
        (b"ok", b"\xc0"),
    ],
)
def test_invalid_utf8_fails_fast_inside_a_fragmented_message(first: bytes, second: bytes) -> None:
    server = machine(Role.SERVER)
    server.receive_data(frame_to(server, Frame(Opcode.TEXT, first, fin=False)))
    assert server.state is State.OPEN
    server.receive_data(frame_to(server, Frame(Opcode.CONT, second, fin=False)))
    # Failed before the message was finished.
    assert_failed(server, 1007, UnicodeDecodeError)


def test_invalid_utf8_fails_fast_inside_a_single_large_frame() -> None:
    server = machine(Role.SERVER)
    wire = frame_to(server, Frame(Opcode.TEXT, b"a" * 1000 + b"\xff" + b"a" * 100_000))
    server.receive_data(wire[:2000])
    assert_failed(server, 1007, UnicodeDecodeError)


def test_code_point_split_across_fragments_is_accepted() -> None:
    server = machine(Role.SERVER)
    smiley = "\U0001f600".encode()
    for i, byte in enumerate(smiley):
        opcode = Opcode.TEXT if i == 0 else Opcode.CONT
        last = i == len(smiley) - 1
        server.receive_data(frame_to(server, Frame(opcode, bytes([byte]), fin=last)))
    assert server.events_received() == [TextMessage("\U0001f600")]


def test_truncated_code_point_at_end_of_message_fails_with_1007() -> None:
    server = machine(Role.SERVER)
    server.receive_data(frame_to(server, Frame(Opcode.TEXT, b"ok", fin=False)))
    server.receive_data(frame_to(server, Frame(Opcode.CONT, b"\xf0\x9f")))
    assert_failed(server, 1007, UnicodeDecodeError)


def test_invalid_utf8_in_close_reason_fails_with_1007() -> None:
    server = machine(Role.SERVER)
    server.receive_data(frame_to(server, Frame(Opcode.CLOSE, b"\x03\xe8\xff")))
    assert_failed(server, 1007, UnicodeDecodeError)


# -- max_size ------------------------------------------------------------------


@pytest.mark.parametrize("role", list(Role))
def test_oversized_frame_fails_on_its_header(role: Role) -> None:
    m = machine(role, max_size=1000)
    header = frame_to(m, Frame(Opcode.BINARY, b"x" * 1001))[:8]
    m.receive_data(header)  # not one byte of payload yet
    assert_failed(m, 1009, PayloadTooBig)
    assert str(m.failure) == "message exceeds limit of 1000 bytes"


def test_message_of_exactly_max_size_is_accepted() -> None:
    client, server = open_machine_pair(max_size=1000)
    client.send_binary(b"x" * 1000)
    pump(client, server)
    assert server.events_received() == [BinaryMessage(b"x" * 1000)]


def test_fragmented_message_over_max_size_fails_with_1009() -> None:
    client, server = open_machine_pair(max_size=1000)
    client.send_text("a" * 600, fin=False)
    pump(client, server)
    client.send_continuation(b"b" * 401, fin=True)
    pump(client, server)
    assert server.events_received() == []
    assert_failed(server, 1009, PayloadTooBig)


def test_max_size_none_is_unlimited() -> None:
    client, server = open_machine_pair(max_size=None)
    client.send_binary(b"x" * (2**20 + 1))
    pump(client, server)
    assert server.events_received() == [BinaryMessage(b"x" * (2**20 + 1))]


def test_default_max_size_is_one_mebibyte() -> None:
    assert WebSocketMachine(Role.SERVER).max_size == 2**20
    with pytest.raises(ValueError, match="max_size"):
        WebSocketMachine(Role.SERVER, max_size=-1)


# -- pings and pongs -------------------------------------------------------------


@SIDES
def test_ping_is_answered_with_the_same_payload(sender: str) -> None:
    near, far = open_machine_pair(first=sender)
    near.send_ping(b"\x00\xff" * 62)
    pump(near, far)
    assert far.events_received() == [Ping(b"\x00\xff" * 62)]
    pump(far, near)
    assert near.events_received() == [Pong(b"\x00\xff" * 62, (b"\x00\xff" * 62,))]


def test_pong_acknowledges_earlier_pings_too() -> None:
    client, server = open_machine_pair()
    for payload in (b"1", b"2", b"3"):
        client.send_ping(payload)
    client.data_to_send()
    server.send_pong(b"2")
    pump(server, client)
    assert client.events_received() == [Pong(b"2", (b"1", b"2"))]
    server.send_pong(b"2")
    server.send_pong(b"3")
    pump(server, client)
    assert client.events_received() == [Pong(b"2"), Pong(b"3", (b"3",))]


def test_ping_arguments_are_checked() -> None:
    client = machine(Role.CLIENT)
    with pytest.raises(ValueError, match="125"):
        client.send_ping(b"x" * 126)
    with pytest.raises(ValueError, match="125"):
        client.send_pong(b"x" * 126)
    client.send_ping(b"same")
    with pytest.raises(ValueError, match="same payload"):
        client.send_ping(b"same")


# -- closing ---------------------------------------------------------------------


@SIDES
@pytest.mark.parametrize(("code", "reason"), [(1000, ""), (1001, "bye"), (4000, "custom ✓")])
def test_closing_handshake_echoes_the_code(sender: str, code: int, reason: str) -> None:
    near, far = open_machine_pair(first=sender)
    near.send_close(code, reason)
    assert near.state is State.CLOSING
    assert near.close_sent == Close(code, reason)
    pump(near, far)
    assert far.events_received() == [Close(code, reason)]
    assert far.state is State.CLOSED
    assert far.close_rcvd == far.close_sent == Close(code, reason)
    assert far.close_rcvd_then_sent is True
    pump(far, near)
    assert near.events_received() == [Close(code, reason)]
    assert state_of(near) is State.CLOSED
    assert near.close_rcvd_then_sent is False
    assert near.close_code == far.close_code == code
    assert near.close_reason == far.close_reason == reason


def test_server_closes_tcp_first_and_client_waits_for_it() -> None:
    client, server = open_machine_pair()
    client.send_close()
    pump(client, server)
    pump(server, client)
    assert server.close_transport_now()
    assert client.state is State.CLOSED
    assert not client.close_transport_now()
    client.receive_eof()
    assert client.close_transport_now()


@SIDES
def test_empty_close_frame_is_echoed_empty(sender: str) -> None:
    near, far = open_machine_pair(first=sender)
    near.send_close(None)
    wire = pump(near, far)
    assert (
        Frame(Opcode.CLOSE, b"").serialize(mask_key=wire[2:6] if wire[1] & 0x80 else None) == wire
    )
    assert far.close_rcvd == Close(1005)
    assert far.close_code == 1005
    reply = pump(far, near)
    assert len(reply) == (6 if sender == "server" else 2)  # an empty close frame


def test_data_sent_before_the_peer_saw_our_close_is_delivered() -> None:
    client, server = open_machine_pair()
    client.send_close()
    server.send_text("in flight")
    pump(client, server)
    pump(server, client)
    assert client.events_received() == [TextMessage("in flight"), Close(1000)]


def test_data_after_a_close_frame_is_ignored() -> None:
    server = machine(Role.SERVER)
    server.receive_data(
        frame_to(server, Frame(Opcode.CLOSE, Close(1000).serialize()))
        + frame_to(server, Frame(Opcode.TEXT, b"late"))
    )
    server.receive_data(frame_to(server, Frame(Opcode.PING, b"late")))
    assert server.events_received() == [Close(1000)]
    assert server.data_to_send() == b"\x88\x02\x03\xe8"  # the echo, and no pong


def test_nothing_can_be_sent_after_close() -> None:
    client = machine(Role.CLIENT)
    client.send_close()
    calls: list[Callable[[], None]] = [
        lambda: client.send_text("x"),
        lambda: client.send_binary(b"x"),
        lambda: client.send_ping(b""),
        lambda: client.send_pong(b""),
        lambda: client.send_close(),
    ]
    for call in calls:
        with pytest.raises(ProtocolError):
            call()


def test_send_close_validates_before_changing_state() -> None:
    client = machine(Role.CLIENT)
    with pytest.raises(ValueError, match="may not be sent"):
        client.send_close(1006)
    with pytest.raises(ValueError, match="requires a close code"):
        client.send_close(None, "why")
    with pytest.raises(ValueError, match="123"):
        client.send_close(1000, "x" * 200)
    assert client.state is State.OPEN
    assert client.data_to_send() == b""


def test_fragment_rules_on_the_sending_side() -> None:
    client = machine(Role.CLIENT)
    with pytest.raises(ProtocolError, match="no fragmented message"):
        client.send_continuation(b"x", fin=True)
    client.send_binary(b"x", fin=False)
    with pytest.raises(ProtocolError, match="in progress"):
        client.send_text("y")


@SIDES
def test_eof_without_close_is_abnormal(sender: str) -> None:
    _, far = open_machine_pair(first=sender)
    assert (far.close_code, far.close_reason) == (None, None)
    far.receive_eof()
    far.receive_eof()
    assert state_of(far) is State.CLOSED
    assert far.close_code == 1006
    assert far.close_reason == ""
    assert far.close_rcvd is None
    assert far.failure is None
    assert far.data_to_send() == b""  # 1006 never goes on the wire
    far.receive_data(b"\x81\x00")
    assert far.events_received() == []


def test_eof_in_the_middle_of_a_message_drops_it() -> None:
    client, server = open_machine_pair()
    client.send_text("half", fin=False)
    pump(client, server)
    server.receive_eof()
    assert server.events_received() == []
    assert server.close_code == 1006


def test_fail_sends_the_code_and_ignores_what_follows() -> None:
    client, server = open_machine_pair()
    server.fail(1011, "keepalive ping timeout")
    assert server.state is State.CLOSED
    assert server.close_sent == Close(1011, "keepalive ping timeout")
    assert server.failure is None
    pump(server, client)
    assert client.events_received() == [Close(1011, "keepalive ping timeout")]
    with pytest.raises(ProtocolError):  # the client echoed the close already
        client.send_text("too late")
    server.receive_data(b"\x81\x00")
    assert server.events_received() == []


def test_fail_after_close_sent_sends_nothing_more() -> None:
    server = machine(Role.SERVER)
    server.send_close()
    server.data_to_send()
    server.fail()
    assert server.data_to_send() == b""
    assert server.close_sent == Close(1000)
    assert server.state is State.CLOSED


# -- permessage-deflate in the machine --------------------------------------------


def deflate_pair(**kwargs: object) -> tuple[WebSocketMachine, WebSocketMachine]:
    """A client and a server machine that negotiated permessage-deflate."""
    config = DeflateConfig(min_size=0)
    value, server_codec = server_accept(config, [client_offer(config)]) or (None, None)
    assert value is not None
    client_codec = client_accept(config, [value])
    assert client_codec is not None
    assert server_codec is not None
    client = WebSocketMachine(Role.CLIENT, extension=client_codec, **kwargs)  # type: ignore[arg-type]
    server = WebSocketMachine(Role.SERVER, extension=server_codec, **kwargs)  # type: ignore[arg-type]
    return client, server


@pytest.mark.parametrize("sender", ["client", "server"])
def test_compressed_messages_cross_intact(sender: str) -> None:
    client, server = deflate_pair()
    near, far = (client, server) if sender == "client" else (server, client)
    messages: list[str | bytes] = ["{'a': 1}" * 50, b"\x00" * 70_000, "", "tiny", "é" * 3000]
    for message in messages:
        if isinstance(message, str):
            near.send_text(message)
        else:
            near.send_binary(message)
    wire = near.data_to_send()
    assert len(wire) < 4000  # really compressed
    assert wire[0] & 0x40  # RSV1 on a data frame
    for i in range(0, len(wire), 700):  # streamed in pieces too
        far.receive_data(wire[i : i + 700])
    expected = [TextMessage(m) if isinstance(m, str) else BinaryMessage(m) for m in messages]
    assert far.events_received() == expected


def test_compressed_fragmented_message_sets_rsv1_on_first_frame_only() -> None:
    client, server = deflate_pair()
    client.send_text("x" * 100, fin=False)
    first = client.data_to_send()
    client.send_continuation(b"y" * 100, fin=True)
    second = client.data_to_send()
    assert first[0] == 0x41  # RSV1 | TEXT, FIN clear
    assert second[0] == 0x80  # FIN | CONT, no RSV1
    server.receive_data(first + second)
    assert server.events_received() == [TextMessage("x" * 100 + "y" * 100)]


def test_decompression_bomb_fails_with_1009_without_expanding() -> None:
    client, server = deflate_pair(max_size=10_000)
    client.max_size = None  # the sender may send anything
    client.send_binary(b"\x00" * 5_000_000)
    wire = client.data_to_send()
    assert len(wire) < 10_000
    server.receive_data(wire)
    assert server.events_received() == []
    assert_failed(server, 1009, PayloadTooBig)


def test_invalid_compressed_data_fails_with_1007() -> None:
    _, server = deflate_pair()
    server.receive_data(
        Frame(Opcode.BINARY, b"\xff\xff\xff\xff", rsv1=True).serialize(mask_key=MASK)
    )
    assert_failed(server, 1007, ProtocolError)


@SIDES
def test_buffers_of_wide_items_are_sent_as_their_bytes(sender: str) -> None:
    import array

    near, far = open_machine_pair(first=sender)
    numbers = array.array("i", range(100))
    near.send_binary(memoryview(numbers))
    near.send_binary(b"x", fin=False)
    near.send_continuation(memoryview(numbers), fin=True)
    pump(near, far)
    assert far.events_received() == [
        BinaryMessage(numbers.tobytes()),
        BinaryMessage(b"x" + numbers.tobytes()),
    ]


def test_a_compressed_bomb_streamed_in_small_reads_still_fails_with_1009() -> None:
    """Compressed input is inflated in batches; the output cap still holds."""
    client, server = deflate_pair(max_size=100_000)
    client.max_size = None
    client.send_binary(b"\x00" * 50_000_000)
    wire = client.data_to_send()
    for i in range(0, len(wire), 4096):
        server.receive_data(wire[i : i + 4096])
    assert server.events_received() == []
    assert_failed(server, 1009, PayloadTooBig)


def test_invalid_utf8_in_a_compressed_fragment_fails_before_the_message_ends() -> None:
    client, server = deflate_pair()
    codec = client.extension
    assert codec is not None
    frames = [
        Frame(Opcode.TEXT, codec.compress(b"valid, ", fin=False), fin=False, rsv1=True),
        Frame(Opcode.CONT, codec.compress(b"\xff then more", fin=False), fin=False),
    ]
    server.receive_data(b"".join(frame.serialize(mask_key=MASK) for frame in frames))
    assert_failed(server, 1007, UnicodeDecodeError)


@pytest.mark.parametrize("role", [Role.SERVER, Role.CLIENT])
@pytest.mark.parametrize("chunk", [None, 3, 65535, 65537, 262144])
def test_large_frames_arrive_whole_however_the_reads_fall(role: Role, chunk: int | None) -> None:
    # A transport may hand over a quarter of a megabyte, or a whole frame, per
    # read; the machine unmasks, validates and joins it piece by piece (see
    # _CHUNK_MAX), with the mask's phase and UTF-8 sequences crossing pieces.
    binary = os.urandom(300_001)
    text = "aé€😀" * 40_000  # 1-4 byte sequences, across every boundary
    data = frame_to(
        (receiver := machine(role, max_size=None)), Frame(Opcode.BINARY, binary)
    ) + frame_to(receiver, Frame(Opcode.TEXT, text.encode()))
    if chunk is None:
        receiver.receive_data(data)
    else:
        for start in range(0, len(data), chunk):
            receiver.receive_data(data[start : start + chunk])
    assert receiver.events_received() == [BinaryMessage(binary), TextMessage(text)]
    assert receiver.state is State.OPEN


@pytest.mark.parametrize("role", [Role.SERVER, Role.CLIENT])
def test_a_large_single_frame_binary_message_is_written_in_place(role: Role) -> None:
    # With the accelerator, a binary message of one frame that a read does
    # not hold whole goes piece by piece to its final bytes object: no pieces
    # kept, nothing to join. Without it, pieces are kept and joined.
    receiver = machine(role, max_size=None)
    binary = os.urandom(200_003)
    data = frame_to(receiver, Frame(Opcode.BINARY, binary))
    receiver.receive_data(data[:70_001])  # not a multiple of 4: the mask's phase moves
    if MessageBuffer is None:
        assert receiver._rx_into is None
        assert receiver._msg_parts
    else:
        assert receiver._rx_into is not None
        assert receiver._msg_parts == []
        assert receiver._rx_into.missing == len(data) - 70_001
    receiver.receive_data(data[70_001:70_002])
    receiver.receive_data(data[70_002:] + frame_to(receiver, Frame(Opcode.PING, b"after")))
    assert receiver.events_received() == [BinaryMessage(binary), Ping(b"after")]
    assert receiver._rx_into is None


@pytest.mark.parametrize(
    "frames",
    [
        pytest.param([Frame(Opcode.TEXT, b"t" * 100_000)], id="text"),
        pytest.param(
            [Frame(Opcode.BINARY, b"a" * 100_000, fin=False), Frame(Opcode.CONT, b"b")],
            id="fragmented",
        ),
    ],
)
def test_only_single_frame_binary_messages_are_written_in_place(frames: list[Frame]) -> None:
    # Text is validated as it comes (fails fast on invalid UTF-8), and a
    # fragmented message's size is unknown on its first header.
    receiver = machine(Role.SERVER, max_size=None)
    data = b"".join(frame_to(receiver, frame) for frame in frames)
    receiver.receive_data(data[:50_000])
    assert receiver._rx_into is None
    receiver.receive_data(data[50_000:])
    (event,) = receiver.events_received()
    assert isinstance(event, (TextMessage, BinaryMessage))
    assert len(event.data) == sum(len(frame.payload) for frame in frames)


def test_a_frame_above_the_in_place_limit_is_assembled_from_pieces(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The buffer is allocated whole on the header: only up to _INTO_MAX, so
    # a peer announcing a huge frame (max_size=None) reserves nothing.
    monkeypatch.setattr(machine_module, "_INTO_MAX", 100_000)
    receiver = machine(Role.SERVER, max_size=None)
    binary = os.urandom(100_001)
    data = frame_to(receiver, Frame(Opcode.BINARY, binary))
    receiver.receive_data(data[:50_000])
    assert receiver._rx_into is None
    receiver.receive_data(data[50_000:])
    assert receiver.events_received() == [BinaryMessage(binary)]


def test_eof_inside_a_message_written_in_place_drops_it() -> None:
    receiver = machine(Role.SERVER, max_size=None)
    data = frame_to(receiver, Frame(Opcode.BINARY, b"x" * 100_000))
    receiver.receive_data(data[:60_000])
    receiver.receive_eof()
    assert receiver.events_received() == []
    assert receiver.state is State.CLOSED
    assert receiver.close_code == 1006


@pytest.mark.parametrize("role", [Role.SERVER, Role.CLIENT])
def test_a_message_being_assembled_holds_its_own_bytes_not_the_reads(role: Role) -> None:
    # Pieces of a message are copies (unmasking copies anyway): a view of a
    # read kept in the message would pin the whole read for a few bytes of
    # it, memory that max_size does not count.
    receiver = machine(role, max_size=None)
    first = frame_to(receiver, Frame(Opcode.BINARY, b"a" * 100_000, fin=False))
    ping = frame_to(receiver, Frame(Opcode.PING, b"p" * 125))
    tail = frame_to(receiver, Frame(Opcode.CONT, b"b" * 10, fin=True))
    receiver.receive_data(first[:70_000])  # a read that ends in a payload
    receiver.receive_data(first[70_000:] + ping * 500)  # a payload's end, then much else
    parts = receiver._msg_parts
    assert parts
    assert all(type(part) is bytes for part in parts)
    assert sum(len(part) for part in parts) == 100_000
    receiver.receive_data(tail)
    events = receiver.events_received()
    assert events[-1] == BinaryMessage(b"a" * 100_000 + b"b" * 10)
    assert sum(isinstance(event, Ping) for event in events) == 500
