"""The WebSocket connection state machine: bytes in, events and bytes out.

Theory of operation
-------------------

A :class:`WebSocketMachine` starts where the opening handshake ends: in state
``OPEN``. Its user (the I/O layer, or a test) does three things, in any order:

* feeds what arrives from the network to :meth:`~WebSocketMachine.receive_data`
  (and :meth:`~WebSocketMachine.receive_eof` when the peer closes TCP), then
  collects whole messages, pings, pongs and close frames from
  :meth:`~WebSocketMachine.events_received`;
* asks for frames to be sent with the ``send_*`` methods;
* writes what :meth:`~WebSocketMachine.data_to_send` returns to the network,
  and closes the transport once :meth:`~WebSocketMachine.close_transport_now`
  says so.

States move one way only::

    OPEN ──(close sent or received)──> CLOSING ──(the other one)──> CLOSED
      └───────────(protocol error, fail(), EOF)──────────────────────┘

Only this class changes the state. The closing handshake (RFC 6455 §7) is
automatic on the receiving side: a close frame from the peer is echoed at
once. A peer that breaks the protocol never makes ``receive_data`` raise:
the machine queues a close frame with the right code (1002, 1007, 1009),
records the reason in :attr:`~WebSocketMachine.failure`, moves to ``CLOSED``
and ignores any further input. Asking *us* to do something RFC 6455 forbids
in the current state raises :class:`~trio_ws.exceptions.ProtocolError`.

Incoming data frames are processed as their payload arrives: a large frame is
unmasked, decompressed, size-checked and UTF-8-validated chunk by chunk, so the
receive buffer never holds more than one incomplete frame header or control
frame, and a message is failed as soon as it is known to be too big or not
UTF-8. The machine never reads a clock: latency, ping timeouts and close
timeouts belong to the I/O layer.
"""

from __future__ import annotations

import codecs
import enum
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeAlias

from ..exceptions import PayloadTooBig, ProtocolError
from .frames import Close, CloseCode, MessageBuffer, Opcode, parse_header, serialize_header
from .frames import apply_mask_unchecked as apply_mask
from .frames import mask_frame_unchecked as mask_frame

if TYPE_CHECKING:
    from collections.abc import Callable

    from .deflate import PerMessageDeflate
    from .frames import MessageBufferType

__all__ = [
    "BinaryMessage",
    "Event",
    "Ping",
    "Pong",
    "Role",
    "State",
    "TextMessage",
    "WebSocketMachine",
]


class Role(enum.Enum):
    """Which end of the connection a machine plays; it decides masking."""

    CLIENT = "client"
    SERVER = "server"


class State(enum.Enum):
    """Connection states. The machine itself starts in ``OPEN``; ``CONNECTING``
    is used by the I/O layer while the opening handshake runs."""

    CONNECTING = 0
    OPEN = 1
    CLOSING = 2
    CLOSED = 3


@dataclass(frozen=True, slots=True)
class TextMessage:
    """A whole text message arrived (all its fragments, decompressed, valid UTF-8)."""

    data: str


@dataclass(frozen=True, slots=True)
class BinaryMessage:
    """A whole binary message arrived (all its fragments, decompressed)."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Ping:
    """A ping arrived. The machine has already queued the pong that answers it."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Pong:
    """A pong arrived.

    ``acked`` lists the payloads of our outstanding pings that it acknowledges:
    the one it echoes and every ping sent before that one (RFC 6455 §5.5.3
    lets a peer answer only the most recent ping). It is empty for an
    unsolicited pong.
    """

    data: bytes
    acked: tuple[bytes, ...] = ()


Event: TypeAlias = TextMessage | BinaryMessage | Ping | Pong | Close

_utf8_decoder = codecs.getincrementaldecoder("utf-8")

# os.urandom is a system call; RFC 6455 §5.3 wants mask keys from a strong
# source of entropy, not a separate call per frame, so keys are cut from a
# block of random bytes drawn at once.
_MASK_POOL_SIZE = 4096
_MASK_POOL_FIRST = 64


class _Fail(Exception):
    """Internal: the peer broke the protocol; fail with ``code``."""

    def __init__(self, code: int, reason: str, cause: Exception) -> None:
        super().__init__(code, reason, cause)
        self.code = code
        self.reason = reason
        self.cause = cause


def _protocol_error(reason: str) -> _Fail:
    return _Fail(CloseCode.PROTOCOL_ERROR, reason, ProtocolError(reason))


class WebSocketMachine:
    """RFC 6455 framing and closing for one connection, with no I/O.

    Args:
        role: ``Role.CLIENT`` masks what it sends and expects unmasked frames;
            ``Role.SERVER`` the reverse (RFC 6455 §5.1).
        max_size: the largest message accepted, in bytes after decompression;
            a larger one fails the connection with 1009. None means no limit.
        extension: the permessage-deflate codec negotiated during the
            handshake, or None.
        mask_key: returns a fresh 4-byte mask key per frame; the default
            draws them from :func:`os.urandom`. Tests pass a fixed one.
    """

    # Slots: one connection holds thousands of these on a busy server, and
    # attribute access is on the per-message path.
    __slots__ = (
        "_events",
        "_failed",
        "_is_client",
        "_mask_key",
        "_mask_pool",
        "_mask_pos",
        "_msg_compressed",
        "_msg_decoder",
        "_msg_opcode",
        "_msg_parts",
        "_msg_size",
        "_out",
        "_pings",
        "_rx_buf",
        "_rx_compressed",
        "_rx_done",
        "_rx_fin",
        "_rx_into",
        "_rx_mask",
        "_rx_offset",
        "_rx_remaining",
        "_state",
        "_tx_compressed",
        "_tx_in_message",
        "close_rcvd",
        "close_rcvd_then_sent",
        "close_sent",
        "eof_received",
        "extension",
        "failure",
        "max_size",
        "role",
    )

    def __init__(
        self,
        role: Role,
        *,
        max_size: int | None = 2**20,
        extension: PerMessageDeflate | None = None,
        mask_key: Callable[[], bytes] | None = None,
    ) -> None:
        if max_size is not None and max_size < 0:
            raise ValueError("max_size must be None or >= 0")
        self.role: Role = role
        self.max_size: int | None = max_size
        self.extension: PerMessageDeflate | None = extension
        self._is_client = role is Role.CLIENT
        self._mask_key = mask_key
        self._mask_pool = b""
        self._mask_pos = 0

        self._state = State.OPEN
        #: The close frame received from the peer, if any.
        self.close_rcvd: Close | None = None
        #: The close frame we sent, if any.
        self.close_sent: Close | None = None
        #: True if the peer's close frame came before ours.
        self.close_rcvd_then_sent: bool | None = None
        #: Why the connection failed: the peer's protocol violation, or None.
        self.failure: Exception | None = None
        #: True once the peer closed the TCP connection.
        self.eof_received: bool = False
        self._failed = False

        # Receiving side.
        self._events: list[Event] = []
        self._rx_done = False  # close received, failed or EOF: ignore input
        self._rx_buf = b""  # an incomplete frame header or control frame
        self._rx_remaining = 0  # payload bytes still due in the current data frame
        self._rx_mask: bytes | None = None
        self._rx_offset = 0  # payload bytes of the current frame already unmasked
        self._rx_fin = False
        # A binary message of one frame, larger than a read, is written
        # straight to its final bytes object (see _next_frame).
        self._rx_into: MessageBufferType | None = None
        self._msg_opcode = 0  # Opcode.TEXT or BINARY while a message is assembled
        self._msg_compressed = False
        self._msg_size = 0
        self._msg_parts: list[bytes] | list[str] = []
        self._msg_decoder: codecs.IncrementalDecoder | None = None
        self._pings: list[bytes] = []  # outstanding ping payloads, oldest first
        self._rx_compressed = _Pending()  # compressed bytes not inflated yet

        # Sending side.
        self._out: list[bytes] = []
        self._tx_in_message = False  # a fragmented message is being sent
        self._tx_compressed = False

    # -- state ---------------------------------------------------------------

    @property
    def state(self) -> State:
        """``OPEN``, ``CLOSING`` or ``CLOSED``."""
        return self._state

    @property
    def close_code(self) -> int | None:
        """The code of the close frame received, 1006 if the connection ended
        without one, None while it is still open."""
        if self.close_rcvd is not None:
            return self.close_rcvd.code
        if self._state is State.CLOSED:
            return CloseCode.ABNORMAL_CLOSURE
        return None

    @property
    def close_reason(self) -> str | None:
        """The reason of the close frame received, ``""`` without one, None
        while the connection is still open."""
        if self.close_rcvd is not None:
            return self.close_rcvd.reason
        if self._state is State.CLOSED:
            return ""
        return None

    def close_transport_now(self) -> bool:
        """Tell whether the I/O layer should close the TCP connection now.

        RFC 6455 §7.1.1: once both close frames are exchanged the server
        closes TCP first, and the client waits for it (with a timeout of the
        I/O layer's choosing). A failed connection is closed at once by
        either side.
        """
        return self._state is State.CLOSED and (
            not self._is_client or self._failed or self.eof_received
        )

    # -- receiving ------------------------------------------------------------

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Feed bytes received from the network.

        Call :meth:`events_received` afterwards for what they completed and
        :meth:`data_to_send` for what must go out in reply (pongs, close
        frames). Data received after a close frame, a failure or EOF is
        ignored.
        """
        if self._rx_done:
            return
        if not isinstance(data, bytes):
            data = bytes(data)
        if self._rx_buf:
            data = self._rx_buf + data
            self._rx_buf = b""
        pos = 0
        end = len(data)
        view: memoryview | None = None
        try:
            while pos < end:
                if self._rx_remaining:
                    # Inside a data frame whose payload is still arriving.
                    if self._rx_into is not None:
                        if view is None:
                            view = memoryview(data)
                        pos = self._into_chunk(view, pos, end)
                        continue
                    n = min(end - pos, self._rx_remaining, _CHUNK_MAX)
                    self._rx_remaining -= n
                    chunk: bytes | memoryview
                    if self._rx_mask is not None and n < end:
                        # Unmasked straight from the read, not from a copy
                        # of it (a view is never kept: see _data_chunk).
                        if view is None:
                            view = memoryview(data)
                        chunk = view[pos : pos + n]
                    else:
                        chunk = data[pos : pos + n]
                    self._data_chunk(chunk, not self._rx_remaining)
                    pos += n
                    continue
                pos = self._next_frame(data, pos, end)
                if pos < 0:  # an incomplete header or control frame
                    pos = -pos - 1
                    break
        except _Fail as fail:
            self._fail(fail.code, fail.reason, fail.cause)
            return
        if pos < end:
            self._rx_buf = data[pos:]

    def _next_frame(self, data: bytes, pos: int, end: int) -> int:
        """Handle the frame starting at ``data[pos]``; return the position after
        what was consumed, or ``-pos - 1`` if the frame is not complete enough."""
        try:
            header = parse_header(data, pos)
        except ProtocolError as exc:
            raise _Fail(CloseCode.PROTOCOL_ERROR, str(exc), exc) from None
        if header is None:
            return -pos - 1
        first, length, mask, header_length = header
        if (mask is None) is not self._is_client:
            # RFC 6455 §5.1: clients mask, servers don't; either mistake fails.
            raise _protocol_error("incorrect masking")
        opcode = first & 0x0F
        # RFC 6455 §5.2 and RFC 7692 §6: only RSV1, only with deflate, only on
        # the first frame of a data message.
        if first & 0x70 and (
            first & 0x70 != 0x40 or self.extension is None or opcode not in (1, 2)
        ):
            raise _protocol_error("reserved bits must be 0")

        if opcode >= 8:
            if opcode > 10:
                raise _protocol_error(f"invalid opcode {opcode:#x}")
            # RFC 6455 §5.5: control frames are never fragmented, <= 125 bytes.
            if not first & 0x80:
                raise _protocol_error("fragmented control frame")
            if length > 125:
                raise _protocol_error("control frame too long")
            stop = pos + header_length + length
            if stop > end:
                return -pos - 1
            payload = data[pos + header_length : stop]
            if mask is not None:
                payload = apply_mask(payload, mask)
            self._control_frame(opcode, payload)
            # After a close frame, whatever follows is ignored (RFC 6455 §5.5.1).
            return end if self._rx_done else stop

        if opcode == 0:
            if not self._msg_opcode:
                raise _protocol_error("unexpected continuation frame")
        elif opcode <= 2:
            if self._msg_opcode:
                raise _protocol_error("expected a continuation frame")
            self._msg_opcode = opcode
            self._msg_compressed = bool(first & 0x40)
            self._msg_size = 0
        else:
            raise _protocol_error(f"invalid opcode {opcode:#x}")
        max_size = self.max_size
        if max_size is not None and not self._msg_compressed and self._msg_size + length > max_size:
            # Fail on the header: the excess is never buffered.
            raise _too_big(max_size)

        pos += header_length
        stop = pos + length
        if first & 0x80 and stop <= end and opcode:
            # Fast path: a whole unfragmented message in hand.
            if mask is None:
                payload = data[pos:stop]
            elif length < _VIEW_MIN:
                payload = apply_mask(data[pos:stop], mask)
            else:  # unmasked from the read itself, not from a copy of it
                payload = apply_mask(memoryview(data)[pos:stop], mask)
            self._msg_opcode = 0
            if self._msg_compressed:
                payload = self._decompress(payload, True, max_size)
            if opcode == 1:
                try:
                    self._events.append(TextMessage(payload.decode()))
                except UnicodeDecodeError as exc:
                    raise _Fail(CloseCode.INVALID_DATA, "invalid UTF-8", exc) from None
            else:
                self._events.append(BinaryMessage(payload))
            return stop

        if opcode:
            self._msg_decoder = _utf8_decoder() if opcode == 1 else None
            self._msg_parts = []
            if (
                opcode == 2
                and first & 0x80
                and not self._msg_compressed
                and length <= _INTO_MAX
                and MessageBuffer is not None
            ):
                # Not all here (else the fast path took it): each piece goes
                # to its place in the message as it comes, no pieces to join.
                self._rx_into = MessageBuffer(length)
        self._rx_mask = mask
        self._rx_offset = 0
        self._rx_fin = bool(first & 0x80)
        self._rx_remaining = length
        if not length:
            self._data_chunk(b"", True)
        return pos

    def _mask_for(self, n: int) -> bytes | None:
        """The mask for the current frame's next ``n`` payload bytes, in the
        phase where the last piece left it (None if the frame is unmasked)."""
        mask = self._rx_mask
        if mask is not None:
            offset = self._rx_offset & 3
            if offset:
                mask = mask[offset:] + mask[:offset]
            self._rx_offset += n
        return mask

    def _into_chunk(self, view: memoryview, pos: int, end: int) -> int:
        """Write what the read holds of the payload to the message's buffer;
        return the position after it."""
        into = self._rx_into
        assert into is not None
        n = min(end - pos, self._rx_remaining)
        self._rx_remaining -= n
        into.append(view[pos : pos + n], self._mask_for(n))
        if not self._rx_remaining:
            self._rx_into = None
            self._msg_opcode = 0
            self._events.append(BinaryMessage(into.take()))
        return pos + n

    def _data_chunk(self, chunk: bytes | memoryview, frame_done: bool) -> None:
        """Add part of a data frame's payload to the message being assembled.

        ``chunk`` is a memoryview only if masked: unmasking copies it, so no
        view of a read outlives this call. (Kept, a view would pin the whole
        read for a few bytes of a message, memory that max_size does not
        count.)
        """
        mask = self._mask_for(len(chunk))
        if mask is not None:
            chunk = apply_mask(chunk, mask)
        elif TYPE_CHECKING:
            assert isinstance(chunk, bytes)
        message_done = frame_done and self._rx_fin
        if self._msg_compressed:
            # Inside a large frame, inflate in batches of up to _INFLATE_BATCH
            # compressed bytes, not once per read: fewer zlib calls, UTF-8
            # decodes and pieces to join, while what we hold stays bounded and
            # the output is still capped per call (a bomb fails with 1009 all
            # the same). Every frame's end is inflated and validated at once,
            # so a fragmented message still fails fast, fragment by fragment.
            pending = self._rx_compressed
            if not frame_done and len(chunk) + pending.total < _INFLATE_BATCH:
                pending.append(chunk)
                return
            if pending.parts:
                chunk = pending.take(chunk)
            limit = None if self.max_size is None else self.max_size - self._msg_size
            chunk = self._decompress(chunk, message_done, limit)
        self._msg_size += len(chunk)
        decoder = self._msg_decoder
        if decoder is not None:
            try:
                text = decoder.decode(chunk, message_done)
                if not message_done and _surrogate_pending(decoder):
                    raise UnicodeDecodeError(
                        "utf-8", chunk, len(chunk) - 2, len(chunk), "surrogate"
                    )
            except UnicodeDecodeError as exc:
                raise _Fail(CloseCode.INVALID_DATA, "invalid UTF-8", exc) from None
            if text:
                self._msg_parts.append(text)  # type: ignore[arg-type]  # str parts for text
        elif chunk:
            self._msg_parts.append(chunk)  # type: ignore[arg-type]  # bytes parts for binary
        if message_done:
            parts = self._msg_parts
            self._msg_parts = []
            self._msg_decoder = None
            if self._msg_opcode == 1:
                self._events.append(TextMessage("".join(parts)))  # type: ignore[arg-type]
            else:
                self._events.append(BinaryMessage(b"".join(parts)))  # type: ignore[arg-type]
            self._msg_opcode = 0

    def _decompress(self, data: bytes, fin: bool, limit: int | None) -> bytes:
        extension = self.extension
        assert extension is not None
        try:
            return extension.decompress(data, fin=fin, max_length=limit)
        except PayloadTooBig:
            raise _too_big(self.max_size) from None
        except ProtocolError as exc:
            raise _Fail(CloseCode.INVALID_DATA, "invalid compressed data", exc) from None

    def _control_frame(self, opcode: int, payload: bytes) -> None:
        if opcode == Opcode.PING:
            # RFC 6455 §5.5.2: answer with the same payload, unless a close
            # frame was received (then _rx_done stops us before we get here).
            if self._state is not State.CLOSED:
                self._write_frame(0x80 | Opcode.PONG, payload)
            self._events.append(Ping(payload))
        elif opcode == Opcode.PONG:
            acked: tuple[bytes, ...] = ()
            pings = self._pings
            if payload in pings:
                index = pings.index(payload) + 1
                acked = tuple(pings[:index])
                del pings[:index]
            self._events.append(Pong(payload, acked))
        else:
            try:
                close = Close.parse(payload)
            except ProtocolError as exc:
                raise _Fail(CloseCode.PROTOCOL_ERROR, str(exc), exc) from None
            except UnicodeDecodeError as exc:
                raise _Fail(CloseCode.INVALID_DATA, "invalid UTF-8 in close reason", exc) from None
            self.close_rcvd = close
            self._rx_done = True
            self._events.append(close)
            if self.close_sent is None:
                # RFC 6455 §5.5.1: echo the status code we received.
                self.close_rcvd_then_sent = True
                self._send_close_frame(close)
            else:
                self.close_rcvd_then_sent = False
            self._state = State.CLOSED

    def receive_eof(self) -> None:
        """Tell the machine the peer closed the TCP connection.

        Without a completed closing handshake the connection ends abnormally:
        :attr:`close_code` becomes 1006, which is never sent on the wire.
        """
        if self.eof_received:
            return
        self.eof_received = True
        self._rx_done = True
        self._state = State.CLOSED

    def events_received(self) -> list[Event]:
        """Return the events completed since the last call, oldest first."""
        events = self._events
        if events:
            self._events = []
        return events

    # -- sending --------------------------------------------------------------

    def send_text(self, data: str, *, fin: bool = True) -> None:
        """Queue a text message, or the first fragment of one if ``fin`` is false
        (RFC 6455 §5.6). Continue it with :meth:`send_continuation`."""
        self._send_data(Opcode.TEXT, data.encode(), fin)

    def send_binary(self, data: bytes | bytearray | memoryview, *, fin: bool = True) -> None:
        """Queue a binary message, or the first fragment of one if ``fin`` is
        false (RFC 6455 §5.6)."""
        self._send_data(Opcode.BINARY, data, fin)

    def send_continuation(self, data: bytes | bytearray | memoryview, *, fin: bool) -> None:
        """Queue the next fragment of the message started with ``fin=False``.

        For a text message, ``data`` is UTF-8; a code point may be split
        between fragments (RFC 6455 §5.6).
        """
        self._send_data(Opcode.CONT, data, fin)

    def _send_data(self, opcode: int, data: bytes | bytearray | memoryview, fin: bool) -> None:
        if self.close_sent is not None or self._state is State.CLOSED:
            raise ProtocolError("cannot send a data frame after the close frame")
        if not isinstance(data, bytes):
            # len() of a memoryview counts items, not bytes; bytes() flattens
            # any buffer to its raw bytes, which the frame header must count.
            data = bytes(data)
        if opcode:
            if self._tx_in_message:
                raise ProtocolError("a fragmented message is in progress")
            ext = self.extension
            self._tx_compressed = ext is not None and (not fin or len(data) >= ext.min_size)
            first = opcode | 0x40 if self._tx_compressed else opcode
        else:
            if not self._tx_in_message:
                raise ProtocolError("no fragmented message in progress")
            first = 0
        if self._tx_compressed:
            assert self.extension is not None
            data = self.extension.compress(data, fin=fin)
        self._tx_in_message = not fin
        self._write_frame(first | 0x80 if fin else first, data)

    def send_ping(self, data: bytes = b"") -> None:
        """Queue a ping (RFC 6455 §5.5.2) and remember its payload, so that the
        matching :class:`Pong` lists it in ``acked``.

        Raises:
            ValueError: the payload exceeds 125 bytes, or a ping with the same
                payload is still unanswered.
            ProtocolError: the closing handshake has started.
        """
        data = bytes(data)
        if len(data) > 125:
            raise ValueError("ping payload must be 125 bytes or less")
        if data in self._pings:
            raise ValueError("already waiting for a pong with the same payload")
        self._check_can_send_control()
        self._pings.append(bytes(data))
        self._write_frame(0x80 | Opcode.PING, data)

    def send_pong(self, data: bytes = b"") -> None:
        """Queue an unsolicited pong, e.g. as a unidirectional heartbeat (§5.5.3)."""
        data = bytes(data)
        if len(data) > 125:
            raise ValueError("pong payload must be 125 bytes or less")
        self._check_can_send_control()
        self._write_frame(0x80 | Opcode.PONG, data)

    def _check_can_send_control(self) -> None:
        if self.close_sent is not None or self._state is State.CLOSED:
            raise ProtocolError("the closing handshake has started")

    def send_close(self, code: int | None = CloseCode.NORMAL_CLOSURE, reason: str = "") -> None:
        """Start the closing handshake (RFC 6455 §7.1.2).

        ``code=None`` sends a close frame with no payload. The machine moves to
        ``CLOSING`` and waits for the peer's close frame.

        Raises:
            ValueError: the code may not be sent, or the reason is too long.
            ProtocolError: a close frame was already sent or received.
        """
        if code is None:
            if reason:
                raise ValueError("a reason requires a close code")
            close = Close(CloseCode.NO_STATUS_RCVD, "")
        else:
            close = Close(code, reason)
        payload = close.serialize()  # validates before any state changes
        if self.close_sent is not None or self._state is not State.OPEN:
            raise ProtocolError("the closing handshake has already started")
        self.close_sent = close
        self._write_frame(0x80 | Opcode.CLOSE, payload)
        self._state = State.CLOSING

    def fail(self, code: int = CloseCode.INTERNAL_ERROR, reason: str = "") -> None:
        """Fail the connection (RFC 6455 §7.1.7): send a close frame with
        ``code`` unless one was sent already, and move to ``CLOSED`` at once.

        The I/O layer calls this, for instance, when a keepalive ping times
        out (1011). Safe to call in any state.
        """
        self._fail(code, reason, None)

    def _fail(self, code: int, reason: str, cause: Exception | None) -> None:
        if self.failure is None and cause is not None:
            self.failure = cause
        self._rx_done = True
        self._failed = True
        if self.close_sent is None and self._state is not State.CLOSED:
            self._send_close_frame(Close(code, reason))
        self._state = State.CLOSED

    def _send_close_frame(self, close: Close) -> None:
        self.close_sent = close
        self._write_frame(0x80 | Opcode.CLOSE, close.serialize())

    def data_to_send(self) -> bytes:
        """Return the bytes queued for the network since the last call.

        The machine batches: several ``send_*`` calls between two calls of this
        method come out as one buffer, ready for a single write.
        """
        out = self._out
        if not out:
            return b""
        self._out = []
        return out[0] if len(out) == 1 else b"".join(out)

    def _write_frame(self, first: int, payload: bytes) -> None:
        # Callers pass bytes: len() must count bytes, not a memoryview's items.
        if self._is_client:
            mask = self._next_mask_key()
            header = serialize_header(first, len(payload), mask)
            self._out.append(mask_frame(header, payload, mask))
        else:
            self._out.append(serialize_header(first, len(payload)))
            self._out.append(payload)

    def _next_mask_key(self) -> bytes:
        if self._mask_key is not None:
            return self._mask_key()
        pos = self._mask_pos
        pool_size = len(self._mask_pool)
        if pos + 4 > pool_size:
            # Start small and double: a short-lived connection (one message,
            # a close frame) need not read 4 KiB of randomness nor keep it.
            pool_size = min(_MASK_POOL_SIZE, max(_MASK_POOL_FIRST, 2 * pool_size))
            self._mask_pool = os.urandom(pool_size)
            pos = 0
        self._mask_pos = pos + 4
        return self._mask_pool[pos : pos + 4]


#: The most payload _data_chunk() takes at once. A transport may hand over
#: a quarter of a megabyte per read (asyncio's and uvloop's do): unmasked in
#: one piece, each such chunk would be a fresh allocation above malloc's mmap
#: threshold, paid in page faults, where pieces of this size reuse the heap.
_CHUNK_MAX = 2**16

#: From this size on, a masked payload is unmasked through a memoryview of the
#: read rather than from a slice of it: one copy of the payload fewer, for a
#: view that costs more than copying a small one.
_VIEW_MIN = 4096

#: The largest frame written straight to its message's buffer, which is
#: allocated whole on the frame's header (max_size bounds it first): reserved
#: address space, not memory, until the payload arrives.
_INTO_MAX = 16 * 2**20

# See _data_chunk: how much compressed input we gather before inflating it.
_INFLATE_BATCH = 256 * 1024


class _Pending:
    """Byte strings gathered to be joined once, with their total length."""

    __slots__ = ("parts", "total")

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.total = 0

    def append(self, data: bytes) -> None:
        self.parts.append(data)
        self.total += len(data)

    def take(self, last: bytes) -> bytes:
        """Return everything gathered followed by ``last``, and forget it."""
        self.parts.append(last)
        data = b"".join(self.parts)
        self.parts = []
        self.total = 0
        return data


def _too_big(max_size: int | None) -> _Fail:
    reason = f"message exceeds limit of {max_size} bytes"
    return _Fail(CloseCode.MESSAGE_TOO_BIG, reason, PayloadTooBig(reason))


def _surrogate_pending(decoder: codecs.IncrementalDecoder) -> bool:
    """Tell whether the decoder holds the start of a UTF-16 surrogate (ED A0..BF).

    CPython's incremental decoder waits for the third byte before rejecting
    it; RFC 6455 §8.1 wants the failure as soon as it is certain.
    """
    pending = decoder.getstate()[0]
    return len(pending) >= 2 and pending[0] == 0xED and pending[1] >= 0xA0
