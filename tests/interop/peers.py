"""Finding the interop peers, and the payloads every peer can rebuild.

Each interop module checks for its peer with :func:`require`: a missing peer
skips the test on a laptop and fails it under CI (``CI=true``), where
``tests/interop/install.sh`` is expected to have run.

Payloads are deterministic so that a peer in another language can produce or
check the same bytes: :func:`text_payload` repeats a mixed-script unit (1 to
4 UTF-8 bytes per character) and pads with ``x`` to the exact byte length;
:func:`binary_payload` is SHAKE-256 output, incompressible and available in
Node's ``crypto`` as ``shake256`` with ``outputLength``. ``peer.js`` has the
same two functions.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest

from tests.helpers import IN_CI

HERE = Path(__file__).resolve().parent
NODE_DIR = HERE / "node"
INSTALL_HINT = "run tests/interop/install.sh"
CHROMIUM = os.environ.get("TRIO_WS_CHROMIUM", "/usr/bin/chromium")

#: Every wait on a peer is bounded by this (seconds), scaled on slow machines
#: with ``TRIO_WS_INTEROP_TIMEOUT``.
TIMEOUT = float(os.environ.get("TRIO_WS_INTEROP_TIMEOUT", "30"))

MiB = 2**20
#: Sizes at every frame-length boundary of RFC 6455 §5.2, then large ones.
SIZES = [0, 1, 125, 126, 127, 65535, 65536, 65537, MiB + 1, 16 * MiB]
#: max_size on both sides, so that the 16 MiB messages pass. Not 16 MiB plus a
#: few bytes: websockets and ws also apply it to the compressed frame, and
#: deflate makes incompressible data larger (by 0.24% with trio_ws's default
#: mem_level of 5, 0.03% with zlib's default of 8).
MAX_SIZE = 17 * MiB

TEXT_UNIT = "trio_ws ↔ peer: grüße, ✓ 🙂; "

#: The longest close reason (123 bytes, RFC 6455 §5.5), in 2-byte characters.
LONG_REASON = "é" * 61 + "!"
#: The longest ping payload (125 bytes, RFC 6455 §5.5).
LONG_PING = "p" * 125
_TEXT_UNIT_BYTES = TEXT_UNIT.encode()
_BINARY_SEED = b"trio_ws interop"


def require(available: bool, what: str) -> None:
    """Skip the calling test if ``what`` is missing, or fail it under CI."""
    if available:
        return
    message = f"{what} is not available; {INSTALL_HINT}"
    if IN_CI:
        pytest.fail(f"{message} (CI=true: interop peers are required)", pytrace=False)
    pytest.skip(message)


async def wait_until(predicate: Callable[[], bool]) -> None:
    """Poll ``predicate`` until it holds, for at most 5 seconds.

    For state that another implementation (or another process) changes
    without an event we could wait on: websockets' close frame, a latency
    measured by keepalive pings. Raises TimeoutError.
    """
    with anyio.fail_after(5):
        while not predicate():  # noqa: ASYNC110  # nothing to wait on but the state itself
            await anyio.sleep(0.005)


def text_payload(size: int) -> str:
    """A text message of exactly ``size`` UTF-8 bytes."""
    count, rest = divmod(size, len(_TEXT_UNIT_BYTES))
    return TEXT_UNIT * count + "x" * rest


def binary_payload(size: int) -> bytes:
    """A binary message of ``size`` pseudo-random (incompressible) bytes."""
    return hashlib.shake_256(_BINARY_SEED).digest(size)


def payload(kind: str, size: int) -> str | bytes:
    """``text_payload`` or ``binary_payload`` by name: ``"text"``/``"binary"``."""
    return text_payload(size) if kind == "text" else binary_payload(size)


def describe(message: str | bytes) -> dict[str, object]:
    """What a peer reports about a message it received: type, length, hash."""
    data = message.encode() if isinstance(message, str) else message
    return {
        "type": "text" if isinstance(message, str) else "binary",
        "length": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }


def node() -> str | None:
    """The node executable, or None."""
    return shutil.which("node")


def node_package(name: str) -> bool:
    """Whether ``tests/interop/node/node_modules/<name>`` is installed."""
    return (NODE_DIR / "node_modules" / name / "package.json").is_file()


_NODE_VERSION_CHECK = "process.exit(Number(process.versions.node.split('.')[0]) < 18 ? 1 : 0)"


@functools.cache
def node_works() -> bool:
    """Whether node runs and is at least 18 (older counts as missing)."""
    executable = node()
    if executable is None:
        return False
    try:
        result = subprocess.run(
            [executable, "-e", _NODE_VERSION_CHECK],
            capture_output=True,
            timeout=TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


def chromium_available() -> bool:
    """Whether the Chromium binary playwright-core drives is installed."""
    return os.access(CHROMIUM, os.X_OK)
