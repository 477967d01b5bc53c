"""Parse ``ws://`` and ``wss://`` URLs (RFC 6455 §3). Pure functions."""

from __future__ import annotations

import base64
import dataclasses
import re
import urllib.parse

from .exceptions import InvalidURI

__all__ = ["WebSocketURI", "parse_uri"]

DEFAULT_PORTS = {False: 80, True: 443}

_BAD_HOST_CHARS = re.compile(r"[\x00-\x20\x7f]")


@dataclasses.dataclass(frozen=True, slots=True)
class WebSocketURI:
    """A parsed WebSocket URL."""

    secure: bool
    host: str
    port: int
    resource: str  # path and query, as sent in the request line
    user: str | None = None
    password: str | None = None

    @property
    def host_header(self) -> str:
        """The Host header value: brackets around IPv6, the port if not default."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        if self.port == DEFAULT_PORTS[self.secure]:
            return host
        return f"{host}:{self.port}"

    @property
    def authorization(self) -> str | None:
        """A Basic ``Authorization`` header value for ``user:password@``, or None."""
        if self.user is None:
            return None
        credentials = f"{self.user}:{self.password or ''}".encode()
        return "Basic " + base64.b64encode(credentials).decode()

    def __str__(self) -> str:
        scheme = "wss" if self.secure else "ws"
        return f"{scheme}://{self.host_header}{self.resource}"


def parse_uri(uri: str) -> WebSocketURI:
    """Parse a ``ws://`` or ``wss://`` URL.

    Raises:
        InvalidURI: another scheme, no host, a fragment, or a bad port.
    """
    if not isinstance(uri, str):
        raise TypeError(f"the URL must be a str, not {uri!r}")
    try:
        parsed = urllib.parse.urlsplit(uri)
        port = parsed.port
    except ValueError as exc:
        raise InvalidURI(uri, str(exc)) from None
    scheme = parsed.scheme.lower()
    if scheme not in ("ws", "wss"):
        raise InvalidURI(uri, "scheme isn't ws or wss")
    # Each of urlsplit()'s netloc properties parses the netloc again: read
    # each once.
    host = parsed.hostname
    if not host:
        raise InvalidURI(uri, "hostname isn't provided")
    if parsed.fragment:
        # RFC 6455 §3: fragment identifiers are meaningless in WebSocket URIs.
        raise InvalidURI(uri, "fragment identifier isn't allowed")
    secure = scheme == "wss"
    if _BAD_HOST_CHARS.search(host):
        # urlsplit() does not validate the host: a space or a control
        # character would reach DNS and the Host header as is.
        raise InvalidURI(uri, "hostname contains whitespace or a control character")
    try:
        host.encode("ascii")
    except UnicodeEncodeError:
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            raise InvalidURI(uri, "hostname cannot be encoded") from None
    resource = parsed.path or "/"
    if parsed.query:
        resource += "?" + parsed.query
    # Percent-encode anything that is not allowed raw in a request target.
    resource = urllib.parse.quote(resource, safe="!$%&'()*+,/:;=?@[]~")
    user = password = None
    if "@" in parsed.netloc:  # else both are None
        username, raw_password = parsed.username, parsed.password
        user = urllib.parse.unquote(username) if username is not None else None
        password = urllib.parse.unquote(raw_password) if raw_password is not None else None
    return WebSocketURI(
        secure=secure,
        host=host,
        port=port if port is not None else DEFAULT_PORTS[secure],
        resource=resource,
        user=user,
        password=password,
    )
