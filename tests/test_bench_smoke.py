"""``bench/bench_core.py --quick`` runs end to end, so the benchmark cannot rot unnoticed.

It needs wsproto and websockets (the ``bench`` extra): the test skips without
them locally and fails under ``CI=true``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import IN_CI

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench" / "bench_core.py"
LIBRARIES = ("trio_ws", "wsproto", "websockets")


@pytest.fixture(scope="module")
def peers_installed() -> None:
    missing = [name for name in ("wsproto", "websockets") if importlib.util.find_spec(name) is None]
    if missing:
        message = f"the benchmark needs {' and '.join(missing)} (pip install -e '.[bench]')"
        if IN_CI:
            pytest.fail(f"CI=true but {message}")
        pytest.skip(message)


@pytest.mark.usefixtures("peers_installed")
def test_quick_benchmark_runs_and_checks_all_three(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    env = dict(os.environ)
    # Import this checkout's trio_ws even when it is not installed.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=50,  # below pytest-timeout's 60 s, so we get the output on a hang
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name in LIBRARIES:
        assert name in proc.stdout
    report = json.loads(out.read_text(encoding="utf-8"))
    assert report["results"], "no scenario ran"
    for result in report["results"]:
        assert set(result["median_ns_per_message"]) == set(LIBRARIES)
        assert all(ns > 0 for ns in result["median_ns_per_message"].values())
