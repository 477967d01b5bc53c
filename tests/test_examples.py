"""The examples run as a user runs them: as scripts, in their own process.

Servers start with ``--port 0`` and print the port they got; every wait on
a process is bounded by ``TIMEOUT``, and every process started is stopped
(then killed, if it will not stop) before the test ends. Only 127.0.0.1.
"""

from __future__ import annotations

import ast
import contextlib
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
ALL_EXAMPLES = sorted(EXAMPLES.rglob("*.py"))
TIMEOUT = 30
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONIOENCODING": "utf-8"}
LISTENING = r"listening on 127\.0\.0\.1 port (\d+)"


def run_script(*args: str) -> subprocess.CompletedProcess[str]:
    """Run an example to its end (within ``TIMEOUT``) and return the result."""
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=TIMEOUT,
        cwd=ROOT,
        env=ENV,
        check=False,
    )


def run_example(*args: str) -> str:
    """Run an example that must succeed; return its standard output."""
    result = run_script(*args)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    return result.stdout


class Background:
    """An example running on its own; threads collect what it prints, so
    that reading never blocks the test and the pipes never fill up."""

    def __init__(self, *args: str) -> None:
        self.args = args
        self.proc = subprocess.Popen(
            [sys.executable, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            cwd=ROOT,
            env=ENV,
        )
        self._lines: queue.Queue[str | None] = queue.Queue()  # None: end of output
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self._threads = [
            threading.Thread(target=self._read, args=(self.proc.stdout, True), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stderr, False), daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _read(self, pipe: Iterator[str], is_stdout: bool) -> None:
        for line in pipe:
            if is_stdout:
                self.stdout.append(line)
                self._lines.put(line)
            else:
                self.stderr.append(line)
        if is_stdout:
            self._lines.put(None)

    def output(self) -> str:
        return f"stdout:\n{''.join(self.stdout)}\nstderr:\n{''.join(self.stderr)}"

    def wait_for(self, pattern: str) -> re.Match[str]:
        """Wait until a line of standard output matches ``pattern``; lines
        before it are skipped (but kept in ``stdout``)."""
        deadline = time.monotonic() + TIMEOUT
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                line = self._lines.get(timeout=remaining)
            except queue.Empty:
                break
            if line is None:
                self._lines.put(None)  # for the next call: it is over
                pytest.fail(f"{self.args} exited before printing {pattern!r}\n{self.output()}")
            if match := re.search(pattern, line):
                return match
        pytest.fail(f"{self.args} did not print {pattern!r} within {TIMEOUT} s\n{self.output()}")

    def wait(self) -> int:
        """Wait for the process to end by itself; kill it if it does not."""
        try:
            self.proc.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(TIMEOUT)
            pytest.fail(f"{self.args} did not stop within {TIMEOUT} s\n{self.output()}")
        finally:
            for thread in self._threads:
                thread.join(TIMEOUT)
        return self.proc.returncode

    def stop(self) -> int:
        """Ctrl+C, as a user stops a server; return the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        return self.wait()

    def kill(self) -> None:
        """Kill it if it still runs, and wait until its output is read."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(TIMEOUT)
        for thread in self._threads:
            thread.join(TIMEOUT)


@contextlib.contextmanager
def background(*args: str) -> Iterator[Background]:
    """Run an example in the background for the block; whatever happens in
    the block, it is gone after it."""
    example = Background(*args)
    try:
        yield example
    finally:
        example.kill()
        for pipe in (example.proc.stdout, example.proc.stderr):
            if pipe is not None:
                pipe.close()


def stop_cleanly(example: Background) -> None:
    assert example.stop() == 0, example.output()
    assert "Traceback" not in "".join(example.stderr), example.output()


# -- every example --------------------------------------------------------------------


@pytest.mark.parametrize("path", ALL_EXAMPLES, ids=[p.stem for p in ALL_EXAMPLES])
def test_example_has_a_docstring_and_help(path: Path) -> None:
    docstring = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
    assert docstring, f"{path.name} has no docstring saying what it shows"
    command = f"python {path.relative_to(ROOT).as_posix()}"
    assert command in docstring, f"the docstring of {path.name} does not say how to run it"
    out = run_example(str(path), "--help")
    assert out.startswith("usage:"), out


def test_every_example_is_in_the_docs() -> None:
    page = (ROOT / "docs" / "examples.rst").read_text(encoding="utf-8")
    for path in ALL_EXAMPLES:
        name = path.relative_to(ROOT).as_posix()
        assert f".. literalinclude:: ../{name}" in page, f"{name} is not in docs/examples.rst"


# -- one test per example ---------------------------------------------------------------


def test_demo_talks_to_itself_and_closes_cleanly() -> None:
    out = run_example(str(EXAMPLES / "demo.py"))
    assert "client: got 'hello, trio_ws'" in out
    assert "client: got 'one message in three frames'" in out
    assert "recv() timed out with a cancel scope" in out
    assert re.search(r"ping answered in \d+\.\d+ ms", out)
    assert "client: closed with code 1000" in out
    assert "server: client left with code 1000" in out


def test_echo_client_against_echo_server() -> None:
    with background(str(EXAMPLES / "echo_server.py"), "--port", "0") as server:
        port = server.wait_for(LISTENING).group(1)
        out = run_example(
            str(EXAMPLES / "echo_client.py"), f"ws://127.0.0.1:{port}/", "ping?", "grüße"
        )
        assert "> ping?\n< 'ping?'" in out
        assert "> grüße\n< 'grüße'" in out
        assert "closed with code 1000" in out
        stop_cleanly(server)


def test_auth_client_against_auth_server() -> None:
    with background(str(EXAMPLES / "auth_server.py"), "--port", "0") as server:
        port = server.wait_for(LISTENING).group(1)
        out = run_example(str(EXAMPLES / "auth_client.py"), f"ws://127.0.0.1:{port}/")
        server.wait_for("alice connected to /admin")  # the last one let in
        stop_cleanly(server)
    # Each attempt prints its title, then what happened to it.
    attempts = dict(re.findall(r"^(\S.*):\n((?:  .*\n)+)", out, re.MULTILINE))
    assert (
        "accepted: 'Hello, alice! You logged in with Basic auth.'" in attempts["Basic auth, alice"]
    )
    assert "with a token." in attempts["token in the query string"]
    assert "Hello, bob! You logged in with a session cookie." in attempts["session cookie, bob"]
    for title in ["no credentials", "wrong password"]:
        assert "refused: HTTP 401 Unauthorized" in attempts[title]
        assert 'WWW-Authenticate: Basic realm="trio_ws example"' in attempts[title]
    assert "refused: HTTP 403 Forbidden" in attempts["bob asks for /admin"]
    assert "accepted: 'Hello, alice!" in attempts["alice asks for /admin"]
    assert "HTTP 403" in attempts["bob's cookie, from a page of another site"]
    assert len(attempts) == 8, out
    log = "".join(server.stdout)
    assert "refused /admin to bob: not an admin (403)" in log
    assert "bob connected to / (a session cookie)" in log


def test_tls_client_against_tls_server_with_a_throwaway_ca() -> None:
    with background(str(EXAMPLES / "tls_server.py"), "--port", "0") as server:
        port = server.wait_for(LISTENING).group(1)
        ca = Path(server.wait_for(r"CA certificate: (.+)$").group(1))
        assert ca.is_file()
        url = f"wss://127.0.0.1:{port}/"
        client = str(EXAMPLES / "tls_client.py")

        out = run_example(client, url, "secret", "--cafile", str(ca))
        assert f"connected to {url}\n> secret\n< 'secret'\nclosed with code 1000" in out

        # The system's authorities do not know the throwaway one.
        refused = run_script(client, url)
        assert refused.returncode == 1, refused.stderr
        assert "certificate verification failed" in refused.stderr
        assert "--cafile" in refused.stderr
        assert "Traceback" not in refused.stderr

        insecure = run_script(client, url, "--insecure")
        assert insecure.returncode == 0, insecure.stderr
        assert "< 'hello over TLS'" in insecure.stdout
        assert "NOT verified" in insecure.stderr

        stop_cleanly(server)
    assert not ca.exists(), "the throwaway CA outlived the server"


def test_tls_server_with_certfile_and_keyfile(tmp_path: Path) -> None:
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    cert = ca.issue_cert("127.0.0.1")
    cert.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "cert.pem"))
    command = [str(EXAMPLES / "tls_server.py"), "--port", "0", "--certfile"]
    with background(*command, str(tmp_path / "cert.pem")) as server:
        port = server.wait_for(LISTENING).group(1)
        server.wait_for(r"^try: ")
        url = f"wss://127.0.0.1:{port}/"
        out = run_example(
            str(EXAMPLES / "tls_client.py"), url, "--cafile", str(tmp_path / "ca.pem")
        )
        assert "< 'hello over TLS'" in out
        stop_cleanly(server)
    assert "CA certificate" not in "".join(server.stdout)


def test_tls_server_says_what_to_do_without_trustme() -> None:
    # As on a machine without trustme: importing it fails.
    hide_trustme = (
        "import runpy, sys; sys.modules['trustme'] = None; sys.argv[1:] = ['--port', '0']; "
        f"runpy.run_path({str(EXAMPLES / 'tls_server.py')!r}, run_name='__main__')"
    )
    result = run_script("-c", hide_trustme)
    assert result.returncode == 1
    assert "trustme is not installed" in result.stderr
    assert "--certfile" in result.stderr
    assert "Traceback" not in result.stderr


def test_reconnecting_client_survives_a_server_restart() -> None:
    server_command = [str(EXAMPLES / "echo_server.py"), "--port"]
    with background(*server_command, "0") as first_server:
        port = first_server.wait_for(LISTENING).group(1)
        with background(
            str(EXAMPLES / "reconnecting_client.py"),
            f"ws://127.0.0.1:{port}/",
            "--interval",
            "0.05",
            "--max-connections",
            "2",
            "--seconds",
            str(TIMEOUT),
        ) as client:
            client.wait_for("connection 1: connected")
            client.wait_for("< 'message 3'")

            first_server.kill()  # a crash: no close frame
            client.wait_for(r"connection 1: lost \(")

            with background(*server_command, port) as second_server:
                second_server.wait_for(LISTENING)
                client.wait_for("connection 2: connected")
                last = int(client.wait_for(r"< 'message (\d+)'").group(1))
                client.wait_for(f"< 'message {last + 2}'")  # it keeps going

                stop_cleanly(second_server)  # closes with 1001; then it is over
                client.wait_for(r"connection 2: closed by the server \(received 1001")
                client.wait_for("stopping after connection 2")
                assert client.wait() == 0, client.output()

    assert "Traceback" not in "".join(client.stderr), client.output()
    assert "trio_ws.client: " in "".join(client.stderr)  # the reconnection is logged
    # Not one message lost: one that got no echo is sent again.
    numbers = [int(n) for n in re.findall(r"^< 'message (\d+)'$", "".join(client.stdout), re.M)]
    assert numbers == list(range(1, len(numbers) + 1)), client.output()


def http_get(url: str) -> tuple[int, str]:
    """A plain HTTP GET, as a load balancer does; the status and the body."""
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read().decode()


def test_health_check_server_answers_http_and_websocket_on_one_port() -> None:
    with background(str(EXAMPLES / "health_check_server.py"), "--port", "0") as server:
        port = server.wait_for(LISTENING).group(1)
        base = f"http://127.0.0.1:{port}"
        assert http_get(f"{base}/healthz") == (200, "OK\n")
        status, page = http_get(f"{base}/")
        assert status == 200
        assert "new WebSocket(" in page
        status, body = http_get(f"{base}/elsewhere")
        assert status == 426
        assert "use a WebSocket client" in body

        out = run_example(str(EXAMPLES / "echo_client.py"), f"ws://127.0.0.1:{port}/", "hi")
        assert "> hi\n< 'hi'" in out
        assert http_get(f"{base}/healthz?after=websocket") == (200, "OK\n")
        stop_cleanly(server)
