"""The examples run as a user runs them: as scripts, in their own process."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
TIMEOUT = 30


def run_example(*args: str) -> str:
    result = subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        cwd=EXAMPLES.parent,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_demo_talks_to_itself_and_closes_cleanly() -> None:
    out = run_example(str(EXAMPLES / "demo.py"))
    assert "client: got 'hello, trio_ws'" in out
    assert "client: got 'one message in three frames'" in out
    assert "recv() timed out with a cancel scope" in out
    assert re.search(r"ping answered in \d+\.\d+ ms", out)
    assert "client: closed with code 1000" in out
    assert "server: client left with code 1000" in out


def test_echo_client_against_echo_server() -> None:
    server = subprocess.Popen(
        [sys.executable, str(EXAMPLES / "echo_server.py"), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert server.stdout is not None
        line = server.stdout.readline()  # "listening on 127.0.0.1 port N"
        match = re.search(r"listening on (\S+) port (\d+)", line)
        assert match, line
        url = f"ws://127.0.0.1:{match.group(2)}/"
        out = run_example(str(EXAMPLES / "echo_client.py"), url, "ping?", "grüße")
        assert "> ping?\n< 'ping?'" in out
        assert "> grüße\n< 'grüße'" in out
        assert "closed with code 1000" in out
    finally:
        server.send_signal(signal.SIGINT)
        try:
            _, err = server.communicate(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:  # pragma: no cover  # would be a bug
            server.kill()
            server.communicate()
            raise
    assert server.returncode == 0, err
