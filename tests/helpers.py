"""Helpers shared by the test modules; import them explicitly."""

from __future__ import annotations

import itertools
import os
from typing import TYPE_CHECKING

from trio_ws.protocol.machine import Role, WebSocketMachine

if TYPE_CHECKING:
    from collections.abc import Callable

#: Set when tests must not skip for a missing peer or accelerator.
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def fixed_mask(key: bytes = b"\x37\xfa\x21\x3d") -> Callable[[], bytes]:
    """A mask-key source that always returns ``key`` (RFC 6455 §5.7 uses this one)."""
    return lambda: key


def counting_mask() -> Callable[[], bytes]:
    """A deterministic mask-key source that changes with every frame."""
    counter = itertools.count(1)
    return lambda: next(counter).to_bytes(4, "big")


def open_machine_pair(
    *, first: str = "client", **kwargs: object
) -> tuple[WebSocketMachine, WebSocketMachine]:
    """Return ``(near, far)``: a client and a server machine, ``near`` being
    the side named by ``first``."""
    client = WebSocketMachine(Role.CLIENT, mask_key=counting_mask(), **kwargs)  # type: ignore[arg-type]
    server = WebSocketMachine(Role.SERVER, **kwargs)  # type: ignore[arg-type]
    if first == "client":
        return client, server
    return server, client


def pump(near: WebSocketMachine, far: WebSocketMachine) -> bytes:
    """Move what ``near`` has to send into ``far``; return the bytes moved."""
    data = near.data_to_send()
    if data:
        far.receive_data(data)
    return data
