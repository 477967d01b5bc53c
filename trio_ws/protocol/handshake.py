"""RFC 6455 §4: the HTTP/1.1 opening handshake, sans-IO, on top of h11.

Two objects, one per side. Neither performs I/O: you feed them the bytes you
read and write out the bytes they hand you.

Client::

    hs = ClientHandshake("example.com", "/chat", subprotocols=["chat.v1"])
    write(hs.data_to_send())             # the upgrade request
    while not hs.complete:
        data = read()
        hs.receive_data(data) if data else hs.receive_eof()
    if not hs.accepted:
        raise hs.error                   # InvalidStatus, InvalidHeader, ...
    # hs.subprotocol, hs.extension and hs.trailing_data go to the frame machine.

Server::

    hs = ServerHandshake()
    while hs.request is None and hs.error is None:
        data = read()
        hs.receive_data(data) if data else hs.receive_eof()
    # Hooks run here: a process_request hook may send_response() a 401 or a
    # health check instead of upgrading.
    if hs.error is not None:
        if hs.error_response is not None:
            hs.send_response(hs.error_response)
    else:
        hs.send_response(hs.accept(subprotocol=select_subprotocol(...)))
    write(hs.data_to_send())
    # hs.extension, hs.subprotocol and hs.trailing_data go to the frame machine.

A misbehaving peer never makes ``receive_data()`` or ``receive_eof()`` raise:
the failure is recorded in ``error``. Asking for something impossible in the
current state (accepting a request that is not a valid upgrade, sending two
responses) raises :class:`~trio_ws.exceptions.ProtocolError` at once, and bad
arguments raise :class:`ValueError`.

h11 parses both directions and serializes the client's request, with one
shortcut each way for the common case: a plain upgrade request, a plain 101
and a request with no unusual field are read or written by :mod:`.http`
instead, in exactly the form h11 would give them (the tests compare the two),
and h11 gets every head the shortcut declines, from its first byte. The
server serializes its responses itself: a rejection may answer a request that
h11 refused (garbage, an oversized head), after which h11's connection is in
its ERROR state and can send nothing, and one serializer for every response
keeps a single code path.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import os
import re
import sys
from typing import TYPE_CHECKING

import h11

from ..exceptions import (
    InvalidHandshake,
    InvalidHeader,
    InvalidStatus,
    NegotiationError,
    ProtocolError,
)
from .deflate import (
    DeflateConfig,
    client_accept,
    client_offer,
    parse_extension_header,
    server_accept,
)
from .http import (
    TOKEN_RE,
    Headers,
    HeadersLike,
    Request,
    Response,
    head_may_follow,
    make_response,
    non_empty,
    parse_switching_response,
    parse_upgrade_request,
    serialize_response,
    split_list,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from .deflate import PerMessageDeflate

__all__ = [
    "SERVER",
    "USER_AGENT",
    "ClientHandshake",
    "Headers",
    "HeadersLike",
    "Request",
    "Response",
    "ServerHandshake",
    "accept_key",
    "generate_key",
    "make_response",
    "select_subprotocol",
]


def _package_version() -> str:
    try:
        return importlib.metadata.version("trio_ws")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - uninstalled source tree
        return "0+unknown"


_VERSION = _package_version()

#: The default ``User-Agent`` of :class:`ClientHandshake`.
USER_AGENT = f"trio_ws/{_VERSION} Python/{sys.version_info.major}.{sys.version_info.minor}"
#: The default ``Server`` header of :meth:`ServerHandshake.accept`.
SERVER = f"trio_ws/{_VERSION}"

# RFC 6455 §1.3: the GUID both sides append to the key.
_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


_DEFAULT_MAX_HEADER_SIZE = 16384

# A request-target h11 accepts (RFC 9112 §3.2: visible ASCII).
_PLAIN_TARGET_RE = re.compile(r"[\x21-\x7e]+")
# Request fields h11 checks beyond their syntax: one Host, and the framing.
_H11_CHECKED_FIELDS = frozenset({"host", "content-length", "transfer-encoding"})


def _require_token(fields: dict[str, list[str]], name: str, token: str) -> None:
    """Raise InvalidHeader unless the list header ``name`` contains ``token``.

    ``fields`` maps lower-case names to their values (``Headers._grouped()``).
    """
    values = fields.get(name.lower())
    if not values:
        raise InvalidHeader(name)
    # The items of split_list(values), looked at one by one.
    for value in values:
        for item in value.split(","):
            if item.strip().lower() == token:
                return
    raise InvalidHeader(name, ", ".join(values), f"expected {token!r}")


def generate_key() -> str:
    """Return a fresh ``Sec-WebSocket-Key``: 16 random bytes in base64 (RFC 6455 §4.1)."""
    return base64.b64encode(os.urandom(16)).decode()  # what secrets.token_bytes() reads


def accept_key(key: str) -> str:
    """Return the ``Sec-WebSocket-Accept`` value for ``key`` (RFC 6455 §4.2.2).

    ``accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="``
    """
    digest = hashlib.sha1((key + _GUID).encode(), usedforsecurity=False).digest()
    return base64.b64encode(digest).decode()


def _is_valid_key(key: str) -> bool:
    try:
        # validate=True: other characters than base64's are an error, not noise.
        # Non-ASCII text raises ValueError too.
        return len(base64.b64decode(key, validate=True)) == 16
    except ValueError:
        return False


def select_subprotocol(client: Sequence[str], server: Sequence[str]) -> str | None:
    """Pick the first subprotocol in ``server``'s order that the client offered.

    Returns None when they share none. That is not an error here: RFC 6455
    §4.1 lets the client decide whether to go on without a subprotocol.
    """
    for subprotocol in server:
        if subprotocol in client:
            return subprotocol
    return None


def _response_from_h11(event: h11.Response | h11.InformationalResponse) -> Response:
    return Response(
        event.status_code,
        event.reason.decode("latin-1"),
        Headers._from_wire(event.headers.raw_items()),
    )


class ClientHandshake:
    """The client side of the opening handshake (RFC 6455 §4.1).

    The request is built at once and :meth:`data_to_send` returns it. Feed
    every byte read afterwards to :meth:`receive_data` (and the end of the
    stream to :meth:`receive_eof`) until :attr:`complete` is True. Then either
    :attr:`accepted` is True, and :attr:`subprotocol`, :attr:`extension` and
    :attr:`trailing_data` (the first WebSocket bytes, which may have arrived
    with the response) go to the frame machine; or :attr:`error` says why the
    server or its response was refused.

    Args:
        host: the ``Host`` header; include ``:port`` when it is not the
            scheme's default, and put an IPv6 address in brackets.
        resource: the request-target, e.g. ``"/chat?room=1"``; ASCII
            (percent-encode anything else).
        origin: the ``Origin`` header, if any.
        subprotocols: subprotocols to offer, most preferred first.
        compression: the permessage-deflate offer (RFC 7692), or None for
            no extension.
        additional_headers: more headers for the request, after ours.
        user_agent: the ``User-Agent`` header, or None to send none.
        key: the ``Sec-WebSocket-Key``; random by default. Tests pass one to
            get reproducible bytes.
        max_response_body: how much of a refusal's body to keep; the
            response is complete once that much has arrived.
        max_header_size: the largest response head we buffer.

    Raises:
        ValueError: an argument is malformed: a header, a subprotocol that
            is not a token, a non-ASCII resource, or an invalid key.
    """

    def __init__(
        self,
        host: str,
        resource: str,
        *,
        origin: str | None = None,
        subprotocols: Sequence[str] = (),
        compression: DeflateConfig | None = DeflateConfig(),  # noqa: B008 - frozen, so sharable
        additional_headers: HeadersLike = (),
        user_agent: str | None = USER_AGENT,
        key: str | None = None,
        max_response_body: int = 65536,
        max_header_size: int = _DEFAULT_MAX_HEADER_SIZE,
    ) -> None:
        if isinstance(subprotocols, str):
            raise TypeError("subprotocols must be a sequence of str, not a str")
        for subprotocol in subprotocols:
            # RFC 6455 §4.1: each element is a token.
            if not TOKEN_RE.fullmatch(subprotocol):
                raise ValueError(f"invalid subprotocol {subprotocol!r}")
        if key is None:
            key = generate_key()
        elif not _is_valid_key(key):
            raise ValueError(f"invalid Sec-WebSocket-Key {key!r}: need 16 bytes in base64")
        if not resource.startswith("/"):
            raise ValueError(f"resource must start with '/', not {resource!r}")
        try:
            target = resource.encode("ascii")
        except UnicodeEncodeError:
            raise ValueError(f"resource must be ASCII (percent-encode it): {resource!r}") from None

        headers = Headers()
        headers.add("Host", host)
        # Valid by construction: constants, and a key checked above.
        headers._items += [
            ("upgrade", "Upgrade", "websocket"),
            ("connection", "Connection", "Upgrade"),
            ("sec-websocket-key", "Sec-WebSocket-Key", key),
            ("sec-websocket-version", "Sec-WebSocket-Version", "13"),
        ]
        if origin is not None:
            headers.add("Origin", origin)
        if subprotocols:
            headers.add("Sec-WebSocket-Protocol", ", ".join(subprotocols))
        if compression is not None:
            headers.add("Sec-WebSocket-Extensions", client_offer(compression))
        if user_agent is USER_AGENT:
            headers._items.append(("user-agent", "User-Agent", USER_AGENT))
        elif user_agent is not None:
            headers.add("User-Agent", user_agent)
        if additional_headers:
            for name, value in Headers(additional_headers).items():
                headers.add(name, value)

        #: What we send.
        self.request: Request = Request(resource, headers)
        #: True once the outcome is known: accepted, refused, or failed.
        self.complete: bool = False
        #: True when the server switched protocols and every check passed.
        self.accepted: bool = False
        #: The server's response, once complete (None if none arrived).
        self.response: Response | None = None
        #: Why the handshake failed, once complete and not accepted.
        self.error: InvalidHandshake | None = None
        #: The subprotocol the server chose, if any.
        self.subprotocol: str | None = None
        #: The negotiated permessage-deflate codec, if any.
        self.extension: PerMessageDeflate | None = None
        #: Bytes that followed the 101 response: the first WebSocket frames.
        self.trailing_data: bytes = b""

        self._key = key
        self._subprotocols = list(subprotocols)
        self._compression = compression
        self._max_response_body = max_response_body
        self._received = 0
        # A refusal whose body we are reading, and that body so far.
        self._refusal: Response | None = None
        self._body = bytearray()
        self._max_header_size = max_header_size
        # The start of a response head, while it may still be a plain 101.
        self._buffer = b""
        self._target = target
        # The request h11 would serialize, kept in case it has to read the
        # response (see receive_data).
        self._fields = list(headers._items)
        self._conn: h11.Connection | None = None
        checked = [lower for lower, _, _ in self._fields if lower in _H11_CHECKED_FIELDS]
        if checked == ["host"] and _PLAIN_TARGET_RE.fullmatch(resource):
            # What h11 would write, byte for byte (Host comes first, as it
            # puts it), without an h11 connection: a plain 101 needs none.
            self._outgoing = "".join(
                [
                    f"GET {resource} HTTP/1.1\r\n",
                    *[f"{name}: {value}\r\n" for _, name, value in self._fields],
                    "\r\n",
                ]
            ).encode("latin-1")
        else:
            # h11 checks the rest: the target's characters, framing fields
            # and a second Host, with its own error messages.
            self._outgoing = self._h11_connection(resource)

    def _h11_connection(self, resource: str) -> bytes:
        """Hand the request to a new h11 connection; return its bytes.

        h11 then waits for the response. Raises ValueError if h11 refuses
        the request.
        """
        self._conn = conn = h11.Connection(
            h11.CLIENT, max_incomplete_event_size=self._max_header_size
        )
        fields = [
            (name.encode("latin-1"), value.encode("latin-1")) for _, name, value in self._fields
        ]
        try:
            request_bytes = conn.send(
                h11.Request(method=b"GET", target=self._target, headers=fields)
            )
        except h11.LocalProtocolError as exc:
            raise ValueError(f"invalid resource {resource!r}: {exc}") from None
        # A request without Content-Length has an empty body (RFC 9112 §6.3),
        # so EndOfMessage serializes to nothing; sending it moves h11 on to
        # waiting for the response.
        conn.send(h11.EndOfMessage())
        return request_bytes or b""

    def data_to_send(self) -> bytes:
        """Return the bytes to write: the whole request the first time, then b""."""
        data, self._outgoing = self._outgoing, b""
        return data

    def receive_data(self, data: bytes) -> None:
        """Feed bytes read from the server; then look at :attr:`complete`.

        Bytes that arrive after an accepted response are appended to
        :attr:`trailing_data`; after a refusal or failure they are ignored.
        An empty ``data`` is not EOF: call :meth:`receive_eof` for that.
        """
        if self.complete:
            if self.accepted:
                self.trailing_data += data
            return
        if not data:
            return
        self._received += len(data)
        conn = self._conn
        if conn is None:
            # Most servers answer with a plain 101 in one read: parse that
            # ourselves, and hand anything else to h11, which reads it as if
            # it had had every byte from the start.
            buffer = self._buffer + data if self._buffer else bytes(data)
            parsed = parse_switching_response(buffer)
            if parsed is not None:
                self._buffer = b""
                response, length = parsed
                self._switch(response, buffer[length:])
                return
            if head_may_follow(buffer, self._max_header_size):
                self._buffer = buffer
                return
            self._buffer = b""
            self._h11_connection(self.request.path)
            conn = self._conn
            assert conn is not None
            data = buffer
        conn.receive_data(data)
        self._process()

    def receive_eof(self) -> None:
        """Tell the handshake the server closed the connection.

        A refusal whose body had no length ends here; anything else still
        incomplete fails with :class:`~trio_ws.exceptions.InvalidHandshake`.
        """
        if self.complete:
            return
        if self._refusal is None:
            if self._received:
                message = "connection closed in the middle of the HTTP response"
            else:
                message = "connection closed before the server sent an HTTP response"
            self._fail(InvalidHandshake(message))
            return
        # A refusal was read by h11.
        assert self._conn is not None
        self._conn.receive_data(b"")
        self._process()

    def _process(self) -> None:
        conn = self._conn
        assert conn is not None
        try:
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    return
                if isinstance(event, h11.InformationalResponse):
                    if event.status_code == 101:
                        self._switch(_response_from_h11(event), conn.trailing_data[0])
                        return
                    # RFC 9110 §15.2: a client must skip interim responses
                    # (100 Continue, 103 Early Hints) it did not ask for.
                    continue
                if isinstance(event, h11.Response):
                    self._refusal = _response_from_h11(event)
                elif isinstance(event, h11.Data):
                    room = self._max_response_body - len(self._body)
                    self._body += event.data[:room]
                else:
                    # EndOfMessage: the body is complete. (We stop reading
                    # there, so PAUSED or ConnectionClosed never follow.)
                    break
                if len(self._body) >= self._max_response_body:
                    # Enough to show the user; the rest is not worth waiting for.
                    break
        except h11.RemoteProtocolError as exc:
            if self._refusal is None:
                if exc.error_status_hint == 431:
                    message = "HTTP response headers too large"
                else:
                    message = f"invalid HTTP response: {exc}"
                self._fail(InvalidHandshake(message))
                return
            # The body was cut short (EOF before Content-Length bytes, bad
            # chunking): the status is what matters, so keep what arrived.
        self._refuse()

    def _refuse(self) -> None:
        response = self._refusal
        # h11 emits Data and EndOfMessage only after a Response.
        assert response is not None
        response.body = bytes(self._body)
        self.response = response
        self._fail(InvalidStatus(response))

    def _switch(self, response: Response, trailing_data: bytes) -> None:
        self.response = response
        self.trailing_data = trailing_data
        try:
            subprotocol, extension = self._check(response.headers._grouped())
        except InvalidHandshake as exc:
            self._fail(exc)
            return
        self.subprotocol = subprotocol
        self.extension = extension
        self.accepted = True
        self.complete = True

    def _check(self, fields: dict[str, list[str]]) -> tuple[str | None, PerMessageDeflate | None]:
        """Validate a 101 response (RFC 6455 §4.1, "the client MUST validate")."""
        _require_token(fields, "Upgrade", "websocket")
        _require_token(fields, "Connection", "upgrade")

        accepts = fields.get("sec-websocket-accept")
        if not accepts:
            raise InvalidHeader("Sec-WebSocket-Accept")
        if len(accepts) > 1:
            raise InvalidHeader("Sec-WebSocket-Accept", ", ".join(accepts), "more than one")
        if accepts[0] != accept_key(self._key):
            raise InvalidHeader("Sec-WebSocket-Accept", accepts[0], "does not match the key")

        subprotocol = None
        protocol_values = fields.get("sec-websocket-protocol")
        if protocol_values:
            chosen = split_list(protocol_values)
            if len(chosen) != 1:
                raise InvalidHeader(
                    "Sec-WebSocket-Protocol",
                    ", ".join(protocol_values),
                    "the server must choose exactly one",
                )
            subprotocol = chosen[0]
            if subprotocol not in self._subprotocols:
                raise NegotiationError(
                    f"server chose subprotocol {subprotocol!r}, which the client did not offer"
                )

        extension = None
        extension_values = non_empty(fields.get("sec-websocket-extensions", ()))
        if extension_values:
            if self._compression is None:
                # RFC 6455 §9.1: the server may only use extensions we offered.
                raise NegotiationError(
                    f"server chose extensions {', '.join(extension_values)!r}, "
                    "but the client offered none"
                )
            extension = client_accept(self._compression, extension_values)
        return subprotocol, extension

    def _fail(self, error: InvalidHandshake) -> None:
        self.error = error
        self.complete = True


class ServerHandshake:
    """The server side of the opening handshake (RFC 6455 §4.2).

    Feed every byte read to :meth:`receive_data` (and the end of the stream
    to :meth:`receive_eof`) until :attr:`request` or :attr:`error` is set.

    - A valid upgrade request: :attr:`request` is set, :attr:`error` is None.
      Call :meth:`accept` for the 101 response, then :meth:`send_response`
      (or send a refusal of your own instead).
    - Anything else: :attr:`error` says what is wrong and
      :attr:`error_response` is the response to send before closing: 400 for
      a malformed request, 426 with ``Upgrade: websocket`` when it is not an
      upgrade at all (a browser opening the URL), 426 with
      ``Sec-WebSocket-Version: 13`` for another protocol version, 405 with
      ``Allow: GET`` for another method, 505 for an HTTP major version other
      than 1, 431 for a head larger than ``max_header_size``, 501 for a
      transfer coding h11 cannot read. It is None when the client closed
      before its request was complete: nobody would read an answer.
      :attr:`request` is set too if the request head was complete, so a
      ``process_request`` hook can still answer, say, a health check.

    Then write out :meth:`data_to_send`. Bytes that followed the request head
    (a client may pipeline its first frame) are in :attr:`trailing_data` and
    belong to the frame machine, together with :attr:`extension` and
    :attr:`subprotocol`.

    Args:
        max_header_size: the largest request head we accept, in bytes; more
            is refused with 431 and never buffered.
    """

    def __init__(self, *, max_header_size: int = _DEFAULT_MAX_HEADER_SIZE) -> None:
        #: The request head, once complete (even if not a valid upgrade).
        self.request: Request | None = None
        #: Why the request cannot be upgraded, if it cannot.
        self.error: InvalidHandshake | None = None
        #: The response to send for :attr:`error`, if one is worth sending.
        self.error_response: Response | None = None
        #: Bytes that followed a valid request head: the first frames.
        self.trailing_data: bytes = b""
        #: The subprotocols the client offered, in its order.
        self.client_subprotocols: list[str] = []
        #: The permessage-deflate codec negotiated by :meth:`accept`, if any.
        self.extension: PerMessageDeflate | None = None
        #: The subprotocol chosen by :meth:`accept`, if any.
        self.subprotocol: str | None = None

        self._max_header_size = max_header_size
        # h11 reads the head only when it is not a plain upgrade request (see
        # receive_data); until then, what has arrived of it.
        self._conn: h11.Connection | None = None
        self._buffer = b""
        self._received = 0
        self._head_done = False  # the request head arrived, or reading it failed
        self._key: str | None = None  # set once the request is a valid upgrade
        self._extension_offers: list[str] = []
        self._sent = False
        self._outgoing = b""

    def receive_data(self, data: bytes) -> None:
        """Feed bytes read from the client; then look at :attr:`request` and :attr:`error`.

        Bytes that arrive after a valid request head are appended to
        :attr:`trailing_data`; after an error they are ignored. An empty
        ``data`` is not EOF: call :meth:`receive_eof` for that.
        """
        if self._head_done:
            if self._key is not None:
                self.trailing_data += data
            return
        if not data:
            return
        self._received += len(data)
        conn = self._conn
        if conn is None:
            # Most clients send a plain upgrade request in one write: parse
            # that ourselves, and hand anything else to h11, which reads it as
            # if it had had every byte from the start.
            buffer = self._buffer + data if self._buffer else bytes(data)
            parsed = parse_upgrade_request(buffer)
            if parsed is not None:
                self._buffer = b""
                target, headers, length = parsed
                self._head_done = True
                self._head_received(Request(target, headers), "1.1", buffer[length:])
                return
            if head_may_follow(buffer, self._max_header_size):
                self._buffer = buffer
                return
            self._buffer = b""
            self._conn = conn = h11.Connection(
                h11.SERVER, max_incomplete_event_size=self._max_header_size
            )
            data = buffer
        conn.receive_data(data)
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError as exc:
            self._head_done = True
            if exc.error_status_hint == 431:
                self._reject(431, self._too_large())
            else:
                self._reject(
                    exc.error_status_hint, InvalidHandshake(f"invalid HTTP request: {exc}")
                )
            return
        # The first event on a server connection is the request head; until it
        # is complete h11 says NEED_DATA (we handle EOF ourselves).
        if not isinstance(event, h11.Request):
            return
        self._head_done = True
        request = Request(
            event.target.decode("latin-1"),
            Headers._from_wire(event.headers.raw_items()),
            event.method.decode("latin-1"),
        )
        self._head_received(request, event.http_version.decode(), conn.trailing_data[0])

    def _head_received(self, request: Request, http_version: str, after_head: bytes) -> None:
        """Decide on a complete request head: a valid upgrade, or an error."""
        self.request = request
        # Every check below looks fields up here, in one pass over the head.
        fields = request.headers._grouped()
        self.client_subprotocols = split_list(fields.get("sec-websocket-protocol", ()))
        # Checked here as well as by h11: h11 only bounds a head that arrives
        # in pieces, and the limit should not depend on how reads split.
        if self._received - len(after_head) > self._max_header_size:
            self._reject(431, self._too_large())
            return
        if request.method != "GET":
            # RFC 6455 §4.2.1: the handshake is a GET. 405 rather than 400: the
            # request is fine, this URL just does not do that.
            error = InvalidHandshake(f"unsupported HTTP method {request.method}; expected GET")
            self._reject(405, error, [("Allow", "GET")])
            return
        major, _, minor = http_version.partition(".")
        if major != "1":
            self._reject(505, InvalidHandshake(f"unsupported HTTP version {http_version}"))
            return
        if minor == "0":
            # RFC 6455 §4.2.1 needs HTTP/1.1. Not 505: that status is for
            # another major version (RFC 9110 §15.6.6).
            self._reject(400, InvalidHandshake("HTTP/1.0 request; WebSocket needs HTTP/1.1"))
            return
        content_length = fields.get("content-length")
        if "transfer-encoding" in fields or (
            content_length is not None and content_length[0].lstrip("0") != ""
        ):
            # We would have to read and discard it before the first frame.
            self._reject(400, InvalidHandshake("the upgrade request has a body"))
            return
        try:
            _require_token(fields, "Upgrade", "websocket")
        except InvalidHeader as exc:
            # RFC 9110 §15.5.22: 426 says which protocol to upgrade to.
            self._reject(426, exc, [("Upgrade", "websocket")])
            return
        try:
            key = self._check(fields)
        except InvalidHeader as exc:
            self._reject(400, exc)
            return
        versions = fields["sec-websocket-version"]  # _check made sure
        if versions != ["13"]:
            # RFC 6455 §4.2.2: name the versions we understand.
            error = InvalidHeader(
                "Sec-WebSocket-Version", ", ".join(versions), "only version 13 is supported"
            )
            self._reject(426, error, [("Upgrade", "websocket"), ("Sec-WebSocket-Version", "13")])
            return
        self._key = key
        self.trailing_data = after_head

    def _check(self, fields: dict[str, list[str]]) -> str:
        """Validate the upgrade headers (RFC 6455 §4.2.1) and return the key."""
        if "host" not in fields:
            # h11 enforces this for HTTP/1.1 only.
            raise InvalidHeader("Host")
        _require_token(fields, "Connection", "upgrade")
        keys = fields.get("sec-websocket-key")
        if not keys:
            raise InvalidHeader("Sec-WebSocket-Key")
        if len(keys) > 1:
            raise InvalidHeader("Sec-WebSocket-Key", ", ".join(keys), "more than one")
        if not _is_valid_key(keys[0]):
            raise InvalidHeader("Sec-WebSocket-Key", keys[0], "expected 16 bytes in base64")
        if "sec-websocket-version" not in fields:
            raise InvalidHeader("Sec-WebSocket-Version")
        offers = non_empty(fields.get("sec-websocket-extensions", ()))
        if offers:
            # Refuse a malformed header whatever our own compression setting,
            # so the same request gets the same answer from every server. This
            # also means server_accept() cannot raise in accept().
            parse_extension_header(offers)
        self._extension_offers = offers
        return keys[0]

    def _too_large(self) -> InvalidHandshake:
        return InvalidHandshake(f"request head larger than {self._max_header_size} bytes")

    def _reject(self, status: int, error: InvalidHandshake, headers: HeadersLike = ()) -> None:
        self.error = error
        body = f"Failed to open a WebSocket connection: {error}.\n"
        response_headers = Headers(headers)
        if "Upgrade" in response_headers:
            if status == 426 and isinstance(error, InvalidHeader) and error.name == "Upgrade":
                body += (
                    "\nThis URL serves WebSocket connections. A browser cannot open it "
                    "directly; use a WebSocket client.\n"
                )
            # RFC 9110 §7.8: whoever sends Upgrade also sends Connection: upgrade.
            response_headers["Connection"] = "Upgrade, close"
        else:
            response_headers["Connection"] = "close"
        self.error_response = make_response(status, body, headers=response_headers)

    def receive_eof(self) -> None:
        """Tell the handshake the client closed the connection.

        Before the request head is complete this is an error with no
        :attr:`error_response`; afterwards it is the frame machine's business
        and is ignored here.
        """
        if self._head_done:
            return
        self._head_done = True
        if self._received:
            self.error = InvalidHandshake("connection closed before the request was complete")
        else:
            self.error = InvalidHandshake("connection closed before the client sent a request")

    def accept(
        self,
        *,
        subprotocol: str | None = None,
        compression: DeflateConfig | None = DeflateConfig(),  # noqa: B008 - frozen, so sharable
        additional_headers: HeadersLike = (),
        server_header: str | None = SERVER,
    ) -> Response:
        """Build the 101 response that accepts the upgrade (RFC 6455 §4.2.2).

        Sets :attr:`subprotocol` and :attr:`extension` but sends nothing: pass
        the response (perhaps after a ``process_response`` hook changed it)
        to :meth:`send_response`.

        Args:
            subprotocol: the subprotocol to use, one of
                :attr:`client_subprotocols` (see :func:`select_subprotocol`),
                or None.
            compression: what permessage-deflate parameters we accept, or
                None to decline any offer. An offer we cannot honour is
                declined, as RFC 7692 §5.1 says, rather than refused.
            additional_headers: more headers for the response, after ours.
            server_header: the ``Server`` header, or None to send none.

        Raises:
            ProtocolError: there is no valid upgrade request to accept, or a
                response was already sent.
            ValueError: ``subprotocol`` was not offered by the client.
        """
        if self._key is None:
            raise ProtocolError("no valid WebSocket upgrade request to accept")
        if self._sent:
            raise ProtocolError("a handshake response was already sent")
        if subprotocol is not None and subprotocol not in self.client_subprotocols:
            raise ValueError(f"the client did not offer subprotocol {subprotocol!r}")
        # Valid by construction: constants, and base64.
        headers = Headers._trusted(
            [
                ("upgrade", "Upgrade", "websocket"),
                ("connection", "Connection", "Upgrade"),
                ("sec-websocket-accept", "Sec-WebSocket-Accept", accept_key(self._key)),
            ]
        )
        if subprotocol is not None:
            headers.add("Sec-WebSocket-Protocol", subprotocol)
        extension = None
        if compression is not None and self._extension_offers:
            # Offers we cannot honour are declined (RFC 7692 §5.1), not refused.
            negotiated = server_accept(compression, self._extension_offers)
            if negotiated is not None:
                value, extension = negotiated
                headers.add("Sec-WebSocket-Extensions", value)
        if server_header is SERVER:
            headers._items.append(("server", "Server", SERVER))
        elif server_header is not None:
            headers.add("Server", server_header)
        if additional_headers:
            for name, value in Headers(additional_headers).items():
                headers.add(name, value)
        self.subprotocol = subprotocol
        self.extension = extension
        return Response(101, "Switching Protocols", headers)

    def send_response(self, response: Response) -> None:
        """Queue ``response`` for :meth:`data_to_send`: the 101, or a refusal.

        A refusal (any status but 101) gets ``Connection: close`` unless it
        has a ``Connection`` header, and ``Content-Length`` unless it has a
        length or ``Transfer-Encoding``; the caller closes the connection
        after writing it. It also clears :attr:`subprotocol` and
        :attr:`extension`: nothing was negotiated.

        Raises:
            ProtocolError: a response was already sent, or a 101 answers a
                request that is not a valid upgrade.
            ValueError: the status is not 101 or 200-599, the reason phrase
                holds a control character, a 101/204/304 has a body, or
                ``Content-Length`` does not match the body.
        """
        if self._sent:
            raise ProtocolError("a handshake response was already sent")
        if response.status_code == 101:
            if self._key is None:
                raise ProtocolError("cannot switch protocols: no valid upgrade request")
        else:
            self.subprotocol = None
            self.extension = None
        head = self.request is not None and self.request.method == "HEAD"
        self._outgoing = serialize_response(response, head=head)
        self._sent = True

    def data_to_send(self) -> bytes:
        """Return the bytes queued by :meth:`send_response` and forget them."""
        data, self._outgoing = self._outgoing, b""
        return data
