"""The fuzzing peer: plays one :class:`~.model.Case` over a raw TCP socket.

It speaks WebSocket with its own code (:mod:`.wire`), as a client against
our server (``run_against_server``) or as a server for our client
(``run_against_client``). Two trio tasks share the socket: one plays the
case's script, the other reads everything the implementation sends, checks
it against RFC 6455/7692, records the events and answers pings and close
frames. Every wait is bounded; the whole case runs under ``case.timeout``.
"""

from __future__ import annotations

import base64
import os
import socket
from collections.abc import Callable

import trio

from .model import (
    Case,
    Close,
    Event,
    F,
    Mark,
    Observation,
    Role,
    Send,
    SendMessage,
    SendPrefix,
    SendRest,
    Shutdown,
    Sleep,
    WaitClose,
    WaitEvents,
)
from .wire import (
    BARE,
    BINARY,
    CLOSE,
    CONT,
    PING,
    PONG,
    TEXT,
    DeflateCodec,
    DeflateParams,
    RawFrame,
    WireError,
    accept_key,
    build_frame,
    check_response_against_offer,
    header_tokens,
    header_values,
    is_valid_close_code,
    is_valid_utf8,
    parse_extensions,
    parse_frame,
    parse_http_head,
    parse_pmd_params,
)

__all__ = ["run_against_client", "run_against_server", "scaled"]

_SCALE = float(os.environ.get("TRIO_WS_CONFORMANCE_TIME_SCALE", "1"))

# How long the peer waits, in seconds (times TRIO_WS_CONFORMANCE_TIME_SCALE).
# Waits for the expected events, for the implementation to fail the
# connection, and for its answer to our close frame use ``case.wait`` (3 s
# unless a case says otherwise); a correct implementation never makes the
# peer wait that long.
TCP_GRACE = 2.0  # for a server to close TCP after the closing handshake
REFUSE_WAIT = 3.0  # for our client to drop a connection whose handshake it refuses
MAX_HEAD = 16384

_DISCONNECTED = (trio.BrokenResourceError, trio.ClosedResourceError, OSError)


def scaled(seconds: float) -> float:
    return seconds * _SCALE


class _Peer:
    """One connection's worth of fuzzing peer state."""

    def __init__(
        self,
        stream: trio.SocketStream,
        case: Case,
        impl_role: Role,
        obs: Observation,
        t0: float,
    ) -> None:
        self.stream = stream
        self.case = case
        self.impl_role = impl_role
        self.obs = obs
        self.t0 = t0
        self.masking = impl_role == "server"  # we are the client: we mask
        self.codec: DeflateCodec | None = None
        self.buffer = bytearray()
        self.close_sent = False
        self.reading_done = False
        self.send_lock = trio.Lock()
        self._changed = trio.Event()
        self._sent_text: dict[int, list[bytes]] = {}  # known-valid payloads, by length
        self._held_back = b""  # the rest of a frame written in two parts
        # The message being reassembled.
        self._msg_opcode: int | None = None
        self._msg_compressed = False
        self._msg_parts: list[bytes] = []

    def now(self) -> float:
        return trio.current_time() - self.t0

    def notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def wait_for(self, predicate: Callable[[], bool], seconds: float) -> bool:
        """Wait until ``predicate()`` holds, at most ``seconds`` (scaled)."""
        with trio.move_on_after(scaled(seconds)):
            while not predicate():
                await self._changed.wait()
        return predicate()

    def _has_events(self, count: int) -> Callable[[], bool]:
        return lambda: len(self.obs.events) >= count or self.closed_or_gone()

    def closed_or_gone(self) -> bool:
        return self.obs.impl_close_at is not None or self.reading_done

    # -- writing ---------------------------------------------------------------------

    def frame_bytes(self, spec: F) -> bytes:
        masked = self.masking != spec.wrong_mask
        return build_frame(
            spec.opcode,
            spec.payload,
            fin=spec.fin,
            rsv=spec.rsv,
            mask_key=os.urandom(4) if masked else None,
            length_form=spec.length_form,
            declared_length=spec.declared_length,
        )

    async def write(self, chunks: list[bytes], delay: float = 0.0) -> None:
        """Write ``chunks`` one by one; a gone connection is not an error."""
        async with self.send_lock:
            for index, chunk in enumerate(chunks):
                if index and delay:
                    await trio.sleep(scaled(delay))
                try:
                    await self.stream.send_all(chunk)
                except _DISCONNECTED:
                    self.obs.notes.append("a write failed: the connection is gone")
                    return

    async def send_frames(
        self, frames: tuple[F, ...], chop: int | str | None, delay: float
    ) -> None:
        if any(spec.opcode == CLOSE for spec in frames):
            self.note_close_sent()
        serialized = [self.frame_bytes(spec) for spec in frames]
        if chop is None:
            chunks = [b"".join(serialized)]
        elif chop == "frame":
            chunks = serialized
        else:
            assert isinstance(chop, int)
            data = b"".join(serialized)
            chunks = [data[i : i + chop] for i in range(0, len(data), chop)]
        await self.write(chunks, delay)

    async def send_message(self, action: SendMessage) -> None:
        data = action.data
        if not action.binary:
            self._sent_text.setdefault(len(data), []).append(data)
        opcode = BINARY if action.binary else TEXT
        frames: list[bytes] = []
        for _ in range(action.repeat):
            compress = self.codec is not None and action.compress is not False
            payload = self.codec.compress(data) if compress and self.codec else data
            self.obs.compressed_sent += compress
            size = action.fragment or max(len(payload), 1)
            pieces = [payload[i : i + size] for i in range(0, len(payload), size)] or [b""]
            for index, piece in enumerate(pieces):
                frames.append(
                    build_frame(
                        opcode if index == 0 else CONT,
                        piece,
                        fin=index == len(pieces) - 1,
                        rsv=4 if compress and index == 0 else 0,
                        mask_key=os.urandom(4) if self.masking else None,
                    )
                )
        blob = b"".join(frames)
        # Big messages go out in slices, so pongs can slip in between.
        step = 1 << 20 if action.chop is None else action.chop
        await self.write([blob[i : i + step] for i in range(0, len(blob), step)] or [b""])

    async def send_close(self, action: Close) -> None:
        if action.raw is not None:
            payload = action.raw
        elif action.code is None:
            payload = b""
        else:
            payload = action.code.to_bytes(2, "big") + action.reason
        self.note_close_sent()
        await self.write([self.frame_bytes(F(CLOSE, payload, rsv=action.rsv))])

    def note_close_sent(self) -> None:
        if not self.close_sent:
            self.close_sent = True
            if self.obs.impl_close_at is None:
                self.obs.closed_by_peer = True
            self.obs.peer_close_at = self.now()

    # -- reading ---------------------------------------------------------------------

    async def reader(self) -> None:
        """Read until EOF, checking and recording every frame."""
        try:
            while True:
                while True:
                    try:
                        parsed = parse_frame(self.buffer)
                    except WireError as exc:
                        self.violation(str(exc))
                        return
                    if parsed is None:
                        break
                    frame, size = parsed
                    del self.buffer[:size]
                    await self.on_frame(frame)
                try:
                    data = await self.stream.receive_some(1 << 18)
                except _DISCONNECTED:
                    data = b""  # a reset ends the connection like EOF
                if not data:
                    if self.buffer:
                        self.obs.notes.append(f"{len(self.buffer)} bytes of a partial frame")
                    self.obs.eof_at = self.now()
                    return
                self.buffer += data
        finally:
            self.reading_done = True
            self.notify()

    def violation(self, what: str) -> None:
        self.obs.violations.append(what)

    async def on_frame(self, frame: RawFrame) -> None:
        if self.obs.impl_close_at is not None:
            self.violation(f"a frame (opcode {frame.opcode:#x}) after its close frame")
            return
        if frame.masked != (self.impl_role == "client"):
            self.violation(
                f"{'masked' if frame.masked else 'unmasked'} frame from a {self.impl_role}"
            )
        if not frame.minimal_length:
            self.violation("payload length not in its minimal encoding")
        opcode = frame.opcode
        if opcode >= 8:
            if opcode not in (CLOSE, PING, PONG):
                self.violation(f"reserved opcode {opcode:#x}")
                return
            if not frame.fin:
                self.violation("fragmented control frame")
            if len(frame.payload) > 125:
                self.violation("control frame longer than 125 bytes")
            if frame.rsv:
                self.violation("reserved bits set on a control frame")
            await self.on_control(opcode, frame.payload)
            return
        if opcode not in (CONT, TEXT, BINARY):
            self.violation(f"reserved opcode {opcode:#x}")
            return
        if opcode == CONT:
            if self._msg_opcode is None:
                self.violation("continuation frame with no message in progress")
                return
            if frame.rsv:
                self.violation("reserved bits set on a continuation frame")
        else:
            if self._msg_opcode is not None:
                self.violation("new data frame inside an unfinished message")
            allowed = 4 if self.codec is not None else 0
            if frame.rsv & ~allowed:
                self.violation(f"reserved bits {frame.rsv:03b} set without an extension")
            self._msg_opcode = opcode
            self._msg_compressed = bool(frame.rsv & 4) and self.codec is not None
            self._msg_parts = []
        self._msg_parts.append(frame.payload)
        if frame.fin:
            await self.on_message()

    async def on_message(self) -> None:
        payload = b"".join(self._msg_parts)
        opcode = self._msg_opcode
        self._msg_opcode = None
        self._msg_parts = []
        if self._msg_compressed:
            assert self.codec is not None
            self.obs.compressed_received += 1
            try:
                payload = self.codec.decompress(payload)
            except WireError as exc:
                self.violation(str(exc))
                return
        if opcode == TEXT:
            known = self._sent_text.get(len(payload), ())
            if payload not in known and not is_valid_utf8(payload):
                self.violation("text message is not valid UTF-8")
            self.record(("text", payload))
        else:
            self.record(("binary", payload))

    def record(self, event: Event) -> None:
        self.obs.events.append(event)
        self.notify()

    async def on_control(self, opcode: int, payload: bytes) -> None:
        if opcode == PING:
            self.record(("ping", payload))
            if not self.close_sent:
                await self.write([self.frame_bytes(F(PONG, payload))])
        elif opcode == PONG:
            self.record(("pong", payload))
        else:
            self.on_close(payload)
            if not self.close_sent and self.case.expect.answer_close:
                code = self.obs.impl_close_code
                await self.send_close(Close(code=code))
            self.notify()

    def on_close(self, payload: bytes) -> None:
        obs = self.obs
        obs.impl_close_at = self.now()
        if not payload:
            obs.impl_close_empty = True
            return
        if len(payload) == 1:
            self.violation("close frame with a 1-byte payload")
            obs.impl_close_empty = True
            return
        code = int.from_bytes(payload[:2], "big")
        obs.impl_close_code = code
        obs.impl_close_reason = payload[2:]
        if not is_valid_close_code(code):
            self.violation(f"close code {code} may not be sent")
        if not is_valid_utf8(payload[2:]):
            self.violation("close reason is not valid UTF-8")

    # -- the script ----------------------------------------------------------------------

    async def play(self) -> None:
        for action in self.case.actions:
            if isinstance(action, Send):
                await self.send_frames(action.frames, action.chop, action.delay)
            elif isinstance(action, SendMessage):
                await self.send_message(action)
            elif isinstance(action, SendPrefix):
                data = self.frame_bytes(action.frame)
                cut = len(data) - len(action.frame.payload) + action.upto
                self._held_back = data[cut:]
                await self.write([data[:cut]])
            elif isinstance(action, SendRest):
                await self.write([self._held_back])
            elif isinstance(action, Close):
                await self.send_close(action)
            elif isinstance(action, WaitEvents):
                await self.wait_for(self._has_events(action.count), action.timeout)
            elif isinstance(action, WaitClose):
                await self.wait_for(self.closed_or_gone, action.timeout)
            elif isinstance(action, Mark):
                self.obs.mark_at = self.now()
            elif isinstance(action, Sleep):
                await trio.sleep(scaled(action.seconds))
            elif isinstance(action, Shutdown):
                async with self.send_lock:
                    try:
                        await self.stream.send_eof()
                    except _DISCONNECTED:
                        pass
            else:  # pragma: no cover
                raise AssertionError(f"unknown action {action!r}")

    async def finish(self) -> None:
        """Close the way the case expects, then wait for (or do) the TCP close."""
        expect = self.case.expect
        if expect.closed_by != "impl" and not self.close_sent:
            # Informational cases list the likely events in ``ok`` too, so
            # this does not wait for nothing.
            await self.wait_for(
                lambda: (
                    tuple(self.obs.events) in expect.ok
                    or tuple(self.obs.events) in expect.non_strict
                    or self.closed_or_gone()
                ),
                self.case.wait,
            )
            if not self.closed_or_gone():
                await self.send_close(Close(1000))
        elif expect.closed_by == "impl":
            await self.wait_for(self.closed_or_gone, self.case.wait)
        if self.close_sent and self.obs.impl_close_at is None:
            await self.wait_for(self.closed_or_gone, self.case.wait)
        if self.impl_role == "client" and expect.peer_closes_tcp:
            # We are the server: RFC 6455 §7.1.1 has us close TCP first.
            return
        limit = TCP_GRACE if expect.tcp_close_within is None else expect.tcp_close_within + 2
        if not await self.wait_for(lambda: self.reading_done, limit):
            self.obs.dropped_by_peer = True


# -- handshakes ----------------------------------------------------------------------------


async def _read_head(stream: trio.SocketStream) -> tuple[bytes, bytes]:
    data = bytearray()
    while b"\r\n\r\n" not in data:
        if len(data) > MAX_HEAD:
            raise WireError("HTTP head too large")
        chunk = await stream.receive_some(65536)
        if not chunk:
            raise WireError(f"connection closed during the HTTP head ({bytes(data)[:200]!r})")
        data += chunk
    head, _, rest = bytes(data).partition(b"\r\n\r\n")
    return head, rest


def _codec_for(
    *, local_bits: int | None, local_nct: bool, remote_bits: int | None, remote_nct: bool
) -> DeflateCodec:
    return DeflateCodec(
        local_bits=15 if local_bits is None else local_bits,
        local_no_context=local_nct,
        # zlib inflates with windows of 2**8 and up, but a deflater asked for
        # 8 bits may use 9 (zlib.h says so): RFC 7692 §7.1.2.1 lets 8 stand.
        remote_bits=15 if remote_bits is None else remote_bits,
        remote_no_context=remote_nct,
    )


def _min_bits(a: int | None, b: int | None) -> int | None:
    values = [v for v in (a, b) if v is not None and v != BARE]
    return min(values) if values else None


async def _client_handshake(peer: _Peer, port: int) -> None:
    """Our side of the opening handshake, as a client; sets up deflate."""
    case, obs = peer.case, peer.obs
    key = base64.b64encode(os.urandom(16)).decode("ascii")
    lines = [
        f"GET /conformance/{case.id} HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
    ]
    offers = case.deflate.offers if case.deflate is not None else ()
    lines.extend(f"Sec-WebSocket-Extensions: {offer}" for offer in offers)
    await peer.stream.send_all(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
    head, rest = await _read_head(peer.stream)
    start, headers = parse_http_head(head)
    parts = start.split(" ", 2)
    if len(parts) < 2 or parts[0] != "HTTP/1.1" or parts[1] != "101":
        raise WireError(f"expected 101 Switching Protocols, got {start!r}")
    if header_tokens(headers, "upgrade") != ["websocket"]:
        raise WireError("Upgrade is not websocket")
    if "upgrade" not in header_tokens(headers, "connection"):
        raise WireError("Connection does not include upgrade")
    if header_values(headers, "sec-websocket-accept") != [accept_key(key)]:
        raise WireError("wrong Sec-WebSocket-Accept")
    peer.buffer += rest
    answer = parse_extensions(header_values(headers, "sec-websocket-extensions"))
    if case.deflate is None:
        if answer:
            raise WireError(f"extensions accepted though none were offered: {answer}")
        return
    valid_offers: list[DeflateParams] = []
    for name, params in parse_extensions(list(offers)):
        if name != "permessage-deflate":
            continue
        try:
            valid_offers.append(parse_pmd_params(params, response=False))
        except WireError:
            continue
    if not answer:
        if case.deflate.expect_accept:
            obs.notes.append("NON-STRICT: the server declined a valid permessage-deflate offer")
        return
    if len(answer) != 1 or answer[0][0] != "permessage-deflate":
        raise WireError(f"unexpected extensions in the response: {answer}")
    if case.deflate.expect_accept is False:
        raise WireError("the server accepted an offer it must decline")
    response = parse_pmd_params(answer[0][1], response=True)
    problems = [check_response_against_offer(offer, response) for offer in valid_offers]
    matching = [o for o, p in zip(valid_offers, problems, strict=True) if p is None]
    if not matching:
        raise WireError(f"the response matches no offer: {'; '.join(map(str, problems))}")
    offer = matching[0]
    obs.deflate_agreed = True
    peer.codec = _codec_for(
        local_bits=_min_bits(response.client_max_window_bits, offer.client_max_window_bits),
        local_nct=response.client_no_context_takeover or offer.client_no_context_takeover,
        remote_bits=response.server_max_window_bits,
        remote_nct=response.server_no_context_takeover,
    )


async def _server_handshake(peer: _Peer) -> bool:
    """Read our client's request and answer it. False: a stale connection."""
    case, obs = peer.case, peer.obs
    head, rest = await _read_head(peer.stream)
    start, headers = parse_http_head(head)
    parts = start.split(" ")
    if len(parts) != 3 or parts[0] != "GET" or parts[2] != "HTTP/1.1":
        raise WireError(f"bad request line {start!r}")
    if parts[1] != f"/conformance/{case.id}":
        return False
    if len(header_values(headers, "host")) != 1:
        raise WireError("the request needs exactly one Host header")
    if "websocket" not in header_tokens(headers, "upgrade"):
        raise WireError("Upgrade does not include websocket")
    if "upgrade" not in header_tokens(headers, "connection"):
        raise WireError("Connection does not include upgrade")
    if header_values(headers, "sec-websocket-version") != ["13"]:
        raise WireError("Sec-WebSocket-Version is not 13")
    keys = header_values(headers, "sec-websocket-key")
    try:
        if len(keys) != 1 or len(base64.b64decode(keys[0], validate=True)) != 16:
            raise WireError("Sec-WebSocket-Key is not 16 bytes in base64")
    except ValueError as exc:
        raise WireError("Sec-WebSocket-Key is not base64") from exc
    peer.buffer += rest
    offers = parse_extensions(header_values(headers, "sec-websocket-extensions"))
    lines = [
        "HTTP/1.1 101 Switching Protocols",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Accept: {accept_key(keys[0])}",
    ]
    deflate = case.deflate
    if deflate is not None:
        pmd = [params for name, params in offers if name == "permessage-deflate"]
        if not pmd:
            raise WireError("the client did not offer permessage-deflate")
        offer = parse_pmd_params(pmd[0], response=False)
        wanted = deflate.client
        for mismatch, what in (
            (
                offer.server_no_context_takeover != wanted.server_no_context_takeover,
                "server_no_context_takeover",
            ),
            (
                offer.server_max_window_bits != wanted.server_max_window_bits,
                "server_max_window_bits",
            ),
            (
                wanted.client_max_window_bits is not None
                and offer.client_max_window_bits != wanted.client_max_window_bits,
                "client_max_window_bits",
            ),
        ):
            if mismatch:
                raise WireError(f"the offer {pmd[0]} does not carry the configured {what}")
        if deflate.raw_response is not None:
            lines.append(f"Sec-WebSocket-Extensions: {deflate.raw_response}")
        else:
            response = deflate.response
            if response is None:
                response = DeflateParams(
                    offer.server_no_context_takeover,
                    offer.client_no_context_takeover,
                    offer.server_max_window_bits,
                    None if offer.client_max_window_bits == BARE else offer.client_max_window_bits,
                )
                problem = check_response_against_offer(offer, response)
                assert problem is None, f"case {case.id} answers its offer wrongly: {problem}"
            lines.append(f"Sec-WebSocket-Extensions: {response.header()}")
            obs.deflate_agreed = True
            peer.codec = _codec_for(
                local_bits=response.server_max_window_bits,
                local_nct=response.server_no_context_takeover,
                remote_bits=_min_bits(
                    response.client_max_window_bits, offer.client_max_window_bits
                ),
                remote_nct=response.client_no_context_takeover or offer.client_no_context_takeover,
            )
    await peer.stream.send_all(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
    return True


# -- running a case -----------------------------------------------------------------------


async def _play_case(peer: _Peer) -> None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(peer.reader)
        await peer.play()
        await peer.finish()
        nursery.cancel_scope.cancel()


async def _refused(peer: _Peer) -> None:
    """Our client got a response it must refuse: it must just close TCP."""
    async with trio.open_nursery() as nursery:
        nursery.start_soon(peer.reader)
        if not await peer.wait_for(lambda: peer.reading_done, REFUSE_WAIT):
            peer.obs.violations.append("the client kept the connection after a bad handshake")
        nursery.cancel_scope.cancel()
    frames = [kind for kind, _ in peer.obs.events]
    if frames:
        peer.obs.violations.append(f"the client sent {frames} after a bad handshake")


async def run_against_server(port: int, case: Case) -> Observation:
    """Connect to our server on ``port`` and play ``case``."""
    obs = Observation()
    t0 = trio.current_time()
    with trio.move_on_after(scaled(case.timeout)) as scope:
        try:
            stream = await trio.open_tcp_stream("127.0.0.1", port)
        except OSError as exc:
            obs.handshake_error = f"cannot connect: {exc}"
            return obs
        async with stream:
            peer = _Peer(stream, case, "server", obs, t0)
            try:
                await _client_handshake(peer, port)
            except (WireError, *_DISCONNECTED) as exc:
                obs.handshake_error = str(exc) or repr(exc)
                return obs
            await _play_case(peer)
    obs.hard_timeout = scope.cancelled_caught
    obs.duration = trio.current_time() - t0
    return obs


async def run_against_client(listener: socket.socket, case: Case) -> Observation:
    """Accept our client's connection on ``listener`` and play ``case``."""
    obs = Observation()
    t0 = trio.current_time()
    with trio.move_on_after(scaled(case.timeout)) as scope:
        while True:
            await trio.lowlevel.wait_readable(listener)
            try:
                conn, _ = listener.accept()
            except BlockingIOError:  # pragma: no cover  # a spurious wake-up
                continue
            conn.setblocking(False)
            stream = trio.SocketStream(trio.socket.from_stdlib_socket(conn))
            async with stream:
                peer = _Peer(stream, case, "client", obs, t0)
                try:
                    if not await _server_handshake(peer):
                        obs.notes.append("dropped a stale connection from an earlier case")
                        continue
                except (WireError, *_DISCONNECTED) as exc:
                    obs.handshake_error = str(exc) or repr(exc)
                    return obs
                if case.refuse_handshake:
                    await _refused(peer)
                else:
                    await _play_case(peer)
                break
    obs.hard_timeout = scope.cancelled_caught
    obs.duration = trio.current_time() - t0
    return obs
