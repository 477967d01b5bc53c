"""Parsing ``ws://`` and ``wss://`` URLs: trio_ws/_url.py, pure functions."""

from __future__ import annotations

import base64

import pytest

from trio_ws import InvalidHandshake, InvalidURI
from trio_ws._url import WebSocketURI, parse_uri


@pytest.mark.parametrize(
    ("url", "secure", "host", "port", "resource"),
    [
        ("ws://example.com", False, "example.com", 80, "/"),
        ("ws://example.com/", False, "example.com", 80, "/"),
        ("wss://example.com", True, "example.com", 443, "/"),
        ("ws://example.com:8765/chat", False, "example.com", 8765, "/chat"),
        ("wss://example.com:80/", True, "example.com", 80, "/"),
        ("WS://Example.COM/Chat", False, "example.com", 80, "/Chat"),
        ("wSs://example.com/", True, "example.com", 443, "/"),
        ("ws://127.0.0.1:1/", False, "127.0.0.1", 1, "/"),
        ("ws://example.com:/", False, "example.com", 80, "/"),
    ],
)
def test_scheme_host_port_and_resource(
    url: str, secure: bool, host: str, port: int, resource: str
) -> None:
    uri = parse_uri(url)
    assert (uri.secure, uri.host, uri.port, uri.resource) == (secure, host, port, resource)
    assert uri.user is None
    assert uri.password is None
    assert uri.authorization is None


@pytest.mark.parametrize(
    ("url", "host", "port", "host_header"),
    [
        ("ws://[::1]/", "::1", 80, "[::1]"),
        ("ws://[::1]:8765/", "::1", 8765, "[::1]:8765"),
        ("wss://[2001:db8::7]/x", "2001:db8::7", 443, "[2001:db8::7]"),
        ("ws://[::ffff:192.0.2.1]:81/", "::ffff:192.0.2.1", 81, "[::ffff:192.0.2.1]:81"),
    ],
)
def test_ipv6_literal_loses_its_brackets_but_the_host_header_keeps_them(
    url: str, host: str, port: int, host_header: str
) -> None:
    uri = parse_uri(url)
    assert (uri.host, uri.port, uri.host_header) == (host, port, host_header)


@pytest.mark.parametrize(
    ("url", "resource"),
    [
        ("ws://h/chat?room=1", "/chat?room=1"),
        ("ws://h?room=1", "/?room=1"),
        ("ws://h/a/b/?x=1&y=2&y=3", "/a/b/?x=1&y=2&y=3"),
        ("ws://h/?", "/"),
        ("ws://h/path/", "/path/"),
    ],
)
def test_query_is_part_of_the_resource(url: str, resource: str) -> None:
    assert parse_uri(url).resource == resource


@pytest.mark.parametrize(
    ("url", "resource"),
    [
        ("ws://h/a b", "/a%20b"),
        ("ws://h/caf\u00e9?q=\u00e9t\u00e9", "/caf%C3%A9?q=%C3%A9t%C3%A9"),
        ("ws://h/x?q=a b&r=<>", "/x?q=a%20b&r=%3C%3E"),
        # Already encoded stays as it is: no double encoding.
        ("ws://h/a%20b?q=%2F", "/a%20b?q=%2F"),
        # Characters allowed raw in a request target are left alone.
        ("ws://h/!$&'()*+,;=:@~-._/?a=b/c?d", "/!$&'()*+,;=:@~-._/?a=b/c?d"),
    ],
)
def test_resource_is_percent_encoded_once(url: str, resource: str) -> None:
    uri = parse_uri(url)
    assert uri.resource == resource
    uri.resource.encode("ascii")  # what the request line needs


def test_cr_lf_in_the_url_cannot_inject_a_header() -> None:
    uri = parse_uri("ws://h/a\r\nX-Injected: yes")
    assert "\r" not in uri.resource
    assert "\n" not in uri.resource
    assert " " not in uri.resource


def test_credentials_become_a_basic_authorization_header() -> None:
    uri = parse_uri("wss://alice:s3cret@example.com/private")
    assert (uri.user, uri.password) == ("alice", "s3cret")
    assert uri.authorization == "Basic " + base64.b64encode(b"alice:s3cret").decode()
    assert (uri.host, uri.port, uri.resource) == ("example.com", 443, "/private")


def test_credentials_are_percent_decoded() -> None:
    uri = parse_uri("ws://us%40er:p%3Ass%20w%C3%B6rd@h/")
    assert (uri.user, uri.password) == ("us@er", "p:ss w\u00f6rd")
    assert (
        uri.authorization == "Basic " + base64.b64encode("us@er:p:ss w\u00f6rd".encode()).decode()
    )


def test_user_without_password_sends_an_empty_password() -> None:
    uri = parse_uri("ws://alice@h/")
    assert (uri.user, uri.password) == ("alice", None)
    assert uri.authorization == "Basic " + base64.b64encode(b"alice:").decode()


def test_credentials_never_appear_in_str() -> None:
    uri = parse_uri("ws://alice:s3cret@h:8080/x?y=1")
    assert str(uri) == "ws://h:8080/x?y=1"
    assert "s3cret" not in str(uri)


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("ws://b\u00fccher.example/", "xn--bcher-kva.example"),
        ("wss://\u4f8b\u3048.\u30c6\u30b9\u30c8:9000/", "xn--r8jz45g.xn--zckzah"),
        ("ws://B\u00dcCHER.example/", "xn--bcher-kva.example"),
    ],
)
def test_international_host_names_are_idna_encoded(url: str, host: str) -> None:
    uri = parse_uri(url)
    assert uri.host == host
    uri.host_header.encode("ascii")


@pytest.mark.parametrize(
    ("url", "text"),
    [
        ("http://example.com/", "scheme"),
        ("https://example.com/", "scheme"),
        ("ftp://example.com/", "scheme"),
        ("example.com/chat", "scheme"),
        ("", "scheme"),
        ("ws:///chat", "hostname"),
        ("ws://", "hostname"),
        ("ws://:8080/", "hostname"),
        ("ws://user:pw@/", "hostname"),
        ("ws://example.com/#frag", "fragment"),
        ("ws://example.com/chat?room=1#frag", "fragment"),
        ("ws://example.com:99999/", "range"),
        ("ws://example.com:-1/", ""),
        ("ws://example.com:port/", ""),
        ("ws://[::1/", ""),
        ("ws://" + "\u00fc" * 64 + ".example/", "encoded"),
    ],
)
def test_bad_urls_raise_invalid_uri(url: str, text: str) -> None:
    with pytest.raises(InvalidURI) as excinfo:
        parse_uri(url)
    error = excinfo.value
    assert isinstance(error, InvalidHandshake)
    assert error.uri == url
    assert text in error.msg
    assert str(error).startswith(f"{url} isn't a valid URI: ")


@pytest.mark.parametrize(
    "url", ["ws://exa mple.com/", "ws://exa\x00mple.com/", "ws://exa\x7fmple.com/", "ws://h\x01x/"]
)
def test_host_with_whitespace_or_control_characters_is_invalid(url: str) -> None:
    # Such a host would otherwise reach DNS and the Host header as is.
    with pytest.raises(InvalidURI, match="hostname"):
        parse_uri(url)


def test_url_must_be_a_str() -> None:
    with pytest.raises(TypeError):
        parse_uri(b"ws://example.com/")  # type: ignore[arg-type]  # the point of the test


@pytest.mark.parametrize(
    ("secure", "host", "port", "expected"),
    [
        (False, "example.com", 80, "example.com"),
        (False, "example.com", 443, "example.com:443"),
        (True, "example.com", 443, "example.com"),
        (True, "example.com", 80, "example.com:80"),
        (False, "example.com", 8765, "example.com:8765"),
        (False, "::1", 80, "[::1]"),
        (True, "::1", 8443, "[::1]:8443"),
        (False, "127.0.0.1", 8080, "127.0.0.1:8080"),
    ],
)
def test_host_header_rules(secure: bool, host: str, port: int, expected: str) -> None:
    """RFC 6455 §4.1 / RFC 9110 §7.2: brackets around IPv6, the port unless default."""
    uri = WebSocketURI(secure=secure, host=host, port=port, resource="/")
    assert uri.host_header == expected
    scheme = "wss" if secure else "ws"
    assert str(uri) == f"{scheme}://{expected}/"
    assert parse_uri(str(uri)) == uri


def test_round_trip_through_str_keeps_everything_but_credentials() -> None:
    uri = parse_uri("wss://u:p@[::1]:9443/a%20b?c=d")
    again = parse_uri(str(uri))
    assert again == WebSocketURI(True, "::1", 9443, "/a%20b?c=d")


def test_parsed_uri_is_immutable() -> None:
    uri = parse_uri("ws://h/")
    with pytest.raises(AttributeError):
        uri.host = "other"  # type: ignore[misc]  # frozen dataclass: the point of the test
