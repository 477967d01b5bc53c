from __future__ import annotations

import os

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
