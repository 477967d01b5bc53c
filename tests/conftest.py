from __future__ import annotations

import os
import socket

import pytest
import trustme
from hypothesis import HealthCheck, settings

from tests.helpers import IN_CI
from tests.io_helpers import SteppingClock
from trio_ws import connection
from trio_ws._waits import TRIO_TURN

# A fast default for every run; HYPOTHESIS_PROFILE=nightly digs deeper.
settings.register_profile("default", max_examples=100, deadline=None)
settings.register_profile(
    "nightly",
    max_examples=5000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture(
    params=[
        pytest.param(("asyncio", {"debug": True}), id="asyncio"),
        pytest.param(("trio", {}), id="trio"),
    ]
)
def anyio_backend(request: pytest.FixtureRequest) -> tuple[str, dict[str, object]]:
    """Run every ``@pytest.mark.anyio`` test on both backends, named explicitly:
    since anyio 4.12 the default silently skips backends that are missing."""
    return request.param  # type: ignore[no-any-return]


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.fixture
def ipv6() -> None:
    """Skip a test that needs ::1 where there is none; CI must have it."""
    if not _has_ipv6_loopback():
        if IN_CI:
            pytest.fail("::1 is not available, and CI must run the IPv6 tests")
        pytest.skip("::1 is not available")


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    """A throwaway certificate authority for TLS tests."""
    return trustme.CA()


@pytest.fixture
def schedule_point_per_call(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every call of a connection that need not wait a schedule point on
    trio too, as for a task whose turn is always over (see TRIO_TURN)."""
    monkeypatch.setattr(connection, "_clock", SteppingClock(TRIO_TURN * 2))
