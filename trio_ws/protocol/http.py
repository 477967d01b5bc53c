"""HTTP messages for the opening handshake: header fields, requests, responses.

Plain data and their wire form, no protocol logic: :mod:`.handshake` parses
with h11 and decides; this module holds what it parses into and serializes
the server's responses.
"""

from __future__ import annotations

import http
import http.cookies
import re
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TypeAlias, TypeVar, overload

__all__ = ["Headers", "HeadersLike", "Request", "Response", "make_response"]

# Shared with .handshake, not promised to anyone else: split_list, non_empty,
# serialize_response, parse_upgrade_request, parse_switching_response,
# head_may_follow, TOKEN_RE, CTL_RE.

_T = TypeVar("_T")

# RFC 9110 §5.6.2: a field name (and a subprotocol, RFC 6455 §4.1) is a token.
TOKEN_RE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# RFC 9110 §5.5: control characters other than HTAB are invalid in a field value;
# CR and LF among them would let a value inject headers of its own.
CTL_RE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")

# Statuses whose responses never carry a body (RFC 9110 §6.4.1).
_NO_BODY_STATUSES = frozenset({101, 204, 304})

# The fast parsers below read a strict subset of what h11 reads: for any head
# they accept, h11 would produce the same fields, without error. (h11's
# grammar is in h11/_abnf.py; its field characters also admit controls other
# than NUL and whitespace, which we leave to it.)
_FIELD_CHARS = r"[\x21-\x7e\x80-\xff]"
_FIELD_RE = re.compile(
    rf"([!#$%&'*+\-.^_`|~0-9A-Za-z]+):[ \t]*((?:{_FIELD_CHARS}+(?:[ \t]+{_FIELD_CHARS}+)*)?)[ \t]*"
)
_UPGRADE_REQUEST_LINE_RE = re.compile(r"GET ([\x21-\x7e]+) HTTP/1\.1")
_SWITCHING_STATUS_LINE_RE = re.compile(r"HTTP/1\.1 101(?: ([\t\x20-\x7e\x80-\xff]*))?")
# Fields h11 checks beyond their syntax (RFC 9112 §3.2, §6): a head with one
# of these, or without exactly one Host in a request, goes to h11.
_FRAMING_FIELDS = frozenset({"content-length", "transfer-encoding"})
_REQUEST_CHECKED_FIELDS = _FRAMING_FIELDS | {"host"}


class Headers:
    """HTTP header fields: a case-insensitive multi-dict keeping order and case.

    Lookups ignore case (``headers["content-type"]`` finds ``Content-Type``);
    :meth:`items` returns every field in arrival order with its name as it
    was written. A name may appear several times: indexing returns the first
    value, :meth:`get_all` every one. Iteration and ``len()`` see each name
    once, so ``dict(headers)`` keeps the first value of each field.

    Adding a name that is not an RFC 9110 token, or a value holding a control
    character such as CR, LF or NUL, raises :class:`ValueError`: such a value
    could inject headers of its own. Leading and trailing whitespace is not
    part of a value (RFC 9110 §5.5) and is dropped. Values must be encodable
    as ISO-8859-1, the charset HTTP/1.1 puts on the wire.

    Args:
        items: initial fields: ``(name, value)`` pairs, a mapping, or another
            :class:`Headers` (copied).
    """

    __slots__ = ("_items",)

    def __init__(self, items: HeadersLike = ()) -> None:
        # (lower-case name, name as written, value)
        self._items: list[tuple[str, str, str]] = []
        if isinstance(items, Headers):
            self._items = list(items._items)
            return
        pairs = items.items() if isinstance(items, Mapping) else items
        for name, value in pairs:
            self.add(name, value)

    @classmethod
    def _trusted(cls, items: list[tuple[str, str, str]]) -> Headers:
        # (lower-case name, name, value) triples that are valid by construction:
        # parsed from a checked head, or our own constants.
        headers = cls.__new__(cls)
        headers._items = items
        return headers

    @classmethod
    def _from_wire(cls, raw: Iterable[tuple[bytes, bytes]]) -> Headers:
        # h11 has validated these already, and ISO-8859-1 decodes any byte, so
        # nothing a peer sends can make this raise.
        headers = cls()
        append = headers._items.append
        for raw_name, raw_value in raw:
            append(_shared_field(raw_name.decode("latin-1"), raw_value.decode("latin-1")))
        return headers

    def add(self, name: str, value: str) -> None:
        """Append a field, keeping any existing ones with the same name.

        Raises:
            ValueError: the name is not a token, or the value contains a
                control character or is not ISO-8859-1.
        """
        self._items.append((_check_name(name), name, _check_value(name, value)))

    def __getitem__(self, name: str) -> str:
        """Return the first value of ``name``; raise :class:`KeyError` if absent."""
        key = name.lower()
        for lower, _, value in self._items:
            if lower == key:
                return value
        raise KeyError(name)

    @overload
    def get(self, name: str) -> str | None: ...
    @overload
    def get(self, name: str, default: _T) -> str | _T: ...
    def get(self, name: str, default: object = None) -> object:
        """Return the first value of ``name``, or ``default`` if absent."""
        try:
            return self[name]
        except KeyError:
            return default

    def get_all(self, name: str) -> list[str]:
        """Return every value of ``name`` in order; empty if absent."""
        key = name.lower()
        return [value for lower, _, value in self._items if lower == key]

    def __setitem__(self, name: str, value: str) -> None:
        """Replace every field called ``name`` by one with ``value``.

        The field keeps the position of the first one it replaces, or goes at
        the end if there was none.
        """
        key = _check_name(name)
        entry = (key, name, _check_value(name, value))
        for index, (lower, _, _) in enumerate(self._items):
            if lower == key:
                self._items[index + 1 :] = [i for i in self._items[index + 1 :] if i[0] != key]
                self._items[index] = entry
                return
        self._items.append(entry)

    def __delitem__(self, name: str) -> None:
        """Remove every field called ``name``; raise :class:`KeyError` if absent."""
        key = name.lower()
        kept = [item for item in self._items if item[0] != key]
        if len(kept) == len(self._items):
            raise KeyError(name)
        self._items = kept

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        key = name.lower()
        return any(lower == key for lower, _, _ in self._items)

    def __iter__(self) -> Iterator[str]:
        """Yield each distinct name once, as first written."""
        seen: set[str] = set()
        for lower, name, _ in self._items:
            if lower not in seen:
                seen.add(lower)
                yield name

    def __len__(self) -> int:
        """Count distinct names, like :meth:`__iter__`."""
        return len({lower for lower, _, _ in self._items})

    def __bool__(self) -> bool:
        return bool(self._items)

    def keys(self) -> list[str]:
        """Return each distinct name once, as :meth:`__iter__` does."""
        return list(self)

    def items(self) -> list[tuple[str, str]]:
        """Return every ``(name, value)`` pair, in order, names as written."""
        return [(name, value) for _, name, value in self._items]

    def raw_items(self) -> list[tuple[bytes, bytes]]:
        """Return every pair encoded as it goes on the wire (the form h11 takes)."""
        return [(name.encode("latin-1"), value.encode("latin-1")) for _, name, value in self._items]

    def copy(self) -> Headers:
        """Return an independent copy."""
        return Headers(self)

    def _grouped(self) -> dict[str, list[str]]:
        grouped: dict[str, list[str]] = {}
        for lower, _, value in self._items:
            grouped.setdefault(lower, []).append(value)
        return grouped

    def __eq__(self, other: object) -> bool:
        """Compare as HTTP does: names ignore case, and only the order of
        values sharing a name matters."""
        if not isinstance(other, Headers):
            return NotImplemented
        return self._grouped() == other._grouped()

    def __repr__(self) -> str:
        return f"Headers({self.items()!r})"


#: Anything :class:`Headers` accepts: pairs, a mapping, or another Headers.
HeadersLike: TypeAlias = Headers | Mapping[str, str] | Iterable[tuple[str, str]]


def _check_name(name: str) -> str:
    """Return ``name`` in lower case, or raise ValueError if it is not a token."""
    if not TOKEN_RE.fullmatch(name):
        raise ValueError(f"invalid header name {name!r}")
    return name.lower()


def _check_value(name: str, value: str) -> str:
    """Return ``value`` without surrounding whitespace, or raise ValueError."""
    if CTL_RE.search(value):
        raise ValueError(f"header {name} contains a control character: {value!r}")
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        raise ValueError(f"header {name} is not ISO-8859-1: {value!r}") from None
    return value.strip(" \t")


def split_list(values: Iterable[str]) -> list[str]:
    """Split comma-separated header values into their non-empty items.

    RFC 9110 §5.3: several field lines with one name mean the same as one line
    with the values joined by commas, and §5.6.1 lets list elements be empty.
    """
    return [item.strip() for value in values for item in value.split(",") if item.strip()]


def non_empty(values: Iterable[str]) -> list[str]:
    """Drop blank header lines: an empty list is no list (RFC 9110 §5.6.1)."""
    return [value for value in values if value.strip()]


@dataclass
class Request:
    """An HTTP request head: the client's upgrade request.

    On the server, ``connection.request`` is this object: read the path,
    headers and cookies of the client here, for example to authenticate it in
    a ``process_request`` hook.
    """

    #: The request-target as sent, e.g. ``"/chat?room=1"``.
    path: str
    headers: Headers
    #: The HTTP method: ``"GET"`` for every upgrade; a ``process_request``
    #: hook answering plain HTTP (a health check) may see others.
    method: str = "GET"

    @property
    def resource(self) -> str:
        """The path without its query: ``"/chat"`` for ``"/chat?room=1"``."""
        return self.path.partition("?")[0]

    @property
    def query(self) -> str:
        """The query after ``?``: ``"room=1"`` for ``"/chat?room=1"``, else ``""``."""
        return self.path.partition("?")[2]

    @property
    def host(self) -> str | None:
        """The ``Host`` header, or None."""
        return self.headers.get("Host")

    @property
    def cookies(self) -> dict[str, str]:
        """The cookies the client sent, by name, from every ``Cookie`` header.

        Parsing is lenient, as browsers are: a malformed pair is skipped
        rather than dropping the rest, and quoted values are unquoted by
        :mod:`http.cookies`. When a name repeats the first value wins, since
        RFC 6265 §5.4 has user agents list the most specific cookie first.
        """
        # http.cookies.SimpleCookie.load() stops at the first pair it cannot
        # parse and mistakes cookies named "path" or "expires" for attributes,
        # so we split pairs ourselves and only borrow its unquoting.
        decoder = http.cookies.SimpleCookie()
        jar: dict[str, str] = {}
        for header in self.headers.get_all("Cookie"):
            for pair in header.split(";"):
                name, equals, value = pair.partition("=")
                name = name.strip()
                if equals and name:
                    jar.setdefault(name, decoder.value_decode(value.strip())[0])
        return jar


@dataclass
class Response:
    """An HTTP response: the server's answer to the upgrade request.

    A client that was refused finds this in
    :attr:`InvalidStatus.response <trio_ws.exceptions.InvalidStatus>`,
    including the start of the body. A server builds one with
    :meth:`ServerHandshake.accept` or :func:`make_response`.
    """

    status_code: int
    reason_phrase: str
    headers: Headers
    body: bytes = b""


def make_response(
    status: int,
    body: str | bytes = b"",
    *,
    headers: HeadersLike = (),
    content_type: str | None = "text/plain; charset=utf-8",
) -> Response:
    """Build a response for a ``process_request`` hook: a 401, a health check...

    The reason phrase is the standard one for ``status``. A ``str`` body is
    encoded as UTF-8. ``Content-Length`` is set from the body, and
    ``Content-Type`` to ``content_type`` when there is a body and ``headers``
    has none. The connection is closed once it is sent: a ``Connection: close``
    header is added when it goes out, unless you set one.

    Raises:
        ValueError: ``status`` is not 200-599, or it forbids a body
            (204, 304) and one was given.
    """
    if not 200 <= status <= 599:
        raise ValueError(f"cannot make a {status} response; use ServerHandshake.accept for 101")
    payload = body.encode() if isinstance(body, str) else body
    response_headers = Headers(headers)
    if status in _NO_BODY_STATUSES:
        if payload:
            raise ValueError(f"a {status} response has no body")
    else:
        if payload and content_type is not None and "Content-Type" not in response_headers:
            response_headers["Content-Type"] = content_type
        response_headers["Content-Length"] = str(len(payload))
    return Response(status, _reason(status), response_headers, payload)


def _reason(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        # HTTP/1.1 allows an empty reason phrase (RFC 9112 §4).
        return ""


def serialize_response(response: Response, *, head: bool = False) -> bytes:
    """Encode ``response``; ``head=True`` answers a HEAD request: the headers,
    ``Content-Length`` included, and no body (RFC 9110 §9.3.2)."""
    status = response.status_code
    if status != 101 and not 200 <= status <= 599:
        raise ValueError(f"cannot send a {status} response")
    reason = response.reason_phrase
    if CTL_RE.search(reason):
        raise ValueError(f"reason phrase contains a control character: {reason!r}")
    headers = response.headers
    body = response.body
    # Fields we add go after the caller's, in this order.
    added: list[tuple[str, str, str]] = []
    if status in _NO_BODY_STATUSES:
        if body:
            raise ValueError(f"a {status} response has no body")
    elif "Transfer-Encoding" not in headers:
        # RFC 9112 §6.3: without a length the body would run to the close.
        length = headers.get("Content-Length")
        if length is None:
            added.append(("content-length", "Content-Length", str(len(body))))
        elif length != str(len(body)):
            raise ValueError(f"Content-Length {length} does not match a {len(body)}-byte body")
    if status != 101 and "Connection" not in headers:
        added.append(("connection", "Connection", "close"))
    text = "".join(
        [
            f"HTTP/1.1 {status} {reason}\r\n",
            *[f"{name}: {value}\r\n" for _, name, value in headers._items],
            *[f"{name}: {value}\r\n" for _, name, value in added],
            "\r\n",
        ]
    )
    data = text.encode("latin-1")
    return data if head or not body else data + body


def head_may_follow(buffer: bytes, max_size: int) -> bool:
    """Whether h11 would wait for more of a head that starts with ``buffer``.

    True when ``buffer`` holds no blank line yet (h11 ends a head at
    ``\\n\\r?\\n``), is at most ``max_size`` bytes, and does not start with
    a byte that h11 refuses at once. Until then a head can be collected
    without h11; after, h11 judges ``buffer`` exactly as if it had been fed
    piece by piece.
    """
    return (
        len(buffer) <= max_size
        and buffer[0] > 0x20
        and b"\n\n" not in buffer
        and b"\n\r\n" not in buffer
    )


#: Fields whose values are mostly the same on every request of a server.
_SHARED_VALUES = frozenset(
    {
        "connection",
        "sec-websocket-extensions",
        "sec-websocket-protocol",
        "sec-websocket-version",
        "upgrade",
        "user-agent",
        "origin",
        "accept-encoding",
        "accept-language",
        "cache-control",
        "pragma",
    }
)


def _shared_field(name: str, value: str) -> tuple[str, str, str]:
    """``(lower-case name, name, value)``, with strings shared between the
    requests a server keeps (interned): the names, and the values that
    rarely differ. A server holding many idle connections holds their
    request headers, which are mostly the same few strings."""
    name = sys.intern(name)
    lower = sys.intern(name.lower())
    if lower in _SHARED_VALUES:
        value = sys.intern(value)
    return lower, name, value


def _parse_fields(lines: list[str], checked: frozenset[str]) -> list[tuple[str, str, str]] | None:
    """(lower-case name, name, value) for each field line, or None if a line
    is not plain or names a field in ``checked`` other than one Host."""
    items = []
    hosts = 0
    fullmatch = _FIELD_RE.fullmatch
    for line in lines:
        match = fullmatch(line)
        if match is None:
            return None
        field = _shared_field(*match.groups())
        lower = field[0]
        if lower in checked:
            if lower != "host" or hosts:
                return None
            hosts += 1
        items.append(field)
    if "host" in checked and not hosts:
        return None
    return items


def _plain_head(
    buffer: bytes, first_line: re.Pattern[str], checked: frozenset[str]
) -> tuple[re.Match[str], list[tuple[str, str, str]], int] | None:
    """The first line's match, the fields and the length of a complete head
    at the start of ``buffer``, or None if it is incomplete or out of the
    ordinary (see :func:`_parse_fields`)."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        return None
    lines = buffer[:end].decode("latin-1").split("\r\n")
    match = first_line.fullmatch(lines[0])
    if match is None:
        return None
    del lines[0]
    items = _parse_fields(lines, checked)
    if items is None:
        return None
    return match, items, end + 4


def parse_upgrade_request(buffer: bytes) -> tuple[str, Headers, int] | None:
    """Read a plain ``GET ... HTTP/1.1`` head at the start of ``buffer``.

    Returns ``(target, headers, head length)``, or None when the head is
    incomplete or anything in it is out of the ordinary (another method or
    version, an obsolete line fold, a body, no or several Host fields, bytes
    h11 reads more leniently): h11 reads those. Whatever this accepts, h11
    reads the same way.
    """
    head = _plain_head(buffer, _UPGRADE_REQUEST_LINE_RE, _REQUEST_CHECKED_FIELDS)
    if head is None:
        return None
    match, items, length = head
    return match[1], Headers._trusted(items), length


def parse_switching_response(buffer: bytes) -> tuple[Response, int] | None:
    """Read a plain ``HTTP/1.1 101`` head at the start of ``buffer``.

    Returns ``(response, head length)``, or None when the head is incomplete
    or is anything else (another status, framing fields, bytes h11 reads
    more leniently): h11 reads those. Whatever this accepts, h11 reads the
    same way.
    """
    head = _plain_head(buffer, _SWITCHING_STATUS_LINE_RE, _FRAMING_FIELDS)
    if head is None:
        return None
    match, items, length = head
    return Response(101, match[1] or "", Headers._trusted(items)), length
