from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

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
