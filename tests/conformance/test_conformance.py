"""Every conformance case as a test of its own, in both roles.

The fast cases run by default; the 16 MiB (category 9) and big deflate cases
carry ``@pytest.mark.slow``. One implementation thread serves the whole
session (see ``harness.py``); each test plays one case and fails if the case
FAILED. NON-STRICT and INFORMATIONAL outcomes pass: ``python -m
tests.conformance`` reports them.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .cases import all_cases
from .harness import ImplHarness
from .model import Case, Outcome, Role
from .runner import run_case


def _params() -> list[object]:
    params: list[object] = []
    for case in all_cases():
        for role in case.roles:
            marks = [pytest.mark.slow, pytest.mark.timeout(600)] if case.slow else []
            params.append(pytest.param(case, role, id=f"{role}-{case.id}", marks=marks))
    return params


@pytest.fixture(scope="module")
def harness() -> Iterator[ImplHarness]:
    with ImplHarness() as running:
        yield running


@pytest.mark.parametrize(("case", "role"), _params())
def test_case(harness: ImplHarness, case: Case, role: Role) -> None:
    result = run_case(harness, case, role)
    assert result.outcome is not Outcome.FAILED, result.describe()
