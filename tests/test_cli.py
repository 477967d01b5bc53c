"""``python -m trio_ws``, run as a user runs it: in its own process, stdin piped.

Every wait is bounded: processes are read by threads into queues that tests
wait on with a timeout, and every process is killed at the end if it has not
exited on its own.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest
import trio
import trio.testing
import trustme

import trio_ws
from trio_ws._cli import (
    LineReader,
    _connect_error,
    _serve,
    describe_close,
    echo,
    format_message,
    main,
    talk,
)

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and pipes")

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 20.0
ENV = {**os.environ, "PYTHONIOENCODING": "utf-8", "PYTHONUNBUFFERED": "1"}


def run_cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """Run ``python -m trio_ws ARGS`` to completion, within TIMEOUT."""
    return subprocess.run(
        [sys.executable, "-m", "trio_ws", *args],
        input=stdin,
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=ENV,
        cwd=ROOT,
        timeout=TIMEOUT,
        check=False,
    )


class Lines:
    """The lines of one output stream of a process, read by a thread."""

    def __init__(self, stream: IO[str]) -> None:
        self._queue: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        self._thread = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self._thread.start()

    def _pump(self, stream: IO[str]) -> None:
        for line in stream:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def expect(self, pattern: str, timeout: float = TIMEOUT) -> re.Match[str]:
        """Wait for a line matching ``pattern`` (a regex); fail after ``timeout``."""
        while True:
            try:
                line = self._queue.get(timeout=timeout)
            except queue.Empty:
                pytest.fail(f"no line matching {pattern!r} within {timeout} s; got {self.seen}")
            if line is None:
                pytest.fail(f"stream ended before a line matching {pattern!r}; got {self.seen}")
            self.seen.append(line)
            match = re.search(pattern, line)
            if match:
                return match

    def rest(self, timeout: float = TIMEOUT) -> list[str]:
        """Every line until the stream ends (or ``timeout``)."""
        self._thread.join(timeout)
        while True:
            try:
                line = self._queue.get_nowait()
            except queue.Empty:
                return self.seen
            if line is not None:
                self.seen.append(line)


class Process:
    """``python -m trio_ws ARGS`` running in the background."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "trio_ws", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            env=ENV,
            cwd=ROOT,
        )
        assert self.proc.stdout is not None
        assert self.proc.stderr is not None
        self.stdout = Lines(self.proc.stdout)
        self.stderr = Lines(self.proc.stderr)

    def write(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def close_stdin(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()

    def wait(self, timeout: float = TIMEOUT) -> int:
        """Wait for the exit status; kill the process if it takes too long."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"did not exit within {timeout} s; stderr: {self.stderr.seen}")

    def kill(self) -> None:
        """Kill the process if it still runs; close its pipes."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(TIMEOUT)
        self.stdout.rest()
        self.stderr.rest()
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()

    def stop(self) -> int:
        """Ctrl+C, then wait for the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        return self.wait()


def start_server(*args: str) -> tuple[Process, str]:
    """Start ``serve --port 0``; return it and the URL it prints first."""
    server = Process("serve", "--port", "0", *args)
    match = server.stdout.expect(r"^listening on (wss?://\S+)$")
    return server, match.group(1)


@pytest.fixture
def echo_server() -> Iterator[tuple[Process, str]]:
    server, url = start_server()
    try:
        yield server, url
    finally:
        status = server.stop()
        server.kill()
    assert status == 0, server.stderr.seen


def free_port() -> int:
    """A port nobody listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def assert_one_line_error(result: subprocess.CompletedProcess[str], status: int) -> str:
    assert result.returncode == status, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("python -m trio_ws: error: ")
    return lines[0]


# -- help and bad arguments ------------------------------------------------------


def test_help_explains_the_client_with_examples() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    out = result.stdout
    assert out.startswith("usage: python -m trio_ws")
    for text in ("URL", "--header", "--subprotocol", "--no-compression", "--insecure"):
        assert text in out
    assert "--ping-interval" in out
    assert "/ping" in out
    assert "/close [code] [reason]" in out
    assert "Ctrl+D" in out
    assert "examples:" in out
    assert "python -m trio_ws serve --help" in out


def test_help_explains_the_server_with_examples() -> None:
    result = run_cli("serve", "--help")
    assert result.returncode == 0
    assert result.stdout.startswith("usage: python -m trio_ws serve")
    for text in ("--host", "--port", "--certfile", "examples:", "echo"):
        assert text in result.stdout


@pytest.mark.parametrize(
    ("url", "explanation"),
    [
        ("localhost:8765", "did you mean ws://localhost:8765?"),
        ("http://example.com/", "scheme isn't ws or wss"),
        ("ws://", "hostname isn't provided"),
        ("ws://example.com/#top", "fragment"),
    ],
)
def test_a_bad_url_is_a_one_line_error_with_status_2(url: str, explanation: str) -> None:
    result = run_cli(url)
    line = assert_one_line_error(result, 2)
    assert url in line
    assert explanation in line
    assert result.stdout == ""


def test_a_bad_header_is_a_one_line_error_with_status_2() -> None:
    line = assert_one_line_error(run_cli("ws://127.0.0.1:1/", "--header", "oops"), 2)
    assert "NAME:VALUE" in line


def test_a_refused_connection_is_a_one_line_error_with_status_1() -> None:
    url = f"ws://127.0.0.1:{free_port()}/"
    line = assert_one_line_error(run_cli(url), 1)
    assert f"could not connect to {url}: " in line
    assert "Connection refused" in line


def test_serve_on_a_busy_port_is_a_one_line_error_with_status_1(
    echo_server: tuple[Process, str],
) -> None:
    port = echo_server[1].rsplit(":", 1)[1].strip("/")
    line = assert_one_line_error(run_cli("serve", "--port", port), 1)
    assert f"cannot listen on port {port}" in line


# -- sessions against the echo server -------------------------------------------------


def test_piped_session_echoes_pings_and_closes(echo_server: tuple[Process, str]) -> None:
    server, url = echo_server
    result = run_cli(url, stdin="hello\n/ping\n/close 1000 bye\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "hello\n"
    assert re.search(r"^pong received in \d+\.\d\d ms$", result.stderr, re.MULTILINE)
    assert "connection closed with code 1000 (OK), reason 'bye'" in result.stderr
    server.stderr.expect(r"closed with code 1000 \(OK\), reason 'bye'")


def test_end_of_input_closes_cleanly_after_the_replies(echo_server: tuple[Process, str]) -> None:
    result = run_cli(echo_server[1], stdin="one\ntwo\nthree")  # no final newline
    assert result.returncode == 0, result.stderr
    assert result.stdout == "one\ntwo\nthree\n"
    assert result.stderr.splitlines()[-1] == "connection closed with code 1000 (OK)"


def test_interactive_session_line_by_line(echo_server: tuple[Process, str]) -> None:
    client = Process(echo_server[1])
    try:
        client.stderr.expect(r"^connected to ws://.* \(compression: permessage-deflate\)$")
        client.write("grüße 👋")
        client.stdout.expect("^grüße 👋$")
        client.write("//not a command")
        client.stdout.expect("^/not a command$")
        client.write("/nope")
        client.stderr.expect(r"^unknown command /nope; /help lists them")
        client.write("/close 999")
        client.stderr.expect(r"^cannot close like that: close code 999 may not be sent")
        client.write("/ping")
        client.stderr.expect(r"^pong received in \d+\.\d\d ms$")
        client.write("/help")
        client.stderr.expect(r"^  /close \[code\] \[reason\]")
        client.close_stdin()  # Ctrl+D
        client.stderr.expect(r"^connection closed with code 1000 \(OK\)$")
        assert client.wait() == 0
        assert client.stdout.rest() == ["grüße 👋", "/not a command"]
    finally:
        client.kill()


def test_options_reach_the_handshake(echo_server: tuple[Process, str]) -> None:
    server, url = echo_server
    result = run_cli(
        url + "path?q=1",
        "--subprotocol",
        "chat.v2",
        "--subprotocol",
        "chat.v1",
        "--no-compression",
        "--header",
        "X-Token: abc",
        "--ping-interval",
        "0",
    )
    assert result.returncode == 0, result.stderr
    assert "(subprotocol: chat.v2, compression: none)" in result.stderr
    server.stderr.expect(r"path /path\?q=1, subprotocol chat\.v2$")


def test_the_server_closing_first_ends_the_client(echo_server: tuple[Process, str]) -> None:
    server, url = echo_server
    client = Process(url)  # stdin stays open: the client must stop reading it
    try:
        client.stderr.expect("^connected to")
        server.stderr.expect("connection from")
        assert server.stop() == 0
        client.stderr.expect(r"^connection closed with code 1001 \(going away\)$")
        assert client.wait() == 0
    finally:
        client.kill()


def test_ctrl_c_closes_with_1001(echo_server: tuple[Process, str]) -> None:
    server, url = echo_server
    client = Process(url)
    try:
        client.stderr.expect("^connected to")
        client.proc.send_signal(signal.SIGINT)
        client.stderr.expect(r"^interrupted: closed the connection with code 1001")
        assert client.wait() == 130
        server.stderr.expect(r"closed with code 1001 \(going away\)")
    finally:
        client.kill()


# -- TLS ----------------------------------------------------------------------------


def test_insecure_accepts_a_certificate_nobody_vouches_for(tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    certfile, keyfile = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(certfile))
    cert.private_key_pem.write_to_path(str(keyfile))
    server, url = start_server("--certfile", str(certfile), "--keyfile", str(keyfile))
    try:
        assert url.startswith("wss://127.0.0.1:")
        line = assert_one_line_error(run_cli(url), 1)
        assert "certificate" in line
        assert "--insecure skips certificate verification" in line

        result = run_cli(url, "--insecure", stdin="secret\n")
        assert result.returncode == 0, result.stderr
        assert result.stdout == "secret\n"
    finally:
        assert server.stop() == 0
        server.kill()


def test_serve_refuses_a_missing_certificate(tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.pem")
    line = assert_one_line_error(run_cli("serve", "--certfile", missing), 2)
    assert f"cannot load {missing}" in line


# -- formatting ------------------------------------------------------------------------


def test_text_is_printed_as_is_and_binary_summarized() -> None:
    assert format_message("héllo\nworld") == "héllo\nworld"
    assert format_message(b"\x01") == "<1 byte: 01>"
    assert format_message(bytes(range(4))) == "<4 bytes: 00010203>"
    assert format_message(bytes(100)) == f"<100 bytes: {'00' * 32}...>"


def test_close_codes_come_with_their_meaning() -> None:
    assert describe_close(1000, "") == "code 1000 (OK)"
    assert describe_close(1001, "bye") == "code 1001 (going away), reason 'bye'"
    assert describe_close(4000, "") == "code 4000 (private use)"


# -- in process, for coverage and the finer points ----------------------------------------


def test_main_rejects_a_bad_url_in_process(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["example.com"])
    assert exit_info.value.code == 2
    assert "did you mean ws://example.com?" in capsys.readouterr().err


@pytest.mark.trio
@pytest.mark.parametrize("source", ["pipe", "file"])
async def test_line_reader_splits_lines_from_pipes_and_files(source: str, tmp_path: Path) -> None:
    data = "one\r\ntwo\n\nthree ✓".encode() + b"\xff"
    if source == "pipe":  # trio.lowlevel.FdStream
        fd, write_fd = os.pipe()
        os.write(write_fd, data)
        os.close(write_fd)
    else:  # os.read in a thread
        path = tmp_path / "input.txt"
        path.write_bytes(data)
        fd = os.open(path, os.O_RDONLY)
    reader = LineReader(fd)
    try:
        lines = [await reader.readline() for _ in range(5)]
    finally:
        await reader.aclose()
        os.close(fd)
    assert lines == ["one", "two", "", "three ✓\ufffd", None]


@pytest.mark.trio
async def test_talk_in_process(
    nursery: trio.Nursery, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    server = await nursery.start(trio_ws.serve_websocket, echo, "127.0.0.1", 0)
    url = f"ws://127.0.0.1:{server.port}/"
    path = tmp_path / "input.txt"
    path.write_text("hi\n/ping ab\n/close 4000 custom\n", encoding="utf-8")
    fd = os.open(path, os.O_RDONLY)
    try:
        status = await talk(trio_ws.open_websocket_url(url), url, fd)
    finally:
        os.close(fd)
    out, err = capsys.readouterr()
    assert out == "hi\n"
    assert "pong received in" in err
    assert "connection closed with code 4000 (private use), reason 'custom'" in err
    assert status == 1  # 4000 is not a normal close
    nursery.cancel_scope.cancel()


@pytest.mark.parametrize("argv", [["--help"], ["serve", "--help"]])
def test_help_in_process(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 0
    assert "examples:" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["ws://127.0.0.1:1/", "--header", "no colon"], "is not NAME:VALUE"),
        (["ws://127.0.0.1:1/", "--subprotocol", "not a token"], "invalid subprotocol"),
        (["serve", "--keyfile", "key.pem"], "--keyfile needs --certfile"),
    ],
)
def test_bad_arguments_in_process(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_refused_connection_in_process(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([f"ws://127.0.0.1:{free_port()}/", "--insecure"])
    assert exit_info.value.code == 1
    assert "Connection refused" in capsys.readouterr().err


def test_connection_errors_read_well() -> None:
    url = "wss://example.com/"
    unverified = ssl.SSLCertVerificationError(1, "certificate verify failed")
    unverified.verify_message = "self-signed certificate"
    assert _connect_error(unverified, url) == (
        f"could not connect to {url}: self-signed certificate; "
        "--insecure skips certificate verification"
    )
    assert _connect_error(TimeoutError(), url) == f"could not connect to {url}: timed out"
    refused = OSError("All connection attempts failed")
    refused.__cause__ = ExceptionGroup("", [OSError(111, "Connection refused")])
    assert _connect_error(refused, url) == f"could not connect to {url}: Connection refused"
    rejected = trio_ws.InvalidHandshake("server rejected WebSocket connection: HTTP 404")
    assert _connect_error(rejected, url).endswith(
        ": server rejected WebSocket connection: HTTP 404"
    )


@pytest.mark.trio
async def test_serve_in_process_until_sigint(capsys: pytest.CaptureFixture[str]) -> None:
    async with trio.open_nursery() as nursery:
        done = trio.Event()

        async def serve() -> None:
            assert await _serve(["127.0.0.1"], 0, None) is None
            done.set()

        nursery.start_soon(serve)
        await trio.testing.wait_all_tasks_blocked()  # listening, waiting for clients
        url = capsys.readouterr().out.split()[-1]
        async with trio_ws.open_websocket_url(url, subprotocols=["chat"]) as ws:
            assert ws.subprotocol == "chat"  # the echo server takes any
            await ws.send("ping?")
            assert await ws.recv() == "ping?"
        os.kill(os.getpid(), signal.SIGINT)  # received by _serve, not by pytest
        with trio.fail_after(TIMEOUT):
            await done.wait()


@pytest.mark.trio
async def test_serve_reports_a_busy_port(nursery: trio.Nursery) -> None:
    server = await nursery.start(trio_ws.serve_websocket, echo, "127.0.0.1", 0)
    error = await _serve(["*"], server.port, None)
    assert isinstance(error, OSError)
    nursery.cancel_scope.cancel()
