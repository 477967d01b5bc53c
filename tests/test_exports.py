"""The public surface is ``trio_ws.__all__``; its names show the public path."""

from __future__ import annotations

import inspect

import trio_ws
import trio_ws.exceptions
import trio_ws.protocol


def test_all_names_exist_and_are_sorted() -> None:
    assert trio_ws.__all__ == sorted(trio_ws.__all__)
    for name in trio_ws.__all__:
        assert hasattr(trio_ws, name), name


def test_public_objects_carry_the_public_module() -> None:
    for name in trio_ws.__all__:
        obj = getattr(trio_ws, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert obj.__module__ == "trio_ws", name


def test_every_exception_is_public_and_documented() -> None:
    for name in trio_ws.exceptions.__all__:
        exc = getattr(trio_ws.exceptions, name)
        assert issubclass(exc, trio_ws.WebSocketError)
        assert getattr(trio_ws, name) is exc
        assert exc.__doc__, name


def test_protocol_package_exports_exist() -> None:
    for name in trio_ws.protocol.__all__:
        assert hasattr(trio_ws.protocol, name), name
