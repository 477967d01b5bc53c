"""``bench/bench_io.py --quick`` runs one cheap case end to end, so the
end-to-end benchmark cannot rot unnoticed.

It needs every peer library of the ``bench`` extra: the test skips without
one locally and fails under ``CI=true``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import IN_CI

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench" / "bench_io.py"
PEERS = ("websockets", "websockets.trio", "trio_websocket", "aiohttp", "uvloop", "picows")
#: The cheapest echo case (a few dozen round trips per cell), and the
#: many-connections one at 20 connections (warm-up, then timed rounds).
CASES = {"A-echo-16B": [], "C-many-16B": ["--conns", "20"]}


@pytest.fixture(scope="module")
def peers_installed() -> None:
    missing = [name for name in PEERS if importlib.util.find_spec(name) is None]
    if missing:
        message = f"the benchmark needs {', '.join(missing)} (pip install -e '.[bench]')"
        if IN_CI:
            pytest.fail(f"CI=true but {message}")
        pytest.skip(message)


@pytest.mark.usefixtures("peers_installed")
@pytest.mark.parametrize("case_key", CASES)
def test_quick_case_runs_every_implementation(tmp_path: Path, case_key: str) -> None:
    out = tmp_path / "bench_io.json"
    env = dict(os.environ)
    # Import this checkout's trio_ws even when it is not installed.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    args = ["--quick", "--only", case_key, *CASES[case_key], "--json", str(out)]
    with subprocess.Popen(
        [sys.executable, str(BENCH), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    ) as proc:
        try:
            # Below pytest-timeout's 60 s, so that we get the output on a hang.
            stdout, stderr = proc.communicate(timeout=50)
        except subprocess.TimeoutExpired:
            proc.terminate()  # the benchmark stops its workers on SIGTERM
            stdout, stderr = proc.communicate(timeout=10)
            pytest.fail(f"bench_io.py --quick hung:\n{stdout}{stderr}")
    assert proc.returncode == 0, stdout + stderr
    assert "trio_ws" in stdout
    assert "websockets" in stdout
    report = json.loads(out.read_text(encoding="utf-8"))
    (case,) = report["cases"]
    assert case["case"]["key"] == case_key
    cells = {(cell["server"], cell["client"]): cell for cell in case["cells"]}
    for pair in [
        ("trio_ws-trio", "trio_ws-trio"),
        ("trio_ws-asyncio", "trio_ws-asyncio"),
        ("websockets-trio", "websockets-trio"),
        ("raw-trio", "raw-trio"),
        ("trio_ws-trio", "picows"),
        ("picows", "trio_ws-trio"),
    ]:
        assert cells[pair]["error"] is None, cells[pair]["error"]
        assert cells[pair]["median_rate"] > 0
    if shutil.which("pgrep"):  # no worker outlives the run
        leftovers = subprocess.run(
            ["pgrep", "-f", f"io_worker.py .*--parent {proc.pid}"],
            capture_output=True,
            text=True,
            check=False,
        )
        assert not leftovers.stdout.strip(), leftovers.stdout
